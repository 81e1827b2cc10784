"""Discrete-event simulator of one FL job's aggregation on a virtual clock (JIT paper 6).

The simulator drives the *same* :class:`~fedfaas.jit.estimator.DeadlineEstimator`,
:class:`~fedfaas.jit.learning.ArrivalLearner`, strategies and
:class:`~fedfaas.jit.scheduler.Scheduler` (on an
:class:`~fedfaas.jit.state.InMemoryState`) as the live gateway; only the
platform that runs the launches is modelled, by :mod:`bench.jit.cost`.
Events (round open, scheduler ticks, end of fusion, model published) sit in a
heap ordered by virtual time; nothing sleeps.

Per round the scheduler ticks at the JIT timer (if it precedes the round's
close) and when the round closes; arrivals up to each tick are recorded in
one batch and each launch carries the arrival time that made it ready, which
is what a gateway ticking on every arrival would decide (the vectorised
equivalent of per-update events).  Launch decisions never depend on platform
state here because the job has the cluster's capacity to itself; the cluster
is assumed busy with other jobs, so JIT gets no idle capacity for
opportunistic runs (the conservative choice for JIT; see ``docs/jit.md``).

Measured per round: aggregation latency, the time from the last needed
update (or ``t_wait``, when intermittent parties expect the next round no
earlier, paper 4.3) to the global model being published; and container-seconds.

Two extensions replay a live job (``bench/jit_live.py``, ``docs/jit.md`` "Live vs
simulated"): an :class:`ExplicitWorkload` gives the parties' profiles and
measured arrivals instead of a scenario's, and ``platform="keep-alive"`` runs the
launches as the live gateway does on OpenFaaS (:mod:`bench.jit.keepalive`):
every launch and every finalisation is one stateless call, and containers stay
warm ``keep_alive_s`` after their last call, across rounds, instead of the
modelled platform's in-memory drains, early release and pre-warming; JIT holds an
instance warm for a round's last update with the gateway's warm-up pings
(:mod:`fedfaas.jit.prewarm`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.jit.cost import ArrivalForecast, CostModel, always_on_finish, run_pool
from bench.jit.keepalive import KeepAlivePool
from bench.jit.scenarios import (
    MODEL_PARAMS,
    Population,
    WorkloadParams,
    batch_size_for,
    make_population,
    model_bytes,
    round_offsets,
)
from fedfaas.errors import BadRequest
from fedfaas.jit.clock import VirtualClock
from fedfaas.jit.estimate import JobEstimate
from fedfaas.jit.estimator import DeadlineEstimator
from fedfaas.jit.formulas import t_agg
from fedfaas.jit.learning import ArrivalLearner
from fedfaas.jit.prewarm import Participation, WarmHold
from fedfaas.jit.scheduler import Scheduler
from fedfaas.jit.spec import STRATEGIES, EstimatorJob, PartyTiming
from fedfaas.jit.state import Decision, InMemoryState

_SEEDS = {"active-homogeneous": 1, "active-heterogeneous": 2, "intermittent-heterogeneous": 3}
PLATFORMS = ("modelled", "keep-alive")
"""``modelled``: the cost model of :mod:`bench.jit.cost` (Fig. 9); ``keep-alive``: the live
gateway on OpenFaaS (:mod:`bench.jit.keepalive`)."""
EXPLICIT = "explicit"


@dataclass(frozen=True, eq=False)
class ExplicitWorkload:
    """A job's parties and arrivals given explicitly (e.g. measured live) instead of a scenario's.

    Parameters
    ----------
    profiles
        What each party reported (the estimator's input).
    offsets
        ``offsets[r][i]``: seconds from round ``r``'s start to party ``i``'s update arriving.
    model_bytes
        ``M``, bytes of one update.
    t_wait
        The job's ``t_wait`` (None: no deadline); no arrival may come later.
    batch_size
        Batched serverless' ``k`` (None: the paper's rule for the party count).
    open_delay_s
        From a round's model being published to the next round opening: the job
        owner opens rounds back to back, as the live benchmark does (a scenario's
        intermittent job instead waits for ``t_wait``); latency counts from the
        last arrival.
    """

    profiles: tuple[PartyTiming, ...]
    offsets: np.ndarray
    model_bytes: int
    t_wait: float | None = None
    batch_size: int | None = None
    open_delay_s: float = 0.0

    def __post_init__(self) -> None:
        off = np.asarray(self.offsets, dtype=np.float64)
        if off.ndim != 2 or off.shape[0] < 1 or off.shape[1] != len(self.profiles):
            raise BadRequest("offsets must have one row per round and one column per profile")
        if not np.all(np.isfinite(off)) or np.any(off < 0):
            raise BadRequest("offsets must be finite and >= 0")
        if self.t_wait is not None and np.any(off > self.t_wait):
            raise BadRequest("an arrival later than t_wait would be ignored; offsets must be <= t_wait")
        if self.model_bytes < 1 or self.open_delay_s < 0 or (self.batch_size or 1) < 1:
            raise BadRequest("model_bytes and batch_size must be >= 1, open_delay_s >= 0")
        object.__setattr__(self, "offsets", off)

    @property
    def rounds(self) -> int:
        """Rounds given."""
        return int(self.offsets.shape[0])


@dataclass(frozen=True)
class SimConfig:
    """One simulated job: scenario, model, size, strategy, rounds and cost model."""

    scenario: str
    model: str
    n_parties: int
    strategy: str
    rounds: int = 50
    seed: int = 0
    params: WorkloadParams = field(default_factory=WorkloadParams)
    cost: CostModel = field(default_factory=CostModel)
    workload: ExplicitWorkload | None = None
    platform: str = "modelled"
    latency_target: float | str = "eager"
    """JIT's latency target (:class:`~fedfaas.jit.spec.EstimatorJob`)."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise BadRequest(f"unknown strategy {self.strategy!r}")
        if self.platform not in PLATFORMS:
            raise BadRequest(f"unknown platform {self.platform!r}; one of {', '.join(PLATFORMS)}")
        if self.workload is None:
            model_bytes(self.model)  # raises BadRequest for an unknown model
        elif self.n_parties != len(self.workload.profiles) or self.rounds > self.workload.rounds:
            raise BadRequest("n_parties and rounds must match the explicit workload")
        if self.rounds < 1 or self.n_parties < 1:
            raise BadRequest("rounds and n_parties must be >= 1")

    @classmethod
    def replay(cls, workload: ExplicitWorkload, strategy: str, *, cost: CostModel | None = None,
               platform: str = "keep-alive") -> SimConfig:
        """Every round of ``workload`` under ``strategy``."""
        return cls(EXPLICIT, EXPLICIT, len(workload.profiles), strategy, rounds=workload.rounds,
                   cost=cost or CostModel(), workload=workload, platform=platform)

    @property
    def workload_seed(self) -> list[int]:
        """Seed of the parties and arrivals: the same for every strategy (common random numbers)."""
        return [self.seed, _SEEDS.get(self.scenario, 0), sorted(MODEL_PARAMS).index(self.model),
                self.n_parties]


@dataclass
class SimResult:
    """Outcome of one simulated job."""

    config: SimConfig
    container_s: float
    latencies: np.ndarray
    invocations: int
    cold_starts: int
    job_s: float
    reports: list[dict[str, Any]]
    floor_container_s: float = 0.0
    """Fewest container-seconds any strategy could spend on this job's arrivals (see
    :meth:`Simulator.floor_round`): a bound on every strategy's savings, JIT's included."""

    @property
    def cost_usd(self) -> float:
        """Projected cost."""
        return self.config.cost.cost_usd(self.container_s)

    @property
    def mean_latency_s(self) -> float:
        """Mean per-round aggregation latency."""
        return float(np.mean(self.latencies))

    def row(self) -> dict[str, Any]:
        """JSON-ready summary."""
        c = self.config
        out: dict[str, Any] = {
            "scenario": c.scenario, "model": c.model, "parties": c.n_parties,
            "strategy": c.strategy, "rounds": c.rounds, "container_s": self.container_s,
            "cost_usd": self.cost_usd, "mean_latency_s": self.mean_latency_s,
            "invocations": self.invocations, "cold_starts": self.cold_starts, "job_s": self.job_s,
            "floor_container_s": self.floor_container_s}
        if self.reports:
            err = [abs(r["t_rnd_error"]) for r in self.reports if r["t_rnd_error"] is not None]
            out["t_rnd_mae_s"] = float(np.mean(err)) if err else None
        return out


@dataclass
class _Round:
    number: int
    start: float
    offsets: np.ndarray
    order: np.ndarray
    arrivals: np.ndarray
    estimate: JobEstimate | None
    fed: int = 0
    decisions: list[Decision] = field(default_factory=list)
    t_done: float = 0.0
    chunk_obs: tuple[float, float] | None = None


class Simulator:
    """Runs one :class:`SimConfig` to completion (see the module docstring)."""

    def __init__(self, config: SimConfig) -> None:
        self.cfg = config
        cost, wl, n = config.cost, config.workload, config.n_parties
        if wl is None:
            self.m = model_bytes(config.model)
            rng = np.random.default_rng(config.workload_seed)
            self.pop = make_population(config.scenario, n, self.m, config.params, rng)
        else:
            self.m = wl.model_bytes
            self.pop = Population(EXPLICIT, list(wl.profiles), np.full(n, np.nan), np.zeros(n),
                                  wl.t_wait)
        self.n_agg = cost.n_agg(n)
        self.job = EstimatorJob(
            job_id="sim", model_bytes=self.m, t_wait=self.pop.t_wait, rounds=config.rounds,
            strategy=config.strategy,
            batch_size=(wl.batch_size if wl is not None else None) or batch_size_for(n),
            n_agg=self.n_agg, c_agg=cost.c_agg, b_dc=cost.b_dc,
            cold_start_s=cost.cold_start_s, keep_alive_s=cost.keep_alive_s,
            latency_target=config.latency_target)
        self.pool = (KeepAlivePool(self.n_agg, cost.cold_start_s, cost.keep_alive_s)
                     if config.platform == "keep-alive" else None)
        self.clock = VirtualClock()
        self.scheduler = Scheduler(InMemoryState(), self.clock, owner="sim")
        self.learner = ArrivalLearner(agg_overhead=cost.cold_start_s + cost.t_io(self.m))
        self.estimator = DeadlineEstimator(self.job, self.pop.profiles, t_pair=cost.t_pair(self.m))
        self._events: list[tuple[float, int, str, Any]] = []
        self._seq = 0
        self._container_s = 0.0
        self._invocations = 0
        self._colds = 0
        self._latencies: list[float] = []
        self._reports: list[dict[str, Any]] = []
        self._end = 0.0
        self._partials = 1
        self._floor = 0.0
        self.round: _Round | None = None

    def _push(self, t: float, kind: str, data: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, kind, data))

    def run(self) -> SimResult:
        """Simulate every round; returns the totals."""
        self._push(0.0, "open", 0)
        while self._events:
            t, _, kind, data = heapq.heappop(self._events)
            self.clock.advance_to(t)
            getattr(self, f"_on_{kind}")(t, data)
        container_s = self._container_s
        if self.pool is not None:
            container_s += self.pool.container_s()
            self._colds += self.pool.cold_starts
        if self.cfg.strategy == "eager-always-on":
            # Alive from job start to the last model (and, kept warm by pings, for the
            # platform's keep-alive after the last one).
            tail = self.cfg.cost.keep_alive_s if self.pool is not None else 0.0
            container_s += self.n_agg * (self._end + tail)
        return SimResult(self.cfg, container_s, np.asarray(self._latencies), self._invocations,
                         self._colds, self._end, self._reports, floor_container_s=self._floor)

    def floor_round(self, number: int, offsets: np.ndarray) -> float:
        """Container-seconds no strategy can go below in one round, whatever it predicts.

        Every update must be fused (``t_fuse`` each) and the global model written
        (``M / B_dc``); and some container must be up when fusion starts, which costs
        a cold start and its state load (``M / B_dc``, as the model charges every
        container it starts) unless one was kept warm since the round opened, with
        the model it just published in memory, which costs the idle time until the
        first update arrives (the first round has no earlier container).
        ``1 - floor / baseline`` is thus the most any strategy, JIT included, can
        save against a baseline.
        """
        cost = self.cfg.cost
        started = cost.cold_start_s + cost.t_io(self.m)
        start = started if number == 0 else min(started, float(offsets.min()))
        return offsets.size * cost.t_fuse(self.m) + cost.t_io(self.m) + start

    # -- events ---------------------------------------------------------------------------

    def _on_open(self, t: float, number: int) -> None:
        cost = self.cfg.cost
        estimate = self.estimator.estimate(self.learner) if self.cfg.strategy == "jit" else None
        task = self.scheduler.open_round(self.job, number, n_expected=self.cfg.n_parties,
                                         estimate=estimate, now=t,
                                         min_chunk=cost.min_chunk(self.m))
        if self.cfg.workload is None:
            rng = np.random.default_rng([*self.cfg.workload_seed, number])
            offsets = round_offsets(self.pop, self.cfg.params, rng)
        else:
            offsets = self.cfg.workload.offsets[number]
        order = np.argsort(offsets, kind="stable")
        self._floor += self.floor_round(number, offsets)
        self.round = _Round(number, t, offsets, order, t + offsets[order], estimate)
        close = float(self.round.arrivals[-1])
        if task.timer_at is not None and task.timer_at < close:
            self._push(max(t, task.timer_at), "tick")
        self._push(close, "tick")

    def _current(self) -> _Round:
        if self.round is None:
            raise BadRequest("no round is open")
        return self.round

    def _on_tick(self, t: float, _: Any) -> None:
        rnd = self._current()
        k = int(np.searchsorted(rnd.arrivals, t, side="right"))
        if k > rnd.fed:
            self.scheduler.record_arrivals(self.job.job_id, rnd.number, rnd.arrivals[rnd.fed:k])
            rnd.fed = k
        rnd.decisions += [d for d in self.scheduler.tick(t) if d.kind == "aggregate"]
        if rnd.fed == self.cfg.n_parties:
            self._push(self._execute(rnd), "done")

    def _execute(self, rnd: _Round) -> float:
        """Run the round's launches on the modelled platform; returns when fusion ends."""
        cost, m = self.cfg.cost, self.m
        ds = rnd.decisions
        if not ds:
            raise BadRequest(f"round {rnd.number}: the scheduler launched nothing")
        first = np.concatenate([np.asarray(d.first, dtype=np.int64) for d in ds])
        count = np.concatenate([np.asarray(d.count, dtype=np.int64) for d in ds])
        ready = np.concatenate([np.asarray(d.ready_at) for d in ds])
        mode = ds[0].mode
        sort = np.argsort(ready, kind="stable")
        first, count, ready = first[sort], count[sort], ready[sort]
        u, io = cost.t_fuse(m), cost.t_io(m)
        if self.pool is not None:
            # The live gateway: every launch is one stateless step on the aggregate
            # function (load the round's partial, fuse, checkpoint), one chain per round.
            if mode == "always-on":
                finish = always_on_finish(ready, rnd.order[first] % self.n_agg, self.n_agg,
                                          io + u + io)
            else:
                finish = self._run_with_pings(self.pool, rnd, ready, io + count * u + io)
            self._partials = 1
        elif mode == "always-on":
            lanes = rnd.order[first] % self.n_agg
            finish = always_on_finish(ready, lanes, self.n_agg, u)
            self._partials = self.n_agg
        else:
            if mode == "stateless":
                run = run_pool(ready, io + count * u + io, cap=self.n_agg, cold_s=cost.cold_start_s,
                               idle_limit_s=cost.keep_alive_s)
            else:
                est = rnd.estimate
                forecast = None if est is None else ArrivalForecast.of(
                    rnd.start + rnd.offsets, rnd.start + est.t_upd_early, rnd.start + est.t_upd_late)
                # JIT's plan may use fewer aggregators than the job allows.
                cap = (rnd.estimate.n_agg if rnd.estimate is not None and rnd.estimate.n_agg
                       else self.n_agg)
                run = run_pool(ready, count * u, cap=cap, cold_s=cost.cold_start_s + io,
                               idle_limit_s=cost.relaunch_s(m), release_s=io, forecast=forecast,
                               merge_s=io + u)
                chunks = count > 1
                if chunks.any():
                    # Launch to published model had every update been in at launch: the
                    # split's fusion, merging its partials one by one, writing the model.
                    obs = float(np.max(run.finish[chunks] - ready[chunks])
                                + (chunks.sum() - 1) * (io + u) + io)
                    pred = t_agg(int(count[chunks].sum()), cost.t_pair(m), cost.c_agg,
                                 int(chunks.sum()), m, cost.b_dc)
                    rnd.chunk_obs = (pred, obs)
            finish = run.finish
            self._container_s += run.container_s
            self._colds += run.cold_starts
            self._partials = run.partials
        self._invocations += int(ready.size)
        rnd.t_done = max(float(finish.max()), float(rnd.arrivals[-1]))
        return rnd.t_done

    def _run_with_pings(self, pool: KeepAlivePool, rnd: _Round, ready: np.ndarray,
                        work: np.ndarray) -> np.ndarray:
        """Run launches on the keep-alive pool with the warm-up pings JIT's hold sends
        among them (:mod:`fedfaas.jit.prewarm`); returns the launches' finish times."""
        est = rnd.estimate
        hold = None if est is None else WarmHold.for_round(self.job, est)
        if est is None or hold is None:
            return pool.run(ready, work)
        pings = rnd.start + hold.pings(rnd.offsets, est.t_upd_early, est.t_upd_late,
                                       Participation.of(self.learner, est, self.pop.t_wait),
                                       launch=hold.prewarmed_launch(est.deadline, est.t_rnd))
        self._invocations += int(pings.size)
        calls = np.concatenate([ready, pings])
        order = np.argsort(calls, kind="stable")
        finish = pool.run(calls[order], np.concatenate([work, np.zeros(pings.size)])[order])
        out = np.empty_like(finish)
        out[order] = finish
        return out[:ready.size]

    def _on_done(self, t: float, _: Any) -> None:
        rnd = self._current()
        for d in rnd.decisions:
            self.scheduler.complete(d.decision_id)
        final = [d for d in self.scheduler.tick(t) if d.kind == "finalise"]
        if len(final) != 1:
            raise BadRequest(f"round {rnd.number}: expected one finalise decision, got {final}")
        self._invocations += 1
        if self.pool is not None:
            # One more step: load the round's partial, write the global model.
            work = 2 * self.cfg.cost.t_io(self.m)
            if rnd.decisions[0].mode == "always-on":
                self._push(t + work, "published", final[0])
            else:
                self._push(float(self.pool.run(np.array([t]), np.array([work]))[0]), "published",
                           final[0])
            return
        duration, work = self.cfg.cost.finalise(self.m, self._partials)
        self._container_s += work
        self._push(t + duration, "published", final[0])

    def _on_published(self, t: float, final: Decision) -> None:
        rnd = self._current()
        self.scheduler.complete(final.decision_id)
        last = float(rnd.arrivals[-1])
        wl = self.cfg.workload
        due = rnd.start + self.pop.t_wait if self.pop.t_wait is not None and wl is None else last
        latency = max(0.0, t - max(last, due))
        self._latencies.append(latency)
        if rnd.estimate is not None:
            if rnd.estimate.target_latency is not None:
                self.learner.observe_latency(latency, rnd.estimate.target_latency)
            t_agg_obs = None
            if rnd.chunk_obs is not None:
                t_agg_obs = rnd.chunk_obs[1]
                self.learner.observe_aggregation(*rnd.chunk_obs)
            report = self.learner.observe_round(rnd.number, rnd.estimate, rnd.offsets,
                                                t_agg_obs=t_agg_obs, detail=False, latency=latency)
            self._reports.append(report.summary())
        self._end = t
        if rnd.number + 1 < self.cfg.rounds:
            self._push(max(t, due) + (0.0 if wl is None else wl.open_delay_s), "open",
                       rnd.number + 1)


def simulate(config: SimConfig) -> SimResult:
    """Run one simulated job."""
    return Simulator(config).run()
