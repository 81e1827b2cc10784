"""Durable ingest of one party's model update (FLStore 4.2 step 1, JIT 5.5's message queue).

The order is what makes an acknowledged update impossible to lose:

1. refuse early what cannot be accepted (round not open, ``t_wait`` passed);
2. validate the body's structure and metadata without copying tensor bytes;
3. take a short per-(round, party) lease in Redis so two different bodies from
   the same party cannot race;
4. write the body to S3 and wait for S3's acknowledgement;
5. record the arrival in Redis (round's update table + arrivals stream);
6. only then answer 2xx.

A failure in 4 or 5 answers 503 with ``Retry-After``; re-sending the same bytes
is idempotent (same digest -> 200 "duplicate"), a different body for a round
the party already delivered is a 409.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedfaas import codec, keys
from fedfaas.errors import BadRequest, Conflict, FedfaasError, Unavailable
from fedfaas.meta import text
from fedfaas.store import ObjectStore, digest
from gateway import metrics
from gateway.registry import JobRecord, Registry

CLAIM_TTL_MS = 120_000
# Record an arrival only while the round is open, atomically with the state
# check, so an update can never slip in after the round began closing.
_RECORD_IF_OPEN = """
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return -1 end
return redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
"""
ARRIVALS_MAXLEN = 1_000_000


@dataclass(frozen=True)
class IngestResult:
    """What the party is told."""

    created: bool
    record: dict[str, Any]


def _meta_must_match(meta: dict[str, Any], field: str, expected: Any) -> None:
    if field in meta and meta[field] != expected:
        raise BadRequest(f"update metadata says {field}={meta[field]!r} but the request is for {expected!r}")


def _num_examples(meta: dict[str, Any]) -> int:
    value = meta.get("num_examples", 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 10**12:
        raise BadRequest("metadata 'num_examples' must be a non-negative integer")
    return value


def _optional_float(meta: dict[str, Any], name: str) -> float | None:
    value = meta.get(name)
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value) or value < 0:
        raise BadRequest(f"metadata {name!r} must be a non-negative number")
    return float(value)


class Ingest:
    """Validates and durably stores updates."""

    def __init__(self, registry: Registry, store: ObjectStore, max_body_bytes: int) -> None:
        self.registry = registry
        self.store = store
        self.limits = codec.Limits(max_total_bytes=max_body_bytes)

    def _reject(self, job_id: str, reason: str, error: FedfaasError) -> FedfaasError:
        self.registry.count_rejection(job_id, reason)
        metrics.update_rejected(reason)
        return error

    def accept(self, job: JobRecord, rnd: int, party: str, body: bytes, now: float | None = None
               ) -> IngestResult:
        """Store ``body`` as ``party``'s update for round ``rnd``; see the module docstring."""
        now = time.time() if now is None else now
        record = self.registry.round_gate(job.job_id, rnd, party)
        if not record.expected:
            raise self._reject(job.job_id, "not_in_round",
                               Conflict(f"party {party!r} is not expected in round {rnd} "
                                        "(not selected, or registered after the round started)"))
        if record.state != "open" or now > record.deadline_at:
            existing = self.registry.redis.hget(keys.round_updates(job.job_id, rnd), party)
            if existing is not None and json.loads(existing)["digest"] == digest(body):
                return IngestResult(False, {**json.loads(existing), "duplicate": True})
            why = "t_wait passed" if record.state == "open" else f"round is {record.state}"
            raise self._reject(job.job_id, "round_closed",
                               Conflict(f"round {rnd} of job {job.job_id!r} no longer takes updates ({why})",
                                        code="round_closed"))
        try:
            update = codec.decode(body, self.limits)
        except FedfaasError as exc:
            raise self._reject(job.job_id, "bad_body", exc) from None
        meta = update.meta
        try:
            _meta_must_match(meta, "job", job.job_id)
            _meta_must_match(meta, "round", rnd)
            _meta_must_match(meta, "party", party)
            num_examples = _num_examples(meta)
            train_time = _optional_float(meta, "train_time_s")
        except BadRequest as exc:
            raise self._reject(job.job_id, "bad_metadata", exc) from None
        nonfinite = codec.count_nonfinite(update.tensors)
        if nonfinite and job.spec.nonfinite == "reject":
            error = BadRequest(f"update holds {nonfinite} NaN or infinite values", code="nonfinite")
            raise self._reject(job.job_id, "nonfinite", error)
        body_digest = digest(body)
        claim = keys.update_claim(job.job_id, rnd, party)
        table = keys.round_updates(job.job_id, rnd)
        existing = self.registry.redis.hget(table, party)
        if existing is not None:
            return self._already(existing, body_digest, rnd)
        if not self.registry.redis.set(claim, body_digest, nx=True, px=CLAIM_TTL_MS):
            holder = self.registry.redis.get(claim)
            if holder is not None and text(holder) != body_digest:
                raise Conflict(f"another update from party {party!r} for round {rnd} is being stored")
        try:
            key = keys.s3_update(job.tenant, job.job_id, rnd, party)
            self.store.put(key, body, metadata={"digest": body_digest}, sha256=body_digest)
            entry = {
                "party": party,
                "round": rnd,
                "key": key,
                "digest": body_digest,
                "size": len(body),
                "num_examples": num_examples,
                "train_time_s": train_time,
                "arrived_at": now,
                "nonfinite": nonfinite,
            }
            recorded = self.registry.redis.eval(
                _RECORD_IF_OPEN, 2, keys.round_(job.job_id, rnd), table, party, json.dumps(entry))
            if int(recorded) == -1:
                raise self._reject(job.job_id, "round_closed", Conflict(
                    f"round {rnd} of job {job.job_id!r} closed while the update was being stored",
                    code="round_closed"))
            if int(recorded) == 0:
                return self._already(self.registry.redis.hget(table, party), body_digest, rnd)
            self.registry.redis.xadd(
                keys.arrivals_stream(),
                {"job": job.job_id, "tenant": job.tenant, "round": rnd, "party": party,
                 "key": key, "arrived_at": repr(now)},
                maxlen=ARRIVALS_MAXLEN, approximate=True,
            )
        finally:
            self.registry.redis.delete(claim)
        metrics.update_stored(len(body))
        return IngestResult(True, entry)

    @staticmethod
    def _already(existing: Any, body_digest: str, rnd: int) -> IngestResult:
        if existing is None:
            raise Unavailable("update table changed while storing; retry")
        data = json.loads(existing)
        if data["digest"] == body_digest:
            return IngestResult(False, {**data, "duplicate": True})
        raise Conflict(f"a different update from party {data['party']!r} for round {rnd} was already "
                       "accepted; updates cannot be replaced", code="update_exists")
