"""The gateway's entry point to JIT aggregation (JIT paper 5, Fig. 5 and 6) on Redis.

One :class:`JitService` per gateway process; every bit of state (scheduler
tasks and claims, each job's learner, each round's estimate and observed
arrivals) lives in Redis, so any replica can serve any call and a restarted
replica carries on.  The call sequence::

    svc.start_round(job, parties, r)           # estimate, priority, timer (Fig. 6 14-18)
    svc.record_arrival(job_id, r, party, uid)  # after the update is durable in S3
    for d in svc.tick():                       # every delta seconds, or right after arrivals
        ...                                    # invoke aggregate / finalise functions
        svc.complete(d.decision_id, part, n_fused)
    svc.finish_round(job_id, r)                # after the global model is published
    svc.reports(job_id)                        # predicted vs observed, per round
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import redis

from fedfaas import keys
from fedfaas.errors import BadRequest, NotFound
from fedfaas.jit.calibration import calibrate_t_pair
from fedfaas.jit.clock import Clock, SystemClock
from fedfaas.jit.estimate import JobEstimate
from fedfaas.jit.estimator import DeadlineEstimator
from fedfaas.jit.formulas import t_agg
from fedfaas.jit.learning import ArrivalLearner, RoundReport
from fedfaas.jit.prewarm import Participation, WarmHold
from fedfaas.jit.redis_state import RedisState
from fedfaas.jit.scheduler import Scheduler, SchedulerConfig
from fedfaas.jit.spec import EstimatorJob, PartyTiming
from fedfaas.jit.state import Decision, TaskRecord, task_key

ROUND_TTL_S = 7 * 24 * 3600
"""How long a finished round's estimate and arrivals are kept."""


class JitService:
    """JIT estimator, learner and scheduler behind one facade (see the module docstring).

    Parameters
    ----------
    client
        A ``redis.Redis`` client with a ``socket_timeout``.
    namespace
        Key prefix shared by all replicas of one deployment.
    clock, config, owner
        Passed to the :class:`~fedfaas.jit.scheduler.Scheduler`.
    agg_overhead
        The platform's known aggregation start-up (cold start plus state load),
        the learner's prior for what the paper's ``t_agg`` leaves out.
    """

    def __init__(self, client: redis.Redis, *, namespace: str = keys.JIT_NAMESPACE,
                 clock: Clock | None = None, config: SchedulerConfig | None = None,
                 owner: str | None = None, agg_overhead: float = 0.0) -> None:
        self.r = client
        self.ns = namespace
        self.clock = clock or SystemClock()
        self.scheduler = Scheduler(RedisState(client, namespace), self.clock, owner=owner,
                                   config=config)
        self.agg_overhead = agg_overhead

    # -- estimates ------------------------------------------------------------------------

    def t_pair(self, model_bytes: int) -> float:
        """``t_pair`` for a model size: calibrated once (paper 5.4), then cached in Redis."""
        key = keys.jit_t_pair(self.ns, model_bytes)
        cached = self.r.get(key)
        if cached is not None:
            return float(cached)
        value = calibrate_t_pair(model_bytes)
        self.r.set(key, repr(value))
        return value

    def learner(self, job_id: str) -> ArrivalLearner:
        """The job's learner (a fresh one before its first round)."""
        raw = self.r.get(keys.jit_learner(self.ns, job_id))
        if raw is None:
            return ArrivalLearner(agg_overhead=self.agg_overhead)
        return ArrivalLearner.from_dict(json.loads(raw))

    def estimate(self, job: EstimatorJob, parties: Sequence[PartyTiming],
                 t_pair: float | None = None) -> JobEstimate:
        """The current estimate for ``job`` (paper 5.3-5.4, corrected by what was learned)."""
        tp = self.t_pair(job.model_bytes) if t_pair is None else t_pair
        return DeadlineEstimator(job, parties, t_pair=tp).estimate(self.learner(job.job_id))

    # -- rounds ---------------------------------------------------------------------------

    def start_round(self, job: EstimatorJob, parties: Sequence[PartyTiming], round_no: int, *,
                    now: float | None = None, t_pair: float | None = None,
                    min_chunk: int = 1, platform: dict[str, Any] | None = None
                    ) -> tuple[TaskRecord, JobEstimate]:
        """Estimate the round and open its aggregation task with priority and timer.

        ``platform`` (the aggregator platform's figures the estimate used) is kept
        with the round's estimate record, its one record.
        """
        t0 = self.clock.now() if now is None else now
        est = self.estimate(job, parties, t_pair)
        task = self.scheduler.open_round(job, round_no, n_expected=len(parties), estimate=est,
                                         now=t0, min_chunk=min_chunk)
        hold = WarmHold.for_round(job, est)
        # The estimate in its one JSON form, and what the round adds to it.
        record = {**est.to_dict(), "round_start": t0, "n_agg": task.n_agg,
                  # The paper's formula for the aggregators planned: what the learner
                  # compares the observed aggregation time with.
                  "t_agg_formula": t_agg(len(est.party_ids), float(est.meta["t_pair"]),
                                         job.c_agg, task.n_agg, job.model_bytes, job.b_dc),
                  "warm_hold": None if hold is None else hold.to_dict(),
                  # The timer's launch offset, if the hold pre-warms for it.
                  "prewarm_launch": (None if hold is None
                                     else hold.prewarmed_launch(est.deadline, est.t_rnd)),
                  # What the hold weighs the missing parties by (learned per party).
                  "participation": (None if hold is None else Participation.of(
                      self.learner(job.job_id), est, job.t_wait).to_dict()),
                  "platform": platform}
        self.r.set(keys.jit_estimate(self.ns, task_key(job.job_id, round_no)), json.dumps(record),
                   ex=ROUND_TTL_S)
        return task, est

    def estimate_record(self, job_id: str, round_no: int) -> dict[str, Any] | None:
        """The round's estimate as recorded at its start (None: never estimated, or expired)."""
        raw = self.r.get(keys.jit_estimate(self.ns, task_key(job_id, round_no)))
        return None if raw is None else dict(json.loads(raw))

    def record_arrival(self, job_id: str, round_no: int, party_id: str, update_id: str,
                       now: float | None = None) -> bool:
        """An update is durable: queue it for aggregation.  False if the round takes no more."""
        t = self.clock.now() if now is None else now
        if not self.scheduler.record_arrival(job_id, round_no, update_id, now=t):
            return False
        key = keys.jit_party_arrivals(self.ns, task_key(job_id, round_no))
        self.r.hsetnx(key, party_id, repr(t))
        self.r.expire(key, ROUND_TTL_S)
        return True

    def warm_due(self, job_id: str, round_no: int, now: float | None = None, *,
                 last_ping: float | None = None) -> float | None:
        """Seconds between pings if the round's warm hold wants a ping of the aggregator now,
        else None (:mod:`fedfaas.jit.prewarm`); ``last_ping`` is when it was last pinged."""
        key = task_key(job_id, round_no)
        raw = self.r.get(keys.jit_estimate(self.ns, key))
        if raw is None:
            return None
        rec = json.loads(raw)
        if not rec.get("warm_hold"):
            return None
        hold = WarmHold.from_dict(rec["warm_hold"])
        arrivals = {p.decode(): float(t) for p, t in  # type: ignore[union-attr]
                    self.r.hgetall(keys.jit_party_arrivals(self.ns, key)).items()}
        t0 = float(rec["round_start"])
        t = self.clock.now() if now is None else now
        missing = np.array([p not in arrivals for p in rec["party_ids"]])
        last_arrival = max(arrivals.values(), default=t0) - t0
        participation = rec.get("participation")
        if hold.due(t - t0, np.asarray(rec["t_upd_early"]), np.asarray(rec["t_upd_late"]),
                    missing, last_arrival=last_arrival,
                    since_ping=None if last_ping is None else t - last_ping,
                    participation=(None if participation is None
                                   else Participation.from_dict(participation)),
                    launch=rec.get("prewarm_launch")):
            return hold.ping_s
        return None

    def tick(self, now: float | None = None) -> list[Decision]:
        """One scheduling round: what to launch, finalise or preempt now."""
        return self.scheduler.tick(now)

    def complete(self, decision_id: str, part: int | None = None,
                 n_fused: int | None = None) -> Decision | None:
        """An invocation of a decision returned (``n_fused`` < its count: it was preempted)."""
        return self.scheduler.complete(decision_id, part, n_fused)

    def renew_leases(self, now: float | None = None) -> int:
        """Keep this replica's claims alive (call every few seconds)."""
        return self.scheduler.renew_leases(now)

    def finish_round(self, job_id: str, round_no: int, *, t_agg_obs: float | None = None,
                     t_agg_pred: float | None = None, published_at: float | None = None,
                     closable_at: float | None = None) -> RoundReport:
        """Learn from the round's observed arrivals (and aggregation time) and keep the report.

        ``t_agg_obs`` is launch-to-published seconds of the round's aggregation
        when every update was in at launch; ``t_agg_pred`` the paper's formula
        for the same number of updates (defaults to the formula for the round's
        planned aggregators).  ``published_at`` (default: now) is when the global
        model was published: its delay after the last update (or after
        ``closable_at``, when the round could not close before, e.g. at ``t_wait``
        with updates missing), against the job's latency target, tunes the JIT timer.
        """
        key = task_key(job_id, round_no)
        raw = self.r.get(keys.jit_estimate(self.ns, key))
        if raw is None:
            raise NotFound(f"no estimate recorded for round {round_no} of job {job_id}")
        rec = json.loads(raw)
        arrivals = {p.decode(): float(t) for p, t in  # type: ignore[union-attr]
                    self.r.hgetall(keys.jit_party_arrivals(self.ns, key)).items()}
        t0 = rec["round_start"]
        observed = np.array([arrivals[p] - t0 if p in arrivals else math.nan
                             for p in rec["party_ids"]])
        est = JobEstimate.from_dict({"job_id": job_id, **rec})  # older records lack job_id
        learner = self.learner(job_id)
        if t_agg_obs is not None:
            if t_agg_obs < 0:
                raise BadRequest("t_agg_obs must be >= 0")
            formula = float(rec.get("t_agg_formula", est.t_agg_paper))
            learner.observe_aggregation(formula if t_agg_pred is None else t_agg_pred, t_agg_obs)
        latency = None
        if arrivals:
            done = self.clock.now() if published_at is None else published_at
            could_close = max(max(arrivals.values()),
                              -math.inf if closable_at is None else closable_at)
            latency = max(0.0, done - could_close)
            if est.target_latency is not None:
                learner.observe_latency(latency, float(est.target_latency))
        report = learner.observe_round(round_no, est, observed, t_agg_obs=t_agg_obs,
                                       latency=latency)
        self.r.set(keys.jit_learner(self.ns, job_id), json.dumps(learner.to_dict()))
        self.r.set(keys.jit_report(self.ns, key), json.dumps(report.to_dict()), ex=ROUND_TTL_S)
        return report

    def reports(self, job_id: str) -> list[dict[str, Any]]:
        """Per-round summaries of predicted against observed times, oldest first."""
        return self.learner(job_id).report_history()

    def round_report(self, job_id: str, round_no: int) -> dict[str, Any]:
        """One finished round's report with per-party rows."""
        raw = self.r.get(keys.jit_report(self.ns, task_key(job_id, round_no)))
        if raw is None:
            raise NotFound(f"no report for round {round_no} of job {job_id}")
        return json.loads(raw)
