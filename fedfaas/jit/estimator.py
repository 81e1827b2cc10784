"""Deadline calculator: when updates arrive and how long aggregation takes (JIT paper 5.3, 5.4).

Per party (Fig. 6, lines 7-10)::

    t_train = t_wait                 if the party is intermittent
            = t_ep                   if fusion happens once per local epoch
            = N_mb * t_mb            if fusion happens every N_mb minibatches
    t_comm  = M / B_d + M / B_u
    t_upd   = t_train + t_comm

and per job ``t_rnd = max_i t_upd`` and (line 13)
``t_agg = N_parties * t_pair / (C_agg * N_agg) + M / B_dc``.

Missing times come from the linearity regression in :mod:`fedfaas.jit.regression`
(fitted on the job's other parties plus past observations); when nothing can
be fitted the documented fallback is the median ``t_train`` of the parties that
could be estimated, then ``t_wait``.  An update later than ``t_wait`` is
ignored, so ``t_upd`` is capped at ``t_wait`` when the job has one.

Beyond the paper, an :class:`~fedfaas.jit.learning.ArrivalLearner` corrects
active parties' ``t_upd`` by their observed lateness, adds the observed
aggregation overhead to ``t_agg``, and supplies the ``slack`` by which the JIT
timer is armed early (see ``docs/jit.md``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import log_ndtr

from fedfaas.errors import BadRequest
from fedfaas.jit.regression import TimeRegression, TrainingSample
from fedfaas.jit.spec import JobSpec, PartyProfile

if TYPE_CHECKING:
    from fedfaas.jit.learning import ArrivalLearner

CALIBRATION_MAX_BYTES = 32 * 1024**2
"""Largest vector fused by :func:`calibrate_t_pair`; bigger models are scaled linearly."""


def t_comm(model_bytes: float, b_down: float, b_up: float) -> float:
    """Model download plus upload time (Fig. 6, line 9)."""
    if b_down <= 0 or b_up <= 0:
        raise BadRequest("bandwidths must be > 0")
    return model_bytes / b_down + model_bytes / b_up


def t_agg(n_parties: int, t_pair: float, c_agg: int, n_agg: int, model_bytes: float,
          b_dc: float) -> float:
    """Aggregation time of ``n_parties`` updates (paper 5.4, Fig. 6 line 13)."""
    if n_parties < 0 or t_pair < 0 or c_agg < 1 or n_agg < 1 or b_dc <= 0:
        raise BadRequest("t_agg needs n_parties >= 0, t_pair >= 0, c_agg, n_agg >= 1, b_dc > 0")
    return n_parties * t_pair / (c_agg * n_agg) + model_bytes / b_dc


MEASURED_SOURCES = frozenset({"t_ep", "t_mb x steps", "N_mb x t_mb", "N_mb x t_ep / steps"})
"""``t_train`` sources that rest on times the party measured (the rest are regressed or
filled in)."""
MEASURED_PRIOR_DEV = 0.05
"""Prior mean absolute deviation of a party whose times are measured, until it is seen
twice: a measured epoch time is good to a few percent, while a regressed one keeps the
learner's wider ``prior_dev`` (10%)."""
EAGER_DRAWS = 16
"""Draws of the arrivals averaged for eager serverless' expected latency."""
START_MARGIN = 0.2
"""With fewer aggregators than the job allows, JIT starts this fraction of their
fusion time earlier, so a round whose updates run late still finishes in time."""


def fluid_completion(arrivals: np.ndarray, start: float, work: float, k: int) -> float:
    """When ``k`` aggregators started at ``start`` have fused every update (fluid model).

    ``arrivals`` are the predicted arrival offsets, sorted; each update takes
    ``work`` seconds of one aggregator.  The ``k`` aggregators drain one queue at
    ``k / work`` updates per second, so the last fusion ends at
    ``max_i(max(start, a_i) + (n - i) * work / k)`` (0-based ``i``): the Lindley
    recursion of a single server in closed form.
    """
    a = np.asarray(arrivals, dtype=np.float64)
    if a.size == 0:
        return start
    if k < 1 or work < 0:
        raise BadRequest("fluid_completion needs k >= 1 and work >= 0")
    left = a.size - np.arange(a.size)
    return float(np.max(np.maximum(start, a) + left * (work / k)))


def eager_step(*, t_pair: float, c_agg: int, model_bytes: float, b_dc: float) -> float:
    """One stateless eager step: load the aggregator's state, fuse one update, checkpoint."""
    return 2 * model_bytes / b_dc + t_pair / c_agg


def eager_completion(arrivals: np.ndarray, *, t_pair: float, c_agg: int, n_agg: int,
                     model_bytes: float, b_dc: float, cold_start_s: float = 0.0,
                     keep_alive_s: float | None = None, step: float | None = None) -> float:
    """When eager serverless aggregation would have fused every update (fluid model).

    Eager runs one stateless step per update on arrival (load the aggregator's
    state, fuse, checkpoint: ``2 M / B_dc + t_pair / C_agg``) on up to ``n_agg``
    instances; in a burst the steps queue.  ``arrivals`` are offsets from the
    round's start, when the previous round's last step ran: an instance idle
    longer than ``keep_alive_s`` has been stopped by the platform, so the first
    update pays ``cold_start_s`` first when it comes later than that (and the
    backlog it leaves may reach the last update), and so does the last update
    when it comes that long after the previous steps ended.  This is the
    latency JIT promises not to exceed under the ``"eager"`` latency target.
    ``step`` is a measured warm step (None: :func:`eager_step`).
    """
    a = np.sort(np.asarray(arrivals, dtype=np.float64))
    if a.size == 0:
        return 0.0
    if step is None:
        step = eager_step(t_pair=t_pair, c_agg=c_agg, model_bytes=model_bytes, b_dc=b_dc)
    cold = keep_alive_s is not None and float(a[0]) > keep_alive_s
    start = float(a[0]) + (cold_start_s if cold else 0.0)
    done = fluid_completion(a, start, step, n_agg)
    if keep_alive_s is not None and a.size > 1:
        before = fluid_completion(a[:-1], start, step, n_agg)
        if a[-1] - before > keep_alive_s:
            done = max(done, float(a[-1]) + cold_start_s + step)
    return done


def eager_instances(arrivals: np.ndarray, *, step: float, n_agg: int) -> int:
    """Instances eager serverless starts: the most steps of ``step`` seconds that overlap.

    A warm instance takes the next step, so a new one starts only while every
    other is busy; each ends with a partial aggregate that finalisation merges.
    """
    a = np.sort(np.asarray(arrivals, dtype=np.float64))
    if a.size == 0:
        return 1
    overlap = np.arange(a.size) - np.searchsorted(a, a - step, side="right") + 1
    return int(min(n_agg, max(1, int(overlap.max()))))


def merge_time(partials: int, step: float) -> float:
    """Seconds to merge ``partials`` partial aggregates by a tree, ``step`` per merge."""
    return math.ceil(math.log2(max(1, partials))) * step


def choose_aggregators(arrivals: np.ndarray, t_rnd: float, *, t_pair: float, c_agg: int,
                       n_agg: int, model_bytes: float, b_dc: float,
                       overhead: float = 0.0, done_by: float | None = None,
                       margin: float = START_MARGIN,
                       merge_s: float = 0.0) -> tuple[int, float, float]:
    """Fewest aggregators, their ``t_agg`` and when they finish, that finish a round in time.

    The paper's ``t_agg`` splits the round over the job's ``n_agg`` aggregators as
    if every update were in at the start; when updates trickle in before
    ``t_rnd`` (heterogeneous or intermittent parties), fewer aggregators started
    earlier fuse them as they come and finish at the same time, and each
    aggregator not started saves its cold start, state load and checkpoint.
    For each ``k`` the start is ``t_rnd - t_agg(k)`` (``margin`` of its fusion time
    earlier when ``k < n_agg``), and the smallest ``k`` is kept whose fluid completion
    (:func:`fluid_completion`) is no later than the deadline: that of ``n_agg``
    started at ``t_rnd - t_agg(n_agg)`` (or the last update fused alone), or
    ``done_by`` less the merging of ``k`` partials (:func:`merge_time`, ``merge_s``
    a step) when that is later (the job's latency target: in a burst, where the
    paper's plan needs every aggregator, fewer finish later but within it).
    ``overhead`` (the learned residual over the paper's formula) is added to
    every ``t_agg``.
    """
    a = np.sort(np.asarray(arrivals, dtype=np.float64))
    n = int(a.size)
    work = t_pair / c_agg

    def agg(k: int) -> float:
        return max(t_agg(n, t_pair, c_agg, k, model_bytes, b_dc) + overhead, 0.0)

    # No plan ends before the last update is in and fused by one aggregator.
    target = max(fluid_completion(a, t_rnd - agg(n_agg), work, n_agg), float(a[-1]) + work)
    for k in range(1, n_agg):
        t_k = agg(k) + margin * n * work / k
        end = fluid_completion(a, t_rnd - t_k, work, k)
        allowed = target if done_by is None else max(target, done_by - merge_time(k, merge_s))
        if end <= allowed:
            return k, t_k, end
    end = max(fluid_completion(a, t_rnd - agg(n_agg), work, n_agg), float(a[-1]) + work)
    return n_agg, agg(n_agg), end


def calibrate_t_pair(model_bytes: int, repeats: int = 3, *, seed: int = 0,
                     max_bytes: int = CALIBRATION_MAX_BYTES) -> float:
    """Measure ``t_pair`` on one core by fusing two random updates of ``model_bytes`` (paper 5.4).

    Times ``acc += w * x`` over float32 vectors, the weighted accumulate of the
    linear fusion rules, and keeps the fastest of ``repeats`` runs.  Models
    larger than ``max_bytes`` are calibrated on ``max_bytes`` and scaled
    linearly (fusion is a streaming pass), which keeps calibration under a second.
    """
    if model_bytes < 4:
        raise BadRequest(f"model_bytes must be >= 4, got {model_bytes}")
    if repeats < 1:
        raise BadRequest(f"repeats must be >= 1, got {repeats}")
    used = min(int(model_bytes), int(max_bytes))
    n = max(1, used // 4)
    rng = np.random.default_rng(seed)
    acc = rng.standard_normal(n, dtype=np.float32)
    x = rng.standard_normal(n, dtype=np.float32)
    tmp = np.empty_like(x)
    np.multiply(x, np.float32(0.5), out=tmp)  # touch every page before timing
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()  # a real measurement, not a scheduling decision
        np.multiply(x, np.float32(0.5), out=tmp)
        np.add(acc, tmp, out=acc)
        best = min(best, time.perf_counter() - start)
    return best * (model_bytes / (n * 4))


def last_arrival_quantile(mean: np.ndarray, sigma: np.ndarray, q: float) -> float:
    """Time by which, with probability ``q``, *every* update has arrived.

    Arrivals are independent normals ``N(mean_i, sigma_i)`` (``sigma_i = 0``:
    exactly at ``mean_i``), so ``P(max <= t) = prod_i Phi((t - mean_i) / sigma_i)``;
    solved for ``t`` by bisection.
    """
    if not 0 < q < 1:
        raise BadRequest(f"q must be in (0, 1), got {q}")
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if m.size == 0:
        raise BadRequest("no arrivals to take a quantile of")
    fixed = float(np.max(m[s <= 0])) if np.any(s <= 0) else -math.inf
    lo = max(fixed, float(np.max(m - 6 * s)))
    hi = max(lo, float(np.max(m + 6 * s)))
    keep = (s > 0) & (m + 8 * s > lo)  # parties certainly in by ``lo`` do not matter
    m, s = m[keep], s[keep]
    if m.size == 0:
        return lo
    target = math.log(q)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(np.sum(log_ndtr((mid - m) / s))) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-3:
            break
    return 0.5 * (lo + hi)


def _last_arrival_cdf_grid(mean: np.ndarray, sigma: np.ndarray,
                           points: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``P(max_i T_i <= t)`` on a grid spanning where it rises from 0 to 1."""
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    fixed = float(np.max(m[s <= 0])) if np.any(s <= 0) else -math.inf
    lo = max(fixed, float(np.max(m - 6 * s)))
    hi = max(lo, float(np.max(m + 6 * s)))
    keep = (s > 0) & (m + 8 * s > lo)
    t = np.linspace(lo, hi, points)
    if not keep.any():
        return t, np.ones_like(t)
    z = (t[:, None] - m[keep][None, :]) / s[keep][None, :]
    return t, np.exp(np.sum(log_ndtr(z), axis=1))


def latest_ready_time(mean: np.ndarray, sigma: np.ndarray, budget: float,
                      cap: float | None = None) -> float:
    """Latest time an aggregator may be ready whose expected lateness is at most ``budget``.

    With the last update at ``T = max_i T_i`` (independent normals, as in
    :func:`last_arrival_quantile`), an aggregator ready at ``x`` publishes
    ``(x - T)+`` later than one that was waiting, and ``E[(x - T)+] =
    integral of P(T <= t) dt`` up to ``x``; the largest ``x`` keeping that within
    ``budget`` is found on a grid (past the grid ``P = 1`` and it grows linearly).

    ``cap`` is what a launch at the last update adds (cold start and state load):
    when the last update comes before the timer's launch, the round launches at
    once and is late by ``cap``, not by ``x - T``.  The lateness is then
    ``min((x - T)+, cap)``, whose mean is the integral of ``P(T <= t)`` over
    ``[x - cap, x]``; a budget of ``cap`` or more allows any ``x`` (the grid's end
    plus ``cap``, past every arrival, is returned).
    """
    if budget < 0:
        raise BadRequest(f"budget must be >= 0, got {budget}")
    if cap is not None and cap < 0:
        raise BadRequest(f"cap must be >= 0, got {cap}")
    t, cdf = _last_arrival_cdf_grid(mean, sigma)
    integral = np.concatenate([[0.0], np.cumsum(0.5 * (cdf[1:] + cdf[:-1]) * np.diff(t))])
    if cap is None:
        if budget >= integral[-1]:
            return float(t[-1] + (budget - integral[-1]))
        return float(np.interp(budget, integral, t))

    def below(x: np.ndarray) -> np.ndarray:  # integral of P(T <= t) up to x
        return np.where(x <= t[-1], np.interp(x, t, integral, left=0.0),
                        integral[-1] + (x - t[-1]))

    xs = np.linspace(t[0], t[-1] + cap, 2 * t.size)
    late = np.maximum.accumulate(below(xs) - below(xs - cap))
    if budget >= late[-1]:
        return float(xs[-1])
    k = int(np.searchsorted(late, budget, side="right")) - 1
    if k < 0:
        return float(xs[0])
    rise = late[k + 1] - late[k]
    frac = (budget - late[k]) / rise if rise > 0 else 0.0
    return float(xs[k] + frac * (xs[k + 1] - xs[k]))


@dataclass(frozen=True)
class JobEstimate:
    """Every estimate for one round of a job; times are offsets from round start, seconds."""

    job_id: str
    party_ids: tuple[str, ...]
    modes: tuple[str, ...]
    sources: tuple[str, ...]
    t_train: np.ndarray
    t_comm: np.ndarray
    t_upd_base: np.ndarray
    t_upd: np.ndarray
    t_rnd: float
    t_agg: float
    t_agg_paper: float
    t_rnd_early: float
    t_upd_early: np.ndarray
    t_upd_late: np.ndarray
    slack: float = 0.0
    n_agg: int | None = None
    """Aggregators JIT plans for this round (:func:`choose_aggregators`); None: the job's."""
    done_by: float | None = None
    """Latest end of fusion the job's latency target allows (:meth:`DeadlineEstimator.done_by`)."""
    target_latency: float | None = None
    """The latency target in seconds from the last update to the published model (the
    expected last arrival to ``done_by``, plus the model write)."""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def deadline(self) -> float:
        """Latest start of aggregation, ``t_rnd - t_agg`` (paper 5.5); with a learner ``t_rnd``
        is a low quantile of the last arrival and ``slack`` covers aggregation-time error."""
        return max(0.0, self.t_rnd_early - self.t_agg - self.slack)

    def party(self, party_id: str) -> dict[str, Any]:
        """One party's estimate as a dict."""
        try:
            i = self.party_ids.index(party_id)
        except ValueError:
            raise BadRequest(f"party {party_id!r} is not part of job {self.job_id!r}") from None
        return {"party_id": party_id, "mode": self.modes[i], "source": self.sources[i],
                "t_train": float(self.t_train[i]), "t_comm": float(self.t_comm[i]),
                "t_upd_paper": float(self.t_upd_base[i]), "t_upd": float(self.t_upd[i]),
                "t_upd_early": float(self.t_upd_early[i]),
                "t_upd_late": float(self.t_upd_late[i])}

    def to_dict(self, *, parties: bool = True) -> dict[str, Any]:
        """JSON-ready summary (and per-party rows when ``parties``)."""
        out: dict[str, Any] = {"job_id": self.job_id, "t_rnd": self.t_rnd, "t_agg": self.t_agg,
                               "t_agg_paper": self.t_agg_paper, "t_rnd_early": self.t_rnd_early,
                               "slack": self.slack, "n_agg_planned": self.n_agg, "done_by": self.done_by,
                               "target_latency": self.target_latency,
                               "deadline": self.deadline, "n_parties": len(self.party_ids),
                               **self.meta}
        if parties:
            out["parties"] = [self.party(p) for p in self.party_ids]
        return out


class DeadlineEstimator:
    """Builds :class:`JobEstimate` for a job from its spec and party profiles (paper 5.3, 5.4).

    Parameters
    ----------
    job, parties
        The job spec and every party's profile.
    t_pair
        Seconds to fuse a pair of updates on one core (see :func:`calibrate_t_pair`).
    history
        Past training-time observations, extra samples for the regression.
    """

    def __init__(self, job: JobSpec, parties: Sequence[PartyProfile], *, t_pair: float,
                 history: Sequence[TrainingSample] = ()) -> None:
        if not parties:
            raise BadRequest(f"job {job.job_id}: no parties to estimate")
        if not (isinstance(t_pair, int | float) and math.isfinite(t_pair) and t_pair >= 0):
            raise BadRequest(f"t_pair must be a finite number >= 0, got {t_pair!r}")
        ids = [p.party_id for p in parties]
        if len(set(ids)) != len(ids):
            raise BadRequest(f"job {job.job_id}: duplicate party ids")
        if any(p.mode == "intermittent" for p in parties) and job.t_wait is None:
            raise BadRequest(f"job {job.job_id}: intermittent parties need the job's t_wait")
        if job.quorum is not None and job.quorum > len(parties):
            raise BadRequest(f"job {job.job_id}: quorum {job.quorum} > {len(parties)} parties")
        self.job = job
        self.parties = list(parties)
        self.t_pair = float(t_pair)
        self._regression = TimeRegression(
            [TrainingSample.of(p) for p in parties if p.t_epoch is not None or p.t_mb is not None]
            + list(history))
        self._ids = tuple(p.party_id for p in self.parties)
        self._modes = tuple(p.mode for p in self.parties)
        self._base = self._compute_base()

    # -- per party (Fig. 6 lines 7-10) -------------------------------------------------

    def _steps(self, p: PartyProfile) -> int | None:
        if p.dataset_size is None or p.batch_size is None:
            return None
        return max(1, math.ceil(p.dataset_size / p.batch_size))

    def _t_train(self, p: PartyProfile) -> tuple[float | None, str]:
        job = self.job
        if p.mode == "intermittent":
            return float(job.t_wait), "t_wait"  # type: ignore[arg-type]
        steps = self._steps(p)
        if job.sync == "epoch":
            if p.t_epoch is not None:
                return p.t_epoch, "t_ep"
            if p.t_mb is not None and steps is not None:
                return p.t_mb * steps, "t_mb x steps"
            pred = self._regression.epoch_time(p)
            if pred is not None:
                return pred, "regression:t_ep~dataset_size"
            mb = self._regression.minibatch_time(p)
            if mb is not None and steps is not None:
                return mb * steps, "regression:t_mb~batch_size"
            return None, "fallback"
        if p.t_mb is not None:
            return job.n_mb * p.t_mb, "N_mb x t_mb"
        if p.t_epoch is not None and steps is not None:
            return job.n_mb * p.t_epoch / steps, "N_mb x t_ep / steps"
        mb = self._regression.minibatch_time(p)
        if mb is not None:
            return job.n_mb * mb, "regression:t_mb~batch_size"
        ep = self._regression.epoch_time(p)
        if ep is not None and steps is not None:
            return job.n_mb * ep / steps, "regression:t_ep~dataset_size"
        return None, "fallback"

    def _compute_base(self) -> dict[str, Any]:
        trains: list[float | None] = []
        sources: list[str] = []
        for p in self.parties:
            value, source = self._t_train(p)
            trains.append(value)
            sources.append(source)
        known = [t for t, p in zip(trains, self.parties, strict=True)
                 if t is not None and p.mode == "active"]
        if any(t is None for t in trains):
            if known:
                fill, how = float(np.median(known)), "fallback:median"
            elif self.job.t_wait is not None:
                fill, how = float(self.job.t_wait), "fallback:t_wait"
            else:
                missing = [p.party_id for p, t in zip(self.parties, trains, strict=True) if t is None]
                raise BadRequest(f"job {self.job.job_id}: no training time for {missing[:5]} and "
                                 "nothing to infer it from (give t_epoch/t_mb, dataset and "
                                 "hardware, or t_wait)")
            sources = [how if t is None else s for t, s in zip(trains, sources, strict=True)]
            trains = [fill if t is None else t for t in trains]
        bw_down = [p.b_down for p in self.parties if p.b_down is not None]
        bw_up = [p.b_up for p in self.parties if p.b_up is not None]
        if not bw_down or not bw_up:
            raise BadRequest(f"job {self.job.job_id}: no party reported its bandwidth "
                             "(b_down and b_up are needed for t_comm)")
        # A party that reports no bandwidth is assumed typical for the job (median).
        d_fill, u_fill = float(np.median(bw_down)), float(np.median(bw_up))
        m = float(self.job.model_bytes)
        comm = np.array([m / (p.b_down or d_fill) + m / (p.b_up or u_fill) for p in self.parties])
        train = np.asarray(trains, dtype=np.float64)
        upd = train + comm
        if self.job.t_wait is not None:
            upd = np.minimum(upd, self.job.t_wait)  # later updates are ignored (paper 4.3)
        return {"t_train": train, "t_comm": comm, "t_upd": upd, "sources": tuple(sources)}

    # -- per job -----------------------------------------------------------------------

    @property
    def t_agg_paper(self) -> float:
        """``t_agg`` by the paper's formula for all parties (Fig. 6 line 13)."""
        j = self.job
        return t_agg(len(self.parties), self.t_pair, j.c_agg, j.n_agg, j.model_bytes, j.b_dc)

    def done_by(self, arrivals: np.ndarray, spread: np.ndarray | None = None) -> float | None:
        """Latest end of fusion, one partial left, the job's latency target allows (None: fastest).

        That is the latest time the global model may be published, less its
        write.  ``arrivals`` are the expected arrival offsets and ``spread`` their
        standard deviations.  Under ``"eager"`` it is when eager serverless would
        be there: its fusion (:func:`eager_completion`) plus the tree merge of its
        instances' partials, the wait after the last update averaged over
        ``EAGER_DRAWS`` seeded draws of the arrivals (at the means alone, parties
        due together would look like a burst that eager must queue, which their
        spread usually prevents).
        """
        j = self.job
        a = np.asarray(arrivals, dtype=np.float64)
        if j.latency_target == "fastest" or a.size == 0:
            return None
        last = float(np.max(a))
        if j.latency_target != "eager":
            return last + float(j.latency_target) - j.model_bytes / j.b_dc

        step = j.eager_step_s
        if step is None:
            step = eager_step(t_pair=self.t_pair, c_agg=j.c_agg, model_bytes=j.model_bytes,
                              b_dc=j.b_dc)

        def eager(arr: np.ndarray) -> float:
            return eager_completion(arr, t_pair=self.t_pair, c_agg=j.c_agg, n_agg=j.n_agg,
                                    model_bytes=j.model_bytes, b_dc=j.b_dc,
                                    cold_start_s=j.cold_start_s, keep_alive_s=j.keep_alive_s,
                                    step=step)

        def wait(arr: np.ndarray) -> float:
            # Fusion after the last update, then merging the instances' partials.
            p = eager_instances(arr, step=step, n_agg=j.n_agg)
            return eager(arr) - float(arr.max()) + merge_time(p, self.merge_step)

        if spread is None or not np.any(spread > 0):
            return last + wait(a)
        rng = np.random.default_rng(0)  # the same draws every round: a stable plan
        draws = np.maximum(a + rng.standard_normal((EAGER_DRAWS, a.size)) * spread, 0.0)
        return last + float(np.mean([wait(d) for d in draws]))

    @property
    def merge_step(self) -> float:
        """Merging one partial into another: load it and fuse it (``M / B_dc + t_pair / C_agg``)."""
        return self.job.model_bytes / self.job.b_dc + self.t_pair / self.job.c_agg

    def _expected_arrivals(self, upd: np.ndarray, learner: ArrivalLearner) -> np.ndarray:
        """Expected arrival offsets: active parties at ``t_upd``, intermittent ones spread
        over ``t_wait`` by the learned curve (at ``t_wait`` before any is learned)."""
        inter = np.array([m == "intermittent" for m in self._modes])
        out = np.asarray(upd, dtype=np.float64).copy()
        n_int = int(inter.sum())
        if n_int and self.job.t_wait is not None:
            frac = learner.intermittent_arrivals(n_int)
            if frac is not None:
                out[inter] = float(self.job.t_wait) * frac
        return out

    def estimate(self, learner: ArrivalLearner | None = None) -> JobEstimate:
        """The estimate for the next round, corrected by ``learner`` when given."""
        base = self._base
        ids, modes = self._ids, self._modes
        upd = base["t_upd"]
        agg_paper = self.t_agg_paper
        agg, slack, early, late = agg_paper, 0.0, upd, upd
        t_rnd = t_rnd_early = float(np.max(upd))
        if learner is not None:
            active = np.array([m == "active" for m in modes])
            measured = np.array([src in MEASURED_SOURCES for src in base["sources"]])
            learner.use_priors(ids, np.where(measured, MEASURED_PRIOR_DEV, learner.prior_dev))
            upd = np.where(active, upd * learner.ratios(ids), upd)
            early = np.where(active, upd * learner.early_factors(ids), 0.0)  # any time in t_wait
            late = np.where(active, upd * learner.late_factors(ids), upd)
            if self.job.t_wait is not None:
                upd, early, late = (np.minimum(a, self.job.t_wait) for a in (upd, early, late))
            agg = max(agg_paper + learner.agg_residual, 0.0)
            slack = learner.slack()
            t_rnd = float(np.max(upd)) + learner.rnd_bias
            # A party observed less than twice counts at its early bound: its spread is a guess.
            known = active & (learner.observations(ids) >= 2)
            spread = np.where(active, upd * learner.sigma_factors(ids), 0.0)
            sigma = np.where(known, spread, 0.0)
            t_rnd_early = last_arrival_quantile(np.where(active & ~known, early, upd), sigma,
                                                learner.round_quantile)
        if self.job.t_wait is not None:
            t_rnd = min(t_rnd, float(self.job.t_wait))
            t_rnd_early = min(t_rnd_early, float(self.job.t_wait))
            if learner is not None and not learner.likely_to_complete(ids):
                # Some party is likely to skip the round, which then ends at t_wait: the
                # paper's rule for a party whose update may come any time until then.
                t_rnd = t_rnd_early = float(self.job.t_wait)
        n_agg = done_by = target_latency = None
        if learner is not None:
            j = self.job
            expected = self._expected_arrivals(upd, learner)
            done_by = self.done_by(expected, spread)
            if done_by is not None:
                target_latency = done_by - float(np.max(expected)) + j.model_bytes / j.b_dc
            k, t_k, end = choose_aggregators(
                expected, t_rnd_early, t_pair=self.t_pair, c_agg=j.c_agg, n_agg=j.n_agg,
                model_bytes=j.model_bytes, b_dc=j.b_dc, overhead=learner.agg_residual,
                # Until the parties were seen twice their spreads are priors: fewer
                # aggregators only on an allowance computed from learned ones.
                done_by=done_by if learner.rounds_seen >= 2 else None, merge_s=self.merge_step,
                # A job whose latency stays well within its target (a large learned
                # share) needs less of the early start that guards the paper's plan.
                margin=START_MARGIN * (1.0 - learner.timer_share) if done_by is not None
                else START_MARGIN)
            if j.n_agg > 1:
                n_agg, agg = k, t_k
            if done_by is not None:
                end += merge_time(k, self.merge_step)
            if done_by is not None and done_by > end:
                # Headroom left by the plan: the timer may fire later, so that an
                # aggregator waits less for the last update, at an expected lateness
                # within a share of it. Parties not yet seen twice count at their
                # prior spread (tighter for measured times than for regressed ones).
                # A round whose last update comes before the timer launches at once,
                # and is late by the launch's own time, not by more.
                ready = latest_ready_time(upd, spread, learner.timer_share * (done_by - end),
                                          cap=agg + slack)
                t_rnd_early = max(t_rnd_early, ready)
                if j.t_wait is not None:
                    t_rnd_early = min(t_rnd_early, float(j.t_wait))
        return JobEstimate(
            job_id=self.job.job_id, party_ids=ids, modes=modes, sources=base["sources"],
            t_train=base["t_train"], t_comm=base["t_comm"], t_upd_base=base["t_upd"],
            t_upd=upd, t_rnd=max(t_rnd, 0.0), t_agg=agg, t_agg_paper=agg_paper,
            t_rnd_early=max(t_rnd_early, 0.0), t_upd_early=early,
            t_upd_late=late, slack=slack, n_agg=n_agg, done_by=done_by,
            target_latency=target_latency,
            meta={"t_pair": self.t_pair, "n_agg": self.job.n_agg, "c_agg": self.job.c_agg},
        )
