"""Round coordination: fold arrived updates, finalise or fail rounds (JIT paper 2.1, 5.5).

The coordinator is called by the gateway's driver loop (any replica) and by
the scheduler.  It invokes the ``aggregate`` function for each step, retries a
step whose instance died (steps are idempotent), and advances the round's
pointer to its newest partial aggregate with a compare-and-set in Redis, so
two replicas can never fold the same update twice into the chain.

When a round closes is the JIT scheduler's decision (every expected update
arrived, or ``t_wait`` with the quorum met; else it fails); the coordinator
executes it and records the outcome through :class:`gateway.round_state.RoundStore`,
the one writer of round records.  An update the
function cannot fuse (its stored bytes differ from the acknowledged digest, or
it does not match the job's model) is excluded with its reason, and the round
goes on with the others while they still make the quorum.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from fedfaas import keys
from fedfaas.contracts import StepAnswer, StepRequest, schema_json
from fedfaas.errors import FedfaasError, Unavailable
from fedfaas.fusion import get_algorithm
from fedfaas.fusion.algorithm import LinearAlgorithm
from fedfaas.meta import text
from fedfaas.model_schema import ParameterSchema
from fedfaas.retry import Backoff, Retry
from gateway import metrics
from gateway.registry import JobRecord, Registry, RoundRecord
from gateway.round_state import RoundStore

log = logging.getLogger("fedfaas.rounds")

STEP_RETRY = Retry(retries=5, backoff=Backoff(base_s=0.2, cap_s=3.0, jitter=0.0),
                   statuses=frozenset({429, 502, 503, 504}))
"""Retries of one aggregation step, run by the ``aggregate`` client's HTTP adapter for every
method (a step is idempotent): a reclaimed or cold-starting instance answers 502/503, a busy
one 429/504, or the connection drops.  The function's own 500/507 (it ran the step and
failed) is not retried; whatever is still unavailable is retried on the driver's next tick."""
STEP_FAILURES_MAX = 3
"""Finalisations of a round the aggregate function refuses (its own error, not an outage)
before the round fails visibly instead of being retried on every tick."""
STEP_FAILED = "step_failed"
"""Error code of a step the ``aggregate`` function itself failed (500/507): retrying now
would fail the same way."""
# A round's work lease lives LOCK_MS unless its holder renews it: a gateway
# killed mid-step blocks its rounds for seconds, not for the length of a step.
LOCK_MS = 15_000
_RENEW_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

Invoke = Callable[[StepRequest], StepAnswer]


class _LeaseRenewal(threading.Thread):
    """Keeps one held lease alive, renewing it every third of its lifetime, until stopped."""

    def __init__(self, client: redis.Redis, key: str, owner: str) -> None:
        super().__init__(name="fedfaas-lease", daemon=True)
        self.client = client
        self.key = key
        self.owner = owner
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(LOCK_MS / 3000):
            try:
                if not self.client.eval(_RENEW_IF_OWNER, 1, self.key, self.owner, LOCK_MS):
                    return  # lost the lease (expired while Redis was away); stop renewing
            except redis.RedisError as exc:
                log.warning("cannot renew lease %s: %s", self.key, exc)


class RoundCoordinator:
    """Drives rounds of every job through the ``aggregate`` function.

    Parameters
    ----------
    registry
        Jobs, parties and rounds in Redis.
    invoke
        Calls the ``aggregate`` function with a step request and returns its
        answer; raises :class:`Unavailable` when the instance died or is unreachable.
    """

    def __init__(self, registry: Registry, invoke: Invoke, owner: str = "gateway") -> None:
        self.registry = registry
        self.redis = registry.redis
        self.rounds = RoundStore(registry.redis)
        self.invoke = invoke
        self.owner = owner
        self._renewals: dict[str, _LeaseRenewal] = {}

    # --- helpers ---------------------------------------------------------------------
    def _step(self, request: StepRequest) -> StepAnswer:
        try:
            return self.invoke(request)
        except Unavailable as exc:
            # ``invoke`` already retried per STEP_RETRY; the next tick tries again.
            log.warning("aggregate step failed: %s; retried on the next tick", exc.message)
            raise

    def _request(self, job: JobRecord, rnd: int, parties: list[str], base: str | None,
                 finalize: bool, quorum: int = 1) -> StepRequest:
        # Only the step's parties: an eager fold of one update must not read a large round's table.
        return StepRequest(
            tenant=job.tenant, job=job.job_id, round=rnd, algorithm=job.spec.algorithm,
            parties=parties, digests=self.registry.update_digests(job.job_id, rnd, parties),
            base=base, finalize=finalize, min_parties=max(1, quorum),
            schema=schema_json(self.registry.job_schema(job.job_id)),
        )

    def chain(self, job_id: str, rnd: int) -> tuple[str | None, list[str]]:
        """The round's newest partial aggregate id and the parties it covers."""
        raw = self.redis.hmget(keys.round_(job_id, rnd), ["partial", "partial_parties"])
        base = text(raw[0]) if raw[0] else None
        parties = json.loads(raw[1]) if raw[1] else []
        return base, parties

    def excluded(self, job_id: str, rnd: int) -> dict[str, str]:
        """Parties whose updates the round's partial aggregate left out, with the reason."""
        raw = self.redis.hget(keys.round_(job_id, rnd), "excluded")
        return dict(json.loads(raw)) if raw else {}

    def pending(self, job_id: str, rnd: int) -> list[str]:
        """Arrived parties neither folded into the round's partial aggregate nor excluded, by arrival."""
        _, covered = self.chain(job_id, rnd)
        done = set(covered) | set(self.excluded(job_id, rnd))
        updates = self.registry.round_updates(job_id, rnd)
        order = sorted(updates, key=lambda p: (updates[p]["arrived_at"], p))
        return [p for p in order if p not in done]

    def acquire(self, job_id: str, rnd: int) -> bool:
        """Take the round's work lease (one replica works on a round at a time).

        The lease is renewed in the background until :meth:`release`, so a long
        step keeps it while a dead holder loses it within ``LOCK_MS``.
        """
        key = keys.round_lease(job_id, rnd)
        if not self.redis.set(key, self.owner, nx=True, px=LOCK_MS):
            return False
        renewal = _LeaseRenewal(self.redis, key, self.owner)
        self._renewals[key] = renewal
        renewal.start()
        return True

    def release(self, job_id: str, rnd: int) -> None:
        """Give the lease back (only if this coordinator still holds it)."""
        key = keys.round_lease(job_id, rnd)
        renewal = self._renewals.pop(key, None)
        if renewal is not None:
            renewal.stopped.set()
        self.redis.eval(_RELEASE_IF_OWNER, 1, key, self.owner)

    # --- steps -----------------------------------------------------------------------
    def fold(self, job: JobRecord, rnd: int, parties: list[str]) -> dict[str, Any]:
        """Fold ``parties``' updates into the round's partial aggregate (one invocation)."""
        algorithm = get_algorithm(job.spec.algorithm.name, **dict(job.spec.algorithm.params))
        if not isinstance(algorithm, LinearAlgorithm) or not parties:
            return {"folded": []}
        base, covered = self.chain(job.job_id, rnd)
        result = self._step(self._request(job, rnd, parties, base, finalize=False))
        if result.partial is None:
            raise FedfaasError("aggregate answered a fold without a partial aggregate", status=500,
                               code=STEP_FAILED)
        if not self.rounds.advance_chain(job.job_id, rnd, base, result.partial, result.parties,
                                         result.excluded):
            return {"folded": [], "raced": True}
        return {"folded": [p for p in result.parties if p not in covered], "partial": result.partial,
                "reused": result.reused, "fold_s": result.fold_s}

    def finalize(self, job: JobRecord, rnd: int, now: float | None = None) -> RoundRecord:
        """Close the round: fuse what arrived into the global model of round ``rnd``.

        A step the function refuses or fails itself (a bug, bad stored data) is
        counted; at ``STEP_FAILURES_MAX`` the round fails with the function's reason.
        """
        try:
            return self._finalize(job, rnd, now)
        except FedfaasError as exc:
            if exc.code != STEP_FAILED and not 400 <= exc.status < 500:
                raise  # an outage: the next tick retries
            failures = self.rounds.count_step_failure(job.job_id, rnd)
            if failures >= STEP_FAILURES_MAX:
                self.fail(job, rnd, f"aggregation failed {failures} times: {exc.message}")
            raise

    def _finalize(self, job: JobRecord, rnd: int, now: float | None) -> RoundRecord:
        if not self.rounds.begin_aggregating(job.job_id, rnd):
            return self.registry.get_round(job.job_id, rnd)  # ended meanwhile
        updates = self.registry.round_updates(job.job_id, rnd)
        algorithm = get_algorithm(job.spec.algorithm.name, **dict(job.spec.algorithm.params))
        record = self.registry.get_round(job.job_id, rnd)
        if isinstance(algorithm, LinearAlgorithm):
            base, covered = self.chain(job.job_id, rnd)
            done = set(covered) | set(self.excluded(job.job_id, rnd))
            rest = [p for p in sorted(updates) if p not in done]
        else:
            base, rest = None, sorted(updates)
        result = self._step(self._request(job, rnd, rest, base, finalize=True, quorum=record.quorum))
        excluded = result.excluded
        if result.model_key is None:
            self.fail(job, rnd, f"quorum not met: {len(result.parties)} of {record.quorum} required "
                                f"updates could be fused; excluded: {_listed(excluded)}", excluded=excluded)
            return self.registry.get_round(job.job_id, rnd)
        if result.tensor_schema is not None and self.registry.job_schema(job.job_id) is None:
            self.registry.set_job_schema(job, ParameterSchema.from_json(json.dumps(result.tensor_schema)))
        closed_at = time.time() if now is None else now
        last_arrival = max((u["arrived_at"] for u in updates.values()), default=closed_at)
        if self.rounds.close(job, rnd, model_key=result.model_key, parties_included=result.parties,
                             excluded=excluded, closed_at=closed_at, last_arrival_at=last_arrival):
            metrics.round_closed(max(0.0, closed_at - last_arrival))
        return self.registry.get_round(job.job_id, rnd)

    def fail(self, job: JobRecord, rnd: int, reason: str, excluded: dict[str, str] | None = None) -> None:
        """Mark the round failed, visibly, with ``reason`` (and the updates excluded, if any)."""
        if self.rounds.fail(job.job_id, rnd, reason, excluded):
            metrics.round_failed()
            log.warning("job %s round %d failed: %s", job.job_id, rnd, reason)

    def fail_quorum(self, job: JobRecord, rnd: int) -> None:
        """The round reached ``t_wait`` without its quorum of updates."""
        record = self.registry.get_round(job.job_id, rnd)
        arrived = self.registry.round_update_count(job.job_id, rnd)
        self.fail(job, rnd, f"quorum not met at t_wait: {arrived} of {record.quorum} required "
                            f"updates arrived")


def _listed(excluded: dict[str, str]) -> str:
    return "; ".join(f"{party} ({why})" for party, why in sorted(excluded.items())) or "none"


def safe(fn: Callable[[], Any]) -> Any:
    """Run one coordination action; log and swallow errors so the driver loop survives."""
    try:
        return fn()
    except FedfaasError as exc:
        log.warning("round action failed: %s", exc.message)
    except redis.RedisError as exc:
        log.warning("round action failed, Redis unavailable: %s", exc)
    return None
