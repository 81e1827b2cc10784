"""Durable ingest of one party's model update (FLStore 4.2 step 1, JIT 5.5's message queue).

The order is what makes an acknowledged update impossible to lose or alter:

1. refuse early what cannot be accepted (round not open, ``t_wait`` passed);
2. validate the body's structure, metadata and tensors against the job's
   parameter schema without copying tensor bytes;
3. write the body to S3 under a name derived from its content (sha256), and
   wait for S3's acknowledgement: attempts with different bodies write
   different objects, so none can overwrite another;
4. choose the party's update with one atomic transition in Redis
   (:meth:`Registry.record_update`): the first record wins for good and its
   arrival is announced with it;
5. only then answer 2xx.  A losing attempt removes its own object.

A failure in 3 or 4 answers 503 with ``Retry-After``; re-sending the same bytes
is idempotent (same digest -> 200 "duplicate"), a different body for a round
the party already delivered is a 409 and leaves nothing behind.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedfaas import codec, keys
from fedfaas.errors import BadRequest, Conflict, FedfaasError, Unavailable
from fedfaas.model_schema import ParameterSchema
from fedfaas.spec import json_type
from fedfaas.store import ObjectStore, digest
from gateway import metrics
from gateway.registry import JobRecord, Registry

log = logging.getLogger("fedfaas.ingest")


@dataclass(frozen=True)
class IngestResult:
    """What the party is told."""

    created: bool
    record: dict[str, Any]


def _meta_must_match(meta: dict[str, Any], field: str, expected: Any) -> None:
    if field not in meta:
        return
    value = meta[field]
    # ``True == 1`` in Python: a bool is never a round number.
    if type(value) is not type(expected):
        raise BadRequest(f"update metadata {field!r} must be {json_type(expected)}, got {json_type(value)}")
    if value != expected:
        raise BadRequest(f"update metadata says {field}={value!r} but the request is for {expected!r}")


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
        if record.state == "opening":
            raise Unavailable(f"round {rnd} of job {job.job_id!r} is being opened; retry in a moment")
        if record.state != "open" or now > record.deadline_at:
            existing = self.registry.round_update(job.job_id, rnd, party)
            if existing is not None and existing["digest"] == digest(body):
                return IngestResult(False, {**existing, "duplicate": True})
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
        schema = self.registry.job_schema(job.job_id)
        if schema is not None:
            try:
                schema.require(ParameterSchema.of_tensors(update.tensors), f"the update of party {party!r}")
            except BadRequest as exc:
                raise self._reject(job.job_id, "schema_mismatch", exc) from None
        body_digest = digest(body)
        existing = self.registry.round_update(job.job_id, rnd, party)
        if existing is not None:
            return self._already(existing, body_digest, rnd)
        key = keys.s3_update(job.tenant, job.job_id, rnd, party, body_digest)
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
        # Should this fail, whether the record was written is unknown: the object stays,
        # since it may be the acknowledged one, and a retry with the same bytes settles it.
        outcome = self.registry.record_update(job, rnd, party, entry)
        if outcome.created:
            metrics.update_stored(len(body))
            return IngestResult(True, entry)
        if outcome.existing is None or outcome.existing["digest"] != body_digest:
            # This attempt lost: no record names its object, and none ever will.
            self._discard(key)
        if not outcome.round_open:
            raise self._reject(job.job_id, "round_closed", Conflict(
                f"round {rnd} of job {job.job_id!r} closed while the update was being stored",
                code="round_closed"))
        return self._already(outcome.existing, body_digest, rnd)

    def _discard(self, key: str) -> None:
        try:
            self.store.delete(key)
        except FedfaasError as exc:
            log.warning("cannot remove the refused upload %s: %s", key, exc.message)

    @staticmethod
    def _already(data: dict[str, Any] | None, body_digest: str, rnd: int) -> IngestResult:
        if data is None:
            raise Unavailable("update table changed while storing; retry")
        if data["digest"] == body_digest:
            return IngestResult(False, {**data, "duplicate": True})
        raise Conflict(f"a different update from party {data['party']!r} for round {rnd} was already "
                       "accepted; updates cannot be replaced", code="update_exists")
