"""Learning from observed arrivals, round by round (beyond JIT paper 5.3).

The paper predicts each update from what the party reports.  Parties' reports
drift (a party that is always 20% late stays 20% late: periodicity, paper 4.1),
so after each round the :class:`ArrivalLearner` updates, by exponentially
weighted moving averages (EWMA, weight ``alpha`` on the newest round):

- per active party, the ratio observed / predicted ``t_upd`` (bounded to
  ``ratio_bounds``) and its mean absolute deviation (``prior_dev`` until the
  party has been observed twice).  Treating those parties' arrivals as
  independent normals (and the others as arriving at their early bound), the JIT
  timer targets a low quantile (``round_quantile``) of the round's *last*
  arrival, so the round rarely closes before aggregation has started; the
  per-party early and late bounds ``t_upd * (1 -/+ z * dev)`` tell JIT when
  to keep a container warm.  Intermittent parties arrive at random inside
  ``t_wait`` (a hard bound), so they are not corrected one by one; their
  pooled arrival curve (quantiles of offset / ``t_wait``) is learned instead,
  which lets JIT plan how many aggregators a round needs
  (:func:`fedfaas.jit.planning.choose_aggregators`);
- per job, the bias of ``t_rnd`` left after the per-party correction (the
  maximum of noisy arrivals is later than the maximum of their means), for
  the reported ``t_rnd``;
- per job, the residual of the aggregation time, from launch to published
  model, over the paper's formula (cold start, state load, checkpoint and
  finalisation, which the formula leaves out) and its mean absolute
  deviation; ``z`` deviations become the timer's ``slack``;
- per job, the observed aggregation latency over the latency target's
  (``"eager"``: what eager serverless would take), which sets how much of the
  target's headroom the timer may spend waiting less (``timer_share``).

The estimator reads all of it for one round as a :class:`Corrections` value
(:meth:`ArrivalLearner.corrections`).  Every round leaves a :class:`RoundReport`
(predicted vs observed per party and per job) that the gateway can serve as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedfaas.errors import BadRequest
from fedfaas.jit.estimate import JobEstimate

CURVE_LEVELS = np.linspace(0.0, 1.0, 21)
"""Quantile levels of the learned intermittent arrival curve."""
TIMER_SHARE_PRIOR = 0.15
"""Initial share of the latency target's headroom the timer may spend: the lateness
model's learned spreads are noisy at first (in the simulator, realised lateness ran at
about twice the modelled one), so it starts low and :meth:`ArrivalLearner.observe_latency`
adjusts it."""
TIMER_SHARE_BOUNDS = (0.02, 1.0)
COMPLETION_LIKELY = 0.5
"""A round whose parties all send an update with at least these odds (by their learned
participation) is expected to complete by its last update; below, to end at ``t_wait``."""
ARRIVAL_ALPHA = 0.1
"""Weight of the newest round in a party's learned arrival mean and spread, once they
span ``1 / ARRIVAL_ALPHA`` rounds (a running mean before)."""
LATENCY_AIM = 0.9
"""Observed / target latency the timer's share is steered to (EWMA): 10% under the target."""
LATENCY_GAIN = 0.5
"""Log-step of the share per unit of latency-ratio error, per round."""
MEASURED_PRIOR_DEV = 0.05
"""Prior mean absolute deviation of a party whose times are measured, until it is seen
twice: a measured epoch time is good to a few percent, while a regressed one keeps the
learner's wider ``prior_dev`` (10%)."""


def _nan_to_none(a: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else float(v) for v in a.tolist()]


@dataclass(frozen=True)
class RoundReport:
    """Predicted against observed times of one round; offsets from round start, seconds."""

    round: int
    party_ids: tuple[str, ...]
    predicted_t_upd: np.ndarray
    observed_t_upd: np.ndarray
    t_rnd_pred: float
    t_rnd_obs: float | None
    t_agg_pred: float
    t_agg_obs: float | None
    error_stats: dict[str, Any]
    """Per-party error figures, kept even when the per-party arrays are not."""
    latency: float | None = None
    """Seconds from the last update to the published model (None: not measured)."""
    target_latency: float | None = None
    """What the job's latency target allowed this round (None: ``"fastest"``)."""

    @property
    def error(self) -> np.ndarray:
        """Observed minus predicted ``t_upd`` per party (NaN where no update arrived)."""
        return self.observed_t_upd - self.predicted_t_upd

    @staticmethod
    def stats(predicted: np.ndarray, observed: np.ndarray) -> dict[str, Any]:
        """Error figures of observed against predicted ``t_upd``."""
        err = observed - predicted
        err = err[np.isfinite(err)]
        return {
            "n_parties": int(predicted.size), "n_observed": int(err.size),
            "mae_t_upd": float(np.mean(np.abs(err))) if err.size else None,
            "max_abs_error_t_upd": float(np.max(np.abs(err))) if err.size else None,
            "late_fraction": float(np.mean(err > 0)) if err.size else None,
        }

    def summary(self) -> dict[str, Any]:
        """Aggregate error figures of the round."""
        def opt(v: float | None) -> float | None:
            return None if v is None else float(v)
        return {
            "round": self.round, **self.error_stats,
            "t_rnd_pred": self.t_rnd_pred, "t_rnd_obs": opt(self.t_rnd_obs),
            "t_rnd_error": None if self.t_rnd_obs is None else self.t_rnd_obs - self.t_rnd_pred,
            "t_agg_pred": self.t_agg_pred, "t_agg_obs": opt(self.t_agg_obs),
            "t_agg_error": None if self.t_agg_obs is None else self.t_agg_obs - self.t_agg_pred,
            "latency": opt(self.latency), "target_latency": opt(self.target_latency),
        }

    def to_dict(self, *, parties: bool = True) -> dict[str, Any]:
        """JSON-ready report; per-party rows when ``parties``."""
        out = self.summary()
        if parties:
            out["parties"] = [
                {"party_id": p, "predicted_t_upd": pr, "observed_t_upd": ob,
                 "error": None if ob is None or pr is None else ob - pr}
                for p, pr, ob in zip(self.party_ids, _nan_to_none(self.predicted_t_upd),
                                     _nan_to_none(self.observed_t_upd), strict=True)
            ]
        return out


@dataclass(frozen=True)
class Corrections:
    """What the learner applies to one round's estimate (see the module docstring).

    Per-party arrays are in the order of the party ids asked for, relative to
    each party's corrected ``t_upd``; the rest is job-wide.
    """

    ratio: np.ndarray
    """Observed / predicted ``t_upd`` (1.0 for a party never observed)."""
    early: np.ndarray
    """``1 - z * dev``: how early an update plausibly arrives."""
    late: np.ndarray
    """``1 + z * dev``: how late an update plausibly arrives."""
    sigma: np.ndarray
    """Standard deviation of the arrival."""
    observations: np.ndarray
    """Rounds the party's arrival was observed in (a spread needs two)."""
    likely_to_complete: bool
    """Whether every party sends an update with odds of at least :data:`COMPLETION_LIKELY`."""
    intermittent_arrivals: np.ndarray | None
    """Expected offsets of the intermittent arrivals as fractions of ``t_wait``, sorted
    (None: none learned yet, or no intermittent party)."""
    agg_residual: float
    """Observed aggregation time over the paper's ``t_agg``."""
    slack: float
    """Seconds by which the JIT timer is armed early for aggregation-time error."""
    rnd_bias: float
    """Bias of ``t_rnd`` left after the per-party corrections."""
    round_quantile: float
    """Quantile of the round's last arrival the JIT timer targets."""
    rounds_seen: int
    timer_share: float
    """Share of the latency target's headroom the timer may spend as expected lateness."""


class ArrivalLearner:
    """EWMA corrections learned from observed arrivals (see the module docstring).

    Parameters
    ----------
    alpha
        Weight of the newest round, ``0 < alpha <= 1``, in the job-wide corrections
        (participation, aggregation time, round bias, intermittent curve).
    ratio_bounds
        Clamp on a party's observed / predicted ratio (one wild round must not
        move a deadline by orders of magnitude).
    prior_dev
        Relative deviation assumed for a party's reported time before it is observed.
    z
        Deviations spanned by a party's early and late arrival bounds, and the
        aggregation-time ``slack``.
    round_quantile
        The JIT timer targets this quantile of the round's *last* arrival (the
        round closes before aggregation starts with about this probability).
    keep_reports
        How many recent :class:`RoundReport` to keep (older ones are dropped).
    arrival_alpha
        Weight of the newest observation in a party's arrival ratio and spread once
        they span ``1 / arrival_alpha`` observations; before, a running mean.  A
        straggler's learned mean is where the JIT timer aims, and with ``alpha``'s
        0.3 it wandered by about 0.4 of the party's spread from round to round.
    agg_overhead
        Prior for the aggregation-time residual before any observation: the
        platform's known start-up (cold start plus state load), which the
        paper's formula leaves out.
    """

    def __init__(self, alpha: float = 0.3, ratio_bounds: tuple[float, float] = (0.2, 5.0),
                 prior_dev: float = 0.1, z: float = 3.0, round_quantile: float = 0.05,
                 keep_reports: int = 100, agg_overhead: float = 0.0,
                 timer_share: float = TIMER_SHARE_PRIOR,
                 arrival_alpha: float = ARRIVAL_ALPHA) -> None:
        if not 0 < arrival_alpha <= 1:
            raise BadRequest(f"arrival_alpha must be in (0, 1], got {arrival_alpha}")
        if not 0 < alpha <= 1:
            raise BadRequest(f"alpha must be in (0, 1], got {alpha}")
        lo, hi = ratio_bounds
        if not 0 < lo <= 1 <= hi:
            raise BadRequest(f"ratio_bounds must satisfy 0 < lo <= 1 <= hi, got {ratio_bounds}")
        if prior_dev < 0 or z < 0 or keep_reports < 0 or agg_overhead < 0:
            raise BadRequest("prior_dev, z, keep_reports and agg_overhead must be >= 0")
        if not 0 < round_quantile < 1:
            raise BadRequest(f"round_quantile must be in (0, 1), got {round_quantile}")
        if not TIMER_SHARE_BOUNDS[0] <= timer_share <= TIMER_SHARE_BOUNDS[1]:
            raise BadRequest(f"timer_share must be in {list(TIMER_SHARE_BOUNDS)}, got {timer_share}")
        self.round_quantile = round_quantile
        self.timer_share = float(timer_share)
        """Share of the latency target's headroom the JIT timer may spend as expected
        lateness, adjusted every round by :meth:`observe_latency`."""
        self.latency_ratio = 0.0
        """EWMA of observed over target aggregation latency (reported)."""
        self._lat_seen = False
        self.rounds_seen = 0
        self.alpha = alpha
        self.arrival_alpha = arrival_alpha
        self.ratio_bounds = (float(lo), float(hi))
        self.prior_dev = prior_dev
        self.z = z
        self.keep_reports = keep_reports
        self._index: dict[str, int] = {}
        self._ratio = np.ones(0)
        self._dev = np.zeros(0)
        self._n_obs = np.zeros(0, dtype=np.int64)
        self._participation = np.ones(0)
        self.rnd_bias = 0.0
        self.agg_residual = float(agg_overhead)
        self.agg_dev = 0.0
        self._rnd_seen = False
        self._agg_seen = False
        self.intermittent_curve: np.ndarray | None = None
        """Quantiles (levels :data:`CURVE_LEVELS`) of intermittent parties' arrival offsets
        as fractions of ``t_wait``, an EWMA over rounds; None before any observation."""
        self.reports: list[RoundReport] = []
        self._saved: list[dict[str, Any]] = []
        self._last_ids: tuple[str, ...] = ()
        self._last_idx = np.zeros(0, dtype=np.int64)

    # -- corrections -------------------------------------------------------------------

    def corrections(self, party_ids: Sequence[str], *, measured: np.ndarray | None = None,
                    n_intermittent: int = 0) -> Corrections:
        """Everything the next estimate of these parties needs from the learner.

        ``measured`` marks the parties whose times are measured rather than
        regressed or filled in: until observed twice their spread prior is
        :data:`MEASURED_PRIOR_DEV` rather than ``prior_dev``, which this sets
        (:meth:`use_priors`) before reading.  ``n_intermittent`` is how many
        intermittent arrivals to place on the learned curve.
        """
        if measured is not None:
            self.use_priors(party_ids, np.where(measured, MEASURED_PRIOR_DEV, self.prior_dev))
        return Corrections(
            ratio=self.ratios(party_ids), early=self.early_factors(party_ids),
            late=self.late_factors(party_ids), sigma=self.sigma_factors(party_ids),
            observations=self.observations(party_ids),
            likely_to_complete=self.likely_to_complete(party_ids),
            intermittent_arrivals=self.intermittent_arrivals(n_intermittent),
            agg_residual=self.agg_residual, slack=self.slack(), rnd_bias=self.rnd_bias,
            round_quantile=self.round_quantile, rounds_seen=self.rounds_seen,
            timer_share=self.timer_share)

    def _indices(self, party_ids: Sequence[str]) -> np.ndarray:
        key = tuple(party_ids)
        if key == self._last_ids:  # the same job asks every round: skip the lookups
            return self._last_idx
        new = [p for p in party_ids if p not in self._index]
        if new:
            for p in dict.fromkeys(new):
                self._index[p] = len(self._index)
            grow = len(self._index) - self._ratio.size
            self._ratio = np.concatenate([self._ratio, np.ones(grow)])
            self._dev = np.concatenate([self._dev, np.full(grow, self.prior_dev)])
            self._n_obs = np.concatenate([self._n_obs, np.zeros(grow, dtype=np.int64)])
            self._participation = np.concatenate([self._participation, np.ones(grow)])
        idx = np.fromiter((self._index[p] for p in party_ids), dtype=np.int64,
                          count=len(party_ids))
        self._last_ids, self._last_idx = key, idx
        return idx

    def use_priors(self, party_ids: Sequence[str], prior_devs: np.ndarray) -> None:
        """Spread priors for parties not yet observed twice (whose spread is still a prior),
        e.g. tighter for a party that measured its times than for one regressed."""
        idx = self._indices(party_ids)
        fresh = self._n_obs[idx] < 2
        self._dev[idx[fresh]] = np.asarray(prior_devs, dtype=np.float64)[fresh]

    def ratios(self, party_ids: Sequence[str]) -> np.ndarray:
        """Learned observed/predicted ratio per party (1.0 for parties never observed)."""
        idx = self._indices(party_ids)  # may grow the arrays, so index after
        return self._ratio[idx]

    def early_factors(self, party_ids: Sequence[str]) -> np.ndarray:
        """``1 - z * dev`` per party: how early an update plausibly arrives, relative to t_upd."""
        idx = self._indices(party_ids)
        return np.clip(1.0 - self.z * self._dev[idx] / np.maximum(self._ratio[idx], 1e-9), 0, 1)

    def participation(self, party_ids: Sequence[str]) -> np.ndarray:
        """Share of rounds each party sent an update in, an EWMA (1.0 before any round)."""
        idx = self._indices(party_ids)
        return self._participation[idx]

    def likely_to_complete(self, party_ids: Sequence[str]) -> bool:
        """Whether every one of ``party_ids`` sends an update with odds of at least
        :data:`COMPLETION_LIKELY` (participation taken as independent)."""
        return float(np.prod(self.participation(party_ids))) >= COMPLETION_LIKELY

    def observations(self, party_ids: Sequence[str]) -> np.ndarray:
        """How many rounds each party's arrival has been observed in."""
        idx = self._indices(party_ids)
        return self._n_obs[idx]

    def sigma_factors(self, party_ids: Sequence[str]) -> np.ndarray:
        """Standard deviation of each party's arrival relative to its corrected t_upd
        (mean absolute deviation times 1.25, the normal-distribution ratio)."""
        idx = self._indices(party_ids)
        return 1.25 * self._dev[idx] / np.maximum(self._ratio[idx], 1e-9)

    def late_factors(self, party_ids: Sequence[str]) -> np.ndarray:
        """``1 + z * dev`` per party: how late an update plausibly arrives, relative to t_upd."""
        idx = self._indices(party_ids)
        return 1.0 + self.z * self._dev[idx] / np.maximum(self._ratio[idx], 1e-9)

    def slack(self) -> float:
        """Seconds by which the JIT timer is armed early for aggregation-time uncertainty."""
        return self.z * self.agg_dev

    def intermittent_arrivals(self, n: int) -> np.ndarray | None:
        """Expected offsets of ``n`` intermittent arrivals as fractions of ``t_wait``, sorted.

        The learned arrival curve read at evenly spaced levels (the ``i``-th of ``n``
        arrivals at level ``(i + 0.5) / n``); None until a round has been observed,
        when intermittent parties can only be assumed to come at ``t_wait``.
        """
        if self.intermittent_curve is None or n < 1:
            return None
        levels = (np.arange(n) + 0.5) / n
        return np.interp(levels, CURVE_LEVELS, self.intermittent_curve)

    def _ewma(self, old: float, new: float, seen: bool) -> float:
        return new if not seen else (1 - self.alpha) * old + self.alpha * new

    # -- observations ------------------------------------------------------------------

    def observe_aggregation(self, predicted: float, observed: float) -> None:
        """Aggregation took ``observed`` seconds from launch to published model where the
        paper's formula said ``predicted``."""
        if not (math.isfinite(predicted) and math.isfinite(observed)) or observed < 0:
            raise BadRequest("aggregation times must be finite and observed >= 0")
        resid = observed - predicted
        dev = abs(resid - self.agg_residual) if self._agg_seen else 0.0
        self.agg_dev = self._ewma(self.agg_dev, dev, self._agg_seen)
        self.agg_residual = self._ewma(self.agg_residual, resid, self._agg_seen)
        self._agg_seen = True

    def observe_latency(self, observed: float, target: float) -> None:
        """A round was published ``observed`` seconds after its last update, where the job's
        latency target allowed ``target``: move the timer's share of the headroom.

        The lateness model behind the timer
        (:func:`~fedfaas.jit.last_arrival.latest_ready_time`) rests on learned spreads;
        this corrects its error per job.  Each round multiplies the share by
        ``exp(LATENCY_GAIN * (LATENCY_AIM - observed / target))`` (within 4x either
        way and ``TIMER_SHARE_BOUNDS``): the share stops moving, on average, where
        the mean of ``observed / target`` is ``LATENCY_AIM``, even though a round is
        either on time or a cold start late.  Rounds scheduled before the parties
        were seen twice (no learned spreads yet) are not counted.
        """
        if not (math.isfinite(observed) and math.isfinite(target)) or observed < 0 or target <= 0:
            raise BadRequest("latencies must be finite, observed >= 0 and target > 0")
        ratio = observed / target
        self.latency_ratio = self._ewma(self.latency_ratio, ratio, self._lat_seen)
        self._lat_seen = True
        if self.rounds_seen < 2:
            return
        lo, hi = TIMER_SHARE_BOUNDS
        log_step = min(math.log(4), max(-math.log(4), LATENCY_GAIN * (LATENCY_AIM - ratio)))
        self.timer_share = min(hi, max(lo, self.timer_share * math.exp(log_step)))

    def observe_round(self, round_no: int, estimate: JobEstimate, observed_t_upd: np.ndarray,
                      *, t_agg_obs: float | None = None, detail: bool = True,
                      latency: float | None = None) -> RoundReport:
        """Learn from one round: ``observed_t_upd[i]`` is party ``i``'s arrival offset (NaN: none).

        ``estimate`` is the estimate the round was scheduled with, in the same
        party order; ``latency`` the seconds from the last update to the published
        model, reported against the estimate's target (learn from it with
        :meth:`observe_latency`).  Returns (and keeps) the round's report.
        """
        obs = np.asarray(observed_t_upd, dtype=np.float64)
        if obs.shape != (len(estimate.party_ids),):
            raise BadRequest(f"observed_t_upd must have {len(estimate.party_ids)} entries")
        if np.any(obs[np.isfinite(obs)] < 0):
            raise BadRequest("observed arrival offsets must be >= 0")
        idx = self._indices(estimate.party_ids)
        active = np.array([m == "active" for m in estimate.modes])
        got = np.isfinite(obs) & (estimate.t_upd_base > 0) & active
        if got.any():
            lo, hi = self.ratio_bounds
            r = np.clip(obs[got] / estimate.t_upd_base[got], lo, hi)
            j = idx[got]
            n_obs = self._n_obs[j]
            old = self._ratio[j]
            # A running mean until it spans 1 / arrival_alpha rounds, then an EWMA.
            a_ratio = np.maximum(self.arrival_alpha, 1.0 / (n_obs + 1))
            a_dev = np.maximum(self.arrival_alpha, 1.0 / np.maximum(n_obs, 1))
            # The first observation fixes the bias; spread is measured from the second on.
            surprise = np.abs(r - old)
            self._dev[j] = np.where(n_obs >= 2, (1 - a_dev) * self._dev[j] + a_dev * surprise,
                                    np.where(n_obs == 1, surprise, self._dev[j]))
            self._ratio[j] = np.where(n_obs >= 1, (1 - a_ratio) * old + a_ratio * r, r)
            self._n_obs[j] = n_obs + 1
        self._participation[idx] = ((1 - self.alpha) * self._participation[idx]
                                    + self.alpha * np.isfinite(obs))
        inter = np.isfinite(obs) & ~active & (estimate.t_upd_base > 0)
        if inter.sum() >= 2:
            # Quantiles of two monotone curves average to a monotone curve.
            curve = np.quantile(np.clip(obs[inter] / estimate.t_upd_base[inter], 0.0, 1.0),
                                CURVE_LEVELS)
            self.intermittent_curve = (curve if self.intermittent_curve is None else
                                       (1 - self.alpha) * self.intermittent_curve
                                       + self.alpha * curve)
        t_rnd_obs = float(np.nanmax(obs)) if np.isfinite(obs).any() else None
        if t_rnd_obs is not None:
            # Bias left after this round's per-party correction, so nothing is counted twice.
            corrected = np.where(active, estimate.t_upd_base * self._ratio[idx],
                                 estimate.t_upd_base)
            err = t_rnd_obs - float(np.max(corrected))
            self.rnd_bias = self._ewma(self.rnd_bias, err, self._rnd_seen)
            self._rnd_seen = True
        self.rounds_seen += 1
        report = RoundReport(
            round=round_no, party_ids=estimate.party_ids if detail else (),
            predicted_t_upd=estimate.t_upd if detail else np.zeros(0),
            observed_t_upd=obs if detail else np.zeros(0),
            t_rnd_pred=estimate.t_rnd, t_rnd_obs=t_rnd_obs, t_agg_pred=estimate.t_agg,
            t_agg_obs=t_agg_obs, error_stats=RoundReport.stats(estimate.t_upd, obs),
            latency=latency, target_latency=estimate.target_latency,
        )
        if self.keep_reports:
            self.reports.append(report)
            del self.reports[:-self.keep_reports]
        return report

    # -- persistence (the gateway keeps a learner per job in Redis) ---------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state (reports as summaries)."""
        ids = sorted(self._index, key=self._index.__getitem__)
        return {"alpha": self.alpha, "arrival_alpha": self.arrival_alpha,
                "ratio_bounds": list(self.ratio_bounds),
                "prior_dev": self.prior_dev, "z": self.z, "round_quantile": self.round_quantile,
                "timer_share": self.timer_share, "latency_ratio": self.latency_ratio,
                "lat_seen": self._lat_seen, "rounds_seen": self.rounds_seen,
                "keep_reports": self.keep_reports,
                "party_ids": ids, "ratio": self._ratio.tolist(), "dev": self._dev.tolist(),
                "n_obs": self._n_obs.tolist(), "participation": self._participation.tolist(),
                "rnd_bias": self.rnd_bias,
                "rnd_seen": self._rnd_seen, "agg_residual": self.agg_residual,
                "agg_dev": self.agg_dev, "agg_seen": self._agg_seen,
                "intermittent_curve": (None if self.intermittent_curve is None
                                       else self.intermittent_curve.tolist()),
                "reports": self.report_history()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArrivalLearner:
        """Rebuild from :meth:`to_dict` output (report summaries are kept as dicts)."""
        try:
            lo, hi = data["ratio_bounds"]
            out = cls(alpha=float(data["alpha"]), ratio_bounds=(float(lo), float(hi)),
                      prior_dev=float(data["prior_dev"]), z=float(data["z"]),
                      round_quantile=float(data["round_quantile"]),
                      keep_reports=int(data["keep_reports"]),
                      # Absent from state saved before it existed: the default.
                      arrival_alpha=float(data.get("arrival_alpha", ARRIVAL_ALPHA)))
            ids = [str(p) for p in data["party_ids"]]
            out._index = {p: i for i, p in enumerate(ids)}
            out._ratio = np.asarray(data["ratio"], dtype=np.float64)
            out._dev = np.asarray(data["dev"], dtype=np.float64)
            out._n_obs = np.asarray(data["n_obs"], dtype=np.int64)
            # Absent from state saved before participation was learned: the prior.
            out._participation = np.asarray(data.get("participation", np.ones(len(ids))),
                                            dtype=np.float64)
            if not (out._ratio.shape == out._dev.shape == out._n_obs.shape
                    == out._participation.shape == (len(ids),)):
                raise ValueError("ratio/dev/n_obs/participation length differs from party_ids")
            out.rnd_bias, out._rnd_seen = float(data["rnd_bias"]), bool(data["rnd_seen"])
            out.agg_residual, out.agg_dev = float(data["agg_residual"]), float(data["agg_dev"])
            out._agg_seen = bool(data["agg_seen"])
            # Absent from state saved before the latency target existed: the priors.
            out.timer_share = float(data.get("timer_share", TIMER_SHARE_PRIOR))
            out.latency_ratio = float(data.get("latency_ratio", 0.0))
            out._lat_seen = bool(data.get("lat_seen", False))
            out.rounds_seen = int(data.get("rounds_seen", len(out._saved)))
            curve = data.get("intermittent_curve")
            if curve is not None:
                out.intermittent_curve = np.asarray(curve, dtype=np.float64)
                if out.intermittent_curve.shape != CURVE_LEVELS.shape:
                    raise ValueError("intermittent_curve has the wrong length")
            out._saved = [dict(r) for r in data.get("reports", [])]
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"invalid learner state: {exc}") from None
        return out

    def controller(self) -> dict[str, Any]:
        """What the learner applies to the next estimate beyond per-party corrections."""
        return {"rounds_seen": self.rounds_seen, "timer_share": self.timer_share,
                "latency_ratio": self.latency_ratio if self._lat_seen else None,
                "t_agg_residual": self.agg_residual, "slack": self.slack(),
                "t_rnd_bias": self.rnd_bias}

    def report_history(self) -> list[dict[str, Any]]:
        """Summaries of the kept rounds, oldest first (including those restored from JSON)."""
        rows = self._saved + [r.summary() for r in self.reports]
        return rows[-self.keep_reports:] if self.keep_reports else []
