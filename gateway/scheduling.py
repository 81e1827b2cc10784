"""The gateway's bridge to the JIT scheduler (JIT paper 5.5, Fig. 6): rounds in, invocations out.

At round start the job's deadline estimate sets the aggregation task's
priority and timer (``t_rnd - t_agg``); every durable update is queued as an
arrival; every ``delta`` seconds the scheduler says what to run now, whatever
the job's strategy (JIT or one of the paper's four baselines), and the round
coordinator executes it on the ``aggregate`` function.  All scheduler state
lives in Redis (under :data:`fedfaas.keys.JIT_NAMESPACE`): replicas share the
work and each decision runs once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from typing import Any

import redis

from fedfaas import keys
from fedfaas.config import load_settings
from fedfaas.errors import FedfaasError, NotFound, Unavailable
from fedfaas.jit.scheduler import SchedulerConfig
from fedfaas.jit.service import JitService
from fedfaas.jit.spec import EstimatorJob, PartyTiming
from fedfaas.jit.state import Decision, task_key
from gateway.platform import AggregatorPlatform, PlatformFigures, eager_step_of_fold
from gateway.registry import JobRecord, Registry, RoundRecord
from gateway.rounds import RoundCoordinator

log = logging.getLogger("fedfaas.scheduling")

LAUNCH_TTL_S = 7 * 24 * 3600
ROUND_LEASE_WAIT_S = 5.0  # the driver holds a round's lease for a check, or a whole finalisation


class JitBridge:
    """Connects the registry and round coordinator to :class:`JitService`."""

    def __init__(self, client: redis.Redis, registry: Registry, coordinator: RoundCoordinator,
                 delta_s: float = 0.5, platform: PlatformFigures | None = None) -> None:
        settings = load_settings()
        self.registry = registry
        self.coordinator = coordinator
        # The platform's cold start, keep-alive and measured steps (None: the
        # formulas alone, eager assumed warm).
        self.platform = platform
        self.service = JitService(
            client, namespace=keys.JIT_NAMESPACE, owner=uuid.uuid4().hex[:12],
            config=SchedulerConfig(capacity=settings.agg_capacity, delta=delta_s),
            # Cold start plus state load of an aggregation instance: the learner's prior.
            agg_overhead=settings.agg_overhead_s,
        )
        self._last_renew = 0.0
        self.default_bps = settings.default_bandwidth_bps  # when a party reported none

    # --- rounds ----------------------------------------------------------------------
    def open_round(self, job: JobRecord, selected: list[str] | None = None) -> RoundRecord:
        """Open the job's next round: create it, schedule its aggregation, then take updates.

        A start interrupted after the round was created (an outage) leaves it
        ``opening``; starting the round again resumes it.  A round that cannot be
        scheduled for good (e.g. no estimate for a JIT job) fails at once, visibly.
        """
        parties = self.registry.round_parties(job, selected)
        record = self.coordinator.rounds.create(job, parties)
        if self.service.scheduler.state.get_task(task_key(job.job_id, record.round)) is None:
            try:
                self._schedule(job, record)
            except FedfaasError as exc:
                if not exc.retryable:
                    self.coordinator.fail(job, record.round, f"the round could not be scheduled: "
                                                             f"{exc.message}")
                raise
        self.coordinator.rounds.mark_open(job.job_id, record.round)
        return self.registry.get_round(job.job_id, record.round)

    def _schedule(self, job: JobRecord, record: RoundRecord) -> None:
        """Estimate the round and open its aggregation task (JIT paper 5.5, Fig. 6 l.14-18)."""
        figures = (AggregatorPlatform(cold_start_s=0.0, keep_alive_s=None) if self.platform is None
                   else self.platform.current(job.spec.model.size_bytes))
        spec = EstimatorJob.from_api(job.spec, job_id=job.job_id, cold_start_s=figures.cold_start_s,
                                   keep_alive_s=figures.keep_alive_s,
                                   eager_step_s=figures.eager_step_s)
        # A round opened for fewer parties than the job's quorum needs them all.
        spec = dataclasses.replace(spec, quorum=record.quorum)
        profiles = self.registry.list_parties(job.job_id)
        default_bps = self.default_bps
        parties = []
        for party in record.expected:
            # A party that has not measured its bandwidth yet is assumed to have
            # the deployment's default, so t_comm stays finite (paper 5.3).
            profile = {**profiles[party]}
            for name in ("bandwidth_down_bps", "bandwidth_up_bps"):
                profile[name] = profile.get(name) or default_bps
            parties.append(PartyTiming.from_api(profile, party_id=party))
        self.service.start_round(spec, parties, record.round, now=record.started_at,
                                 platform=None if self.platform is None else figures.to_dict())

    def estimate_summary(self, job_id: str, rnd: int) -> dict[str, Any] | None:
        """What the API shows of a round's estimate, read from its one record (None: none)."""
        rec = self.service.estimate_record(job_id, rnd)
        if rec is None:
            return None
        summary: dict[str, Any] = {
            "t_rnd_s": round(float(rec["t_rnd"]), 4),
            "t_agg_s": round(float(rec["t_agg"]), 4),
            # The scheduler's timer: t_rnd's low quantile minus t_agg and its slack.
            "jit_start_at": float(rec["round_start"]) + float(rec["deadline"]),
            # The job's latency target in seconds after the last update (None: "fastest").
            "target_latency_s": (None if rec.get("target_latency") is None
                                 else round(float(rec["target_latency"]), 4)),
            # JIT's warm hold for the round's last update (None: no pings).
            "warm_hold": rec.get("warm_hold"),
        }
        if rec.get("platform") is not None:
            summary["platform"] = rec["platform"]
        return summary

    def arrived(self, job_id: str, rnd: int, party: str, now: float | None = None) -> None:
        """A durable update: queue it for the scheduler."""
        self.service.record_arrival(job_id, rnd, party, party, now=now)

    def on_event(self, fields: dict[str, str]) -> None:
        """Handle one entry of the arrivals stream (the ``jit`` consumer group).

        A stored update is queued as an arrival at the time it was recorded
        (idempotent: its id is the party).  An update whose round has no
        aggregation task yet, while the round is open, is one that raced the
        round's start: it is left for a retry.
        """
        if fields.get("kind") == "model":
            return
        job_id, rnd, party = fields["job"], int(fields["round"]), fields["party"]
        if self.service.scheduler.state.get_task(task_key(job_id, rnd)) is None:
            try:
                state = self.registry.get_round(job_id, rnd).state
            except NotFound:
                return
            if state == "open":
                raise Unavailable(f"round {rnd} of {job_id} has no aggregation task yet")
            return
        self.arrived(job_id, rnd, party, now=float(fields["arrived_at"]))

    def claim_warm_ping(self, job_id: str, rnd: int, now: float | None = None) -> bool:
        """Whether this replica should ping ``aggregate`` now to hold it warm for the round's
        last update (:mod:`fedfaas.jit.prewarm`).

        One claim per ping interval across replicas and rounds: one warm instance is
        what a hold needs, and a ping from any round keeps it.
        """
        t = time.time() if now is None else now
        r, ns = self.registry.redis, self.service.ns
        if r.exists(keys.jit_warm_ping(ns)):
            return False  # pinged within the interval: nothing to decide on this tick
        raw = r.get(keys.jit_warm_ping_at(ns))
        ping_s = self.service.warm_due(job_id, rnd, t,
                                       last_ping=None if raw is None else float(raw))
        if ping_s is None or not r.set(keys.jit_warm_ping(ns), "1", nx=True,
                                       px=max(1, int(ping_s * 1000))):
            return False
        r.set(keys.jit_warm_ping_at(ns), repr(t), ex=LAUNCH_TTL_S)
        return True

    def reports(self, job_id: str) -> dict[str, Any]:
        """Estimates against observations, per round (for the API)."""
        rounds = []
        for summary in self.service.reports(job_id):
            rnd = int(summary.get("round", 0))
            try:
                detail = self.service.round_report(job_id, rnd)
            except NotFound:
                detail = {}
            rounds.append({**summary, "parties": detail.get("parties", detail.get("rows", []))})
        return {"job_id": job_id, "learner": self.service.learner(job_id).controller(),
                "rounds": rounds}

    # --- the loop --------------------------------------------------------------------
    def tick(self, now: float | None = None) -> int:
        """Run what the scheduler says is due; returns how many decisions were handled."""
        t = time.time() if now is None else now
        if t - self._last_renew > 2.0:
            self.service.renew_leases(t)
            self._last_renew = t
        decisions = self.service.tick(t)
        for decision in decisions:
            try:
                self._execute(decision)
            except FedfaasError as exc:
                # The lease expires and another tick (here or on a replica) retries it.
                log.warning("decision %s (%s) failed: %s", decision.decision_id, decision.kind, exc.message)
        return len(decisions)

    def _execute(self, d: Decision) -> None:
        job = self.registry.get_job(d.job_id)
        if d.kind == "aggregate":
            if self.registry.get_round(d.job_id, d.round).state not in ("open", "aggregating"):
                # Closed or failed meanwhile (e.g. the aggregate function kept failing it).
                self.service.complete(d.decision_id)
                return
            self._note_launch(d)
            for part, ids in enumerate(d.update_ids or []):
                if part in d.parts_done:
                    continue
                started = time.monotonic()
                folded = self.coordinator.fold(job, d.round, list(ids))
                step = eager_step_of_fold(time.monotonic() - started, folded)
                if self.platform is not None and step is not None:
                    self.platform.record_step(job.spec.model.size_bytes, step)
                self.service.complete(d.decision_id, part=part)
        elif d.kind == "finalise":
            # Under the round's lease: the driver's safety net finalises rounds it finds
            # "aggregating", which this one is while its finalisation runs.
            if not self._acquire_round(d.job_id, d.round):
                return  # re-issued when the decision's lease expires
            try:
                record = self.registry.get_round(d.job_id, d.round)
                if record.state in ("open", "aggregating"):
                    started = time.time()
                    self.coordinator.finalize(job, d.round)
                    self._learn(d.job_id, d.round, self._t_agg_obs(d.job_id, d.round, started))
            finally:
                self.coordinator.release(d.job_id, d.round)
            self.service.complete(d.decision_id)
        elif d.kind == "round_failed":
            self.coordinator.fail_quorum(job, d.round)
            self.service.complete(d.decision_id)
        elif d.kind == "preempt":
            # Steps are short and run one after another here, so the target has
            # already stopped at a step boundary; its partial is checkpointed in S3.
            self.service.complete(d.decision_id)

    def _acquire_round(self, job_id: str, rnd: int) -> bool:
        """Take the round's work lease, waiting up to ``ROUND_LEASE_WAIT_S`` for its holder."""
        deadline = time.monotonic() + ROUND_LEASE_WAIT_S
        while not self.coordinator.acquire(job_id, rnd):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _note_launch(self, d: Decision) -> None:
        """Remember when the round's first aggregation was launched and with how many updates."""
        n = sum(len(ids) for ids in d.update_ids or [])
        self.registry.redis.set(keys.jit_launch(self.service.ns, d.job_id, d.round),
                                json.dumps([time.time(), n]), nx=True, ex=LAUNCH_TTL_S)

    def _t_agg_obs(self, job_id: str, rnd: int, finalise_started: float) -> float | None:
        """Launch-to-published seconds, when every update was in at launch (what ``t_agg``
        predicts: cold start, state load, fusion, checkpoints, the model write); None when
        updates joined a running aggregation, which says nothing about ``t_agg``."""
        raw = self.registry.redis.get(keys.jit_launch(self.service.ns, job_id, rnd))
        if raw is None:  # nothing launched before the close: finalisation did it all
            return time.time() - finalise_started
        launched_at, n = json.loads(raw)
        if n < len(self.registry.round_updates(job_id, rnd)):
            return None
        return time.time() - float(launched_at)

    def _learn(self, job_id: str, rnd: int, t_agg_obs: float | None) -> None:
        try:
            record = self.registry.get_round(job_id, rnd)
            # A round closed without every update could close no earlier than t_wait.
            missing = self.registry.round_update_count(job_id, rnd) < len(record.expected)
            self.service.finish_round(job_id, rnd, t_agg_obs=t_agg_obs,
                                      closable_at=record.deadline_at if missing else None)
        except FedfaasError as exc:
            log.warning("learning from round %d of %s failed: %s", rnd, job_id, exc.message)
