"""The one writer of a round's state: opening -> open -> aggregating -> closed | failed.

Every change of a round record goes through :class:`RoundStore`, each as one
atomic step in Redis: creating the round (a ``WATCH``/``MULTI`` transaction
over the job's round counter), and every later transition as a Lua script that
checks the state it leaves, so two gateway replicas can never both close a
round, nor close one that failed.  The partial-aggregate chain advances by
compare-and-set on its head.  :class:`gateway.registry.Registry` serves rounds
read-only.

A round is created ``opening``, takes updates only once its aggregation task is
scheduled (``open``), and a start interrupted in between (a replica died, Redis
blinked) is resumed by starting the round again (JIT paper 2.1, 5.5).

When a round closes is decided in one place, the JIT scheduler
(:mod:`fedfaas.jit.scheduler`: every expected update arrived, or ``t_wait``
with the quorum met, else it fails); this module only records it.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis

from fedfaas import keys
from fedfaas.errors import BadRequest, Conflict
from fedfaas.meta import text
from gateway.registry import JobRecord, RoundRecord, read_round, round_fields

ROUND_STATES = ("opening", "open", "aggregating", "closed", "failed")
ENDED = ("closed", "failed")
NOT_ENDED = ("opening", "open", "aggregating")

# KEYS: round hash, active-rounds set; ARGV: allowed states (comma-separated), new state,
# the round's member of the active set, then field/value pairs.
_TRANSITION = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == state then allowed = true end end
if not allowed then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], unpack(ARGV, 4))
if ARGV[2] == 'closed' or ARGV[2] == 'failed' then redis.call('SREM', KEYS[2], ARGV[3]) end
return 1
"""
# KEYS: round hash; ARGV: expected head ('' for none), new head, then field/value pairs.
_ADVANCE_CHAIN = """
local head = redis.call('HGET', KEYS[1], 'partial') or ''
if head ~= ARGV[1] then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'open' and state ~= 'aggregating' then return 0 end
redis.call('HSET', KEYS[1], 'partial', ARGV[2], unpack(ARGV, 3))
redis.call('HINCRBY', KEYS[1], 'steps', 1)
return 1
"""


class RoundStore:
    """Opens rounds and moves them through their states, atomically (see the module docstring)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._transition = client.register_script(_TRANSITION)
        self._advance = client.register_script(_ADVANCE_CHAIN)

    def create(self, job: JobRecord, parties: list[str], now: float | None = None) -> RoundRecord:
        """Create the job's next round, ``opening``, for ``parties``; 409 while its current round
        is open or aggregating.  A round still ``opening`` is returned as it is, to be resumed."""
        now = time.time() if now is None else now
        if not parties:
            raise BadRequest("a round needs at least one party")
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(keys.job(job.job_id))
                    current = int(pipe.hget(keys.job(job.job_id), "current_round") or 0)
                    if current:
                        state = text(pipe.hget(keys.round_(job.job_id, current), "state"))
                        if state == "opening":
                            pipe.reset()
                            return self._get(job.job_id, current)
                        if state not in ENDED:
                            raise Conflict(f"round {current} of job {job.job_id!r} is still {state}")
                    if current >= job.spec.rounds:
                        raise Conflict(f"job {job.job_id!r} has run all its {job.spec.rounds} rounds")
                    rnd = current + 1
                    record = RoundRecord(
                        job_id=job.job_id, round=rnd, state="opening", started_at=now,
                        deadline_at=now + job.spec.t_wait_s, expected=parties,
                        quorum=min(job.spec.quorum, len(parties)),
                    )
                    pipe.multi()
                    pipe.hset(keys.round_(job.job_id, rnd), mapping=round_fields(record))
                    pipe.sadd(keys.round_expected(job.job_id, rnd), *parties)
                    pipe.hset(keys.job(job.job_id), mapping={"current_round": rnd, "state": "running"})
                    pipe.sadd(keys.active_rounds(), keys.active_round(job.job_id, rnd))
                    pipe.execute()
                    return record
                except redis.WatchError:
                    continue

    def _move(self, job_id: str, rnd: int, allowed: tuple[str, ...], state: str,
              fields: dict[str, Any]) -> bool:
        flat = [str(x) for pair in fields.items() for x in pair]
        done = int(cast(int, self._transition(
            keys=[keys.round_(job_id, rnd), keys.active_rounds()],
            args=[",".join(allowed), state, keys.active_round(job_id, rnd), *flat])))
        if done < 0:
            raise BadRequest(f"round {rnd} of job {job_id!r} has not been started")
        return done == 1

    def _get(self, job_id: str, rnd: int) -> RoundRecord:
        return read_round(self.redis, job_id, rnd)

    def mark_open(self, job_id: str, rnd: int) -> bool:
        """opening -> open: the round's aggregation is scheduled, updates are taken."""
        return self._move(job_id, rnd, ("opening",), "open", {})

    def begin_aggregating(self, job_id: str, rnd: int) -> bool:
        """open -> aggregating (the final step is under way); True unless already past it."""
        return self._move(job_id, rnd, ("open", "aggregating"), "aggregating", {})

    def close(self, job: JobRecord, rnd: int, *, model_key: str, parties_included: list[str],
              excluded: dict[str, str], closed_at: float, last_arrival_at: float) -> bool:
        """aggregating -> closed with the round's model; announces the model on the arrivals stream."""
        fields = {
            "closed_at": repr(closed_at), "model_key": model_key,
            "parties_included": json.dumps(parties_included), "excluded": json.dumps(excluded),
            "aggregation_latency_s": repr(max(0.0, closed_at - last_arrival_at)),
            "last_arrival_at": repr(last_arrival_at),
        }
        if not self._move(job.job_id, rnd, ("open", "aggregating"), "closed", fields):
            return False
        if rnd >= job.spec.rounds:
            self.redis.hset(keys.job(job.job_id), "state", "finished")
        self.redis.xadd(keys.arrivals_stream(), {"kind": "model", "job": job.job_id, "tenant": job.tenant,
                                                 "round": rnd, "key": model_key},
                        maxlen=keys.ARRIVALS_MAXLEN, approximate=True)
        return True

    def fail(self, job_id: str, rnd: int, reason: str, excluded: dict[str, str] | None = None) -> bool:
        """open | aggregating -> failed with ``reason``; False when the round had already ended."""
        fields: dict[str, Any] = {"reason": reason, "closed_at": repr(time.time())}
        if excluded:
            fields["excluded"] = json.dumps(excluded)
        return self._move(job_id, rnd, NOT_ENDED, "failed", fields)

    def advance_chain(self, job_id: str, rnd: int, base: str | None, partial: str,
                      parties: list[str], excluded: dict[str, str]) -> bool:
        """Make ``partial`` the round's newest partial aggregate if ``base`` still is (CAS)."""
        return bool(self._advance(
            keys=[keys.round_(job_id, rnd)],
            args=[base or "", partial, "partial_parties", json.dumps(parties),
                  "excluded", json.dumps(excluded)]))

    def count_step_failure(self, job_id: str, rnd: int) -> int:
        """One more final step the aggregate function refused; returns how many so far."""
        return int(cast(int, self.redis.hincrby(keys.round_(job_id, rnd), "step_failures", 1)))
