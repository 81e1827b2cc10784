"""Jobs, parties and rounds: the gateway's state, all of it in Redis (and specs in S3).

Nothing here is cached in process memory, so any gateway replica can serve any
request and a restarted gateway loses nothing.  Rounds are served read-only:
their one writer is :mod:`gateway.round_state`; each party's update record is
written once, by :meth:`Registry.record_update`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from fedfaas import keys
from fedfaas.errors import BadRequest, Conflict, NotFound
from fedfaas.meta import text
from fedfaas.model_schema import ParameterSchema
from fedfaas.spec import JobSpec, PartyProfile, check_id
from fedfaas.store import ObjectStore
from gateway.auth import Principal, new_token, store_token
from gateway.schemas import Job, Round

# One atomic transition chooses a party's update for a round: an existing record
# wins over everything; otherwise the round must be open, and the record and its
# arrival event are written together, so no arrival is recorded unannounced.
_RECORD_UPDATE = """
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then return {0, existing} end
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return {-1, false} end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
return {1, false}
"""


@dataclass(frozen=True)
class Recorded:
    """Outcome of :meth:`Registry.record_update`."""

    created: bool
    round_open: bool
    existing: dict[str, Any] | None


@dataclass(frozen=True)
class RoundGate:
    """A round's state and deadline, and whether one party is expected in it."""

    state: str
    deadline_at: float
    expected: bool


@dataclass
class JobRecord:
    """A job as stored."""

    job_id: str
    tenant: str
    spec: JobSpec
    current_round: int
    created_at: float
    state: str

    def public(self, view: type[Job] = Job, **extra: Any) -> Job:
        """The API's view of the job (``view`` a :class:`Job` with ``extra`` fields)."""
        return view.model_validate({"job_id": self.job_id, "tenant": self.tenant, "spec": self.spec,
                                    "current_round": self.current_round, "created_at": self.created_at,
                                    "state": self.state, **extra})


@dataclass
class RoundRecord:
    """A round as stored."""

    job_id: str
    round: int
    state: str
    started_at: float
    deadline_at: float
    expected: list[str]
    quorum: int
    reason: str = ""
    closed_at: float | None = None
    model_key: str | None = None
    parties_included: list[str] | None = None
    """Whose updates the round's model fuses (once closed)."""
    excluded: dict[str, str] = field(default_factory=dict)
    """Updates the aggregation left out, with the reason."""
    aggregation_latency_s: float | None = None
    """From the last update's arrival to the model's availability (JIT paper 6.2)."""
    last_arrival_at: float | None = None

    def public(self, arrived: int | None = None) -> Round:
        """The API's view of the round (``arrived``: how many updates are stored, when known)."""
        out: dict[str, Any] = {
            "job_id": self.job_id,
            "round": self.round,
            "state": self.state,
            "started_at": self.started_at,
            "deadline_at": self.deadline_at,
            "expected": len(self.expected),
            "quorum": self.quorum,
            "reason": self.reason,
            "closed_at": self.closed_at,
            "model_available": self.model_key is not None,
        }
        if arrived is not None:
            out["arrived"] = arrived
        if self.parties_included is not None:
            out.update(parties_included=self.parties_included,
                       aggregation_latency_s=self.aggregation_latency_s,
                       last_arrival_at=self.last_arrival_at)
        if self.excluded:
            out["excluded"] = self.excluded
        return Round.model_validate(out)


def round_fields(record: RoundRecord) -> dict[Any, Any]:
    """The Redis hash fields of a round record (see :mod:`gateway.round_state`, their writer)."""
    def opt(value: float | None) -> str:
        return "" if value is None else repr(value)

    return {
        "state": record.state,
        "started_at": repr(record.started_at),
        "deadline_at": repr(record.deadline_at),
        "expected": json.dumps(record.expected),
        "quorum": str(record.quorum),
        "reason": record.reason,
        "closed_at": opt(record.closed_at),
        "model_key": record.model_key or "",
        "parties_included": "" if record.parties_included is None else json.dumps(record.parties_included),
        "excluded": json.dumps(record.excluded),
        "aggregation_latency_s": opt(record.aggregation_latency_s),
        "last_arrival_at": opt(record.last_arrival_at),
    }


class Registry:
    """Redis-backed registry of tenants, jobs, parties and rounds."""

    def __init__(self, client: redis.Redis, store: ObjectStore) -> None:
        self.redis = client
        self.store = store

    # --- tenants ---------------------------------------------------------------------
    def create_tenant(self, tenant_id: str) -> str:
        """Create a tenant; returns its admin token (shown once)."""
        check_id(tenant_id, "tenant")
        if not self.redis.hsetnx(keys.tenant(tenant_id), "created_at", str(time.time())):
            raise Conflict(f"tenant {tenant_id!r} already exists")
        token = new_token()
        store_token(self.redis, token, Principal(role="tenant-admin", tenant=tenant_id))
        return token

    def tenant_exists(self, tenant_id: str) -> bool:
        """True when the tenant was created (``default`` always exists)."""
        return tenant_id == "default" or bool(self.redis.exists(keys.tenant(tenant_id)))

    # --- jobs ------------------------------------------------------------------------
    def create_job(self, spec: JobSpec, tenant: str) -> tuple[JobRecord, str]:
        """Create a job; returns it and its enrollment token (shown once)."""
        if not self.tenant_exists(tenant):
            raise NotFound(f"tenant {tenant!r} does not exist")
        job_id = spec.job_id or f"job-{uuid.uuid4().hex[:12]}"
        now = time.time()
        fields: dict[Any, Any] = {
            "tenant": tenant,
            "spec": spec.model_dump_json(),
            "current_round": "0",
            "created_at": repr(now),
            "state": "created",
        }
        if not self.redis.hsetnx(keys.job(job_id), "tenant", tenant):
            raise Conflict(f"job {job_id!r} already exists")
        self.redis.hset(keys.job(job_id), mapping=fields)
        self.redis.sadd(keys.tenant_jobs(tenant), job_id)
        # The spec also lives in S3, the source of truth Redis can be rebuilt from.
        self.store.put(keys.s3_job_spec(tenant, job_id), spec.model_dump_json().encode(),
                       content_type="application/json")
        enroll = new_token()
        store_token(self.redis, enroll, Principal(role="enroll", tenant=tenant, job=job_id))
        return self.get_job(job_id), enroll

    def get_job(self, job_id: str) -> JobRecord:
        """Load a job; 404 when unknown."""
        check_id(job_id, "job id")
        raw = self.redis.hgetall(keys.job(job_id))
        if not raw or b"spec" not in raw:
            raise NotFound(f"job {job_id!r} does not exist")
        return JobRecord(
            job_id=job_id,
            tenant=text(raw[b"tenant"]),
            spec=JobSpec.model_validate_json(raw[b"spec"]),
            current_round=int(raw[b"current_round"]),
            created_at=float(raw[b"created_at"]),
            state=text(raw[b"state"]),
        )

    def job_for(self, principal: Principal, job_id: str, *, admin: bool = False) -> JobRecord:
        """Load a job the caller may see; 404 (not 403) hides other tenants' jobs."""
        job = self.get_job(job_id)
        if principal.is_admin_of(job.tenant):
            return job
        if not admin and principal.role in ("party", "enroll") and principal.job == job_id:
            return job
        raise NotFound(f"job {job_id!r} does not exist")

    def list_jobs(self, tenant: str) -> list[str]:
        """Job ids of a tenant, sorted."""
        return sorted(text(j) for j in cast(set[bytes], self.redis.smembers(keys.tenant_jobs(tenant))))

    # --- parties ---------------------------------------------------------------------
    def register_party(self, job: JobRecord, profile: PartyProfile) -> tuple[str, str]:
        """Register a party; returns its id and its secret token (shown once)."""
        party_id = profile.party_id or f"party-{uuid.uuid4().hex[:10]}"
        data = profile.model_dump()
        data["party_id"] = party_id
        data["registered_at"] = time.time()
        if not self.redis.hsetnx(keys.job_parties(job.job_id), party_id, json.dumps(data)):
            raise Conflict(f"party {party_id!r} is already registered in job {job.job_id!r}")
        token = new_token()
        store_token(self.redis, token, Principal(role="party", tenant=job.tenant, job=job.job_id,
                                                 party=party_id))
        return party_id, token

    def get_party(self, job_id: str, party_id: str) -> dict[str, Any]:
        """A party's profile; 404 when unknown."""
        raw = self.redis.hget(keys.job_parties(job_id), party_id)
        if raw is None:
            raise NotFound(f"party {party_id!r} is not registered in job {job_id!r}")
        data: dict[str, Any] = json.loads(raw)
        return data

    def update_party(self, job_id: str, party_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge measured values (e.g. bandwidth, times) into a party's profile."""
        profile = self.get_party(job_id, party_id)
        merged = PartyProfile.model_validate({**{k: v for k, v in profile.items()
                                                 if k in PartyProfile.model_fields}, **changes})
        data = {**profile, **merged.model_dump()}
        self.redis.hset(keys.job_parties(job_id), party_id, json.dumps(data))
        return data

    def list_parties(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Every party's profile."""
        raw = self.redis.hgetall(keys.job_parties(job_id))
        return {text(k): json.loads(v) for k, v in raw.items()}

    # --- rounds ----------------------------------------------------------------------
    def round_parties(self, job: JobRecord, selected: list[str] | None = None) -> list[str]:
        """The parties a new round expects: every registered one, or ``selected`` of them
        (client sampling); 409 before any registered, 400 for unknown or repeated ids."""
        registered = sorted(self.list_parties(job.job_id))
        if not registered:
            raise Conflict(f"job {job.job_id!r} has no registered parties yet")
        if selected is None:
            return registered
        unknown = sorted(set(selected) - set(registered))
        if unknown:
            raise BadRequest(f"parties {unknown} are not registered in job {job.job_id!r}")
        if not selected or len(set(selected)) != len(selected):
            raise BadRequest("'parties' must be a non-empty list of distinct party ids")
        return sorted(selected)

    def get_round(self, job_id: str, rnd: int) -> RoundRecord:
        """Load a round; 404 when it was never started."""
        return read_round(self.redis, job_id, rnd)

    def round_gate(self, job_id: str, rnd: int, party: str) -> RoundGate:
        """What an incoming update needs of its round, without loading the expected list:
        one round trip, however many parties the round has; 404 when never started."""
        if rnd < 1:
            raise BadRequest("round numbers start at 1")
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.round_(job_id, rnd), ["state", "deadline_at"])
            pipe.sismember(keys.round_expected(job_id, rnd), party)
            pipe.exists(keys.round_expected(job_id, rnd))
            (state, deadline), member, has_set = pipe.execute()
        if state is None:
            raise NotFound(f"round {rnd} of job {job_id!r} has not been started")
        if not has_set:  # a round opened before the set existed: its JSON list
            member = party in self.get_round(job_id, rnd).expected
        return RoundGate(state=text(state), deadline_at=float(deadline), expected=bool(member))

    def round_updates(self, job_id: str, rnd: int) -> dict[str, dict[str, Any]]:
        """Records of the updates stored for a round, by party."""
        raw = self.redis.hgetall(keys.round_updates(job_id, rnd))
        return {text(k): json.loads(v) for k, v in raw.items()}

    def update_digests(self, job_id: str, rnd: int, parties: list[str]) -> dict[str, str]:
        """The recorded digest of each of ``parties``' updates (one HMGET, however large the round)."""
        if not parties:
            return {}
        raw = cast(list[Any], self.redis.hmget(keys.round_updates(job_id, rnd), parties))
        missing = [p for p, r in zip(parties, raw, strict=True) if r is None]
        if missing:
            raise NotFound(f"no update recorded for {missing} in round {rnd} of job {job_id!r}")
        return {p: str(json.loads(r)["digest"]) for p, r in zip(parties, raw, strict=True)}

    def round_update(self, job_id: str, rnd: int, party: str) -> dict[str, Any] | None:
        """The record of one party's stored update for a round, or None."""
        raw = self.redis.hget(keys.round_updates(job_id, rnd), party)
        return None if raw is None else cast(dict[str, Any], json.loads(raw))

    def record_update(self, job: JobRecord, rnd: int, party: str, entry: dict[str, Any]) -> Recorded:
        """Make ``entry`` the party's update for ``rnd`` and announce its arrival, atomically.

        Exactly one record per (round, party) is ever written: when one exists it
        is returned unchanged; when the round is no longer open nothing is written.
        """
        event = {"job": job.job_id, "tenant": job.tenant, "round": rnd, "party": party,
                 "key": entry["key"], "size": entry["size"], "arrived_at": repr(entry["arrived_at"])}
        flat = [str(x) for pair in event.items() for x in pair]
        status, existing = cast(list[Any], self.redis.eval(
            _RECORD_UPDATE, 3, keys.round_(job.job_id, rnd), keys.round_updates(job.job_id, rnd),
            keys.arrivals_stream(), party, json.dumps(entry), keys.ARRIVALS_MAXLEN, *flat))
        return Recorded(created=int(status) == 1, round_open=int(status) != -1,
                        existing=json.loads(existing) if existing else None)

    def job_schema(self, job_id: str) -> ParameterSchema | None:
        """The parameter schema every update of the job must match, once known."""
        raw = self.redis.get(keys.job_schema(job_id))
        return None if raw is None else ParameterSchema.from_json(raw)

    def set_job_schema(self, job: JobRecord, schema: ParameterSchema) -> ParameterSchema:
        """Fix the job's parameter schema; returns the schema in force.

        Before round 1 starts the initial model may be replaced, and its schema
        with it; afterwards the first schema stays, and a different one is a 409.
        """
        key = keys.job_schema(job.job_id)
        if self.redis.set(key, schema.to_json(), nx=True):
            return schema
        current = self.job_schema(job.job_id)
        if current is None or current == schema:
            return schema
        if self.get_job(job.job_id).current_round == 0:
            self.redis.set(key, schema.to_json())
            return schema
        diffs = current.differences(schema)
        raise Conflict(f"job {job.job_id!r} already has a different model ({'; '.join(diffs[:5])}); "
                       "its tensors cannot change once round 1 started", code="schema_fixed")

    def round_update_count(self, job_id: str, rnd: int) -> int:
        """How many updates are stored for a round (without reading their records)."""
        return int(cast(int, self.redis.hlen(keys.round_updates(job_id, rnd))))

    def count_rejection(self, job_id: str, reason: str) -> None:
        """Count a refused update by reason (visible in the job's status)."""
        self.redis.hincrby(keys.rejections(job_id), reason, 1)

    def rejections(self, job_id: str) -> dict[str, int]:
        """Refused updates by reason."""
        return {text(k): int(v) for k, v in self.redis.hgetall(keys.rejections(job_id)).items()}


def _opt_float(raw: Any) -> float | None:
    return float(raw) if raw else None


def read_round(client: redis.Redis, job_id: str, rnd: int) -> RoundRecord:
    """Load a round record; 404 when it was never started."""
    if rnd < 1:
        raise BadRequest("round numbers start at 1")
    raw = cast(dict[bytes, bytes], client.hgetall(keys.round_(job_id, rnd)))
    if not raw:
        raise NotFound(f"round {rnd} of job {job_id!r} has not been started")
    return RoundRecord(
        job_id=job_id,
        round=rnd,
        state=text(raw[b"state"]),
        started_at=float(raw[b"started_at"]),
        deadline_at=float(raw[b"deadline_at"]),
        expected=json.loads(raw[b"expected"]),
        quorum=int(raw[b"quorum"]),
        reason=text(raw.get(b"reason")),
        closed_at=_opt_float(raw.get(b"closed_at")),
        model_key=text(raw.get(b"model_key")) or None,
        parties_included=json.loads(raw[b"parties_included"]) if raw.get(b"parties_included") else None,
        excluded=json.loads(raw.get(b"excluded") or b"{}"),
        aggregation_latency_s=_opt_float(raw.get(b"aggregation_latency_s")),
        last_arrival_at=_opt_float(raw.get(b"last_arrival_at")),
    )
