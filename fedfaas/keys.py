"""Names of every Redis key and S3 object, in one place, always scoped by tenant and job.

Components are validated DNS labels (see :func:`fedfaas.spec.check_id`), so a
name can never escape its tenant's prefix.
"""

from __future__ import annotations

PREFIX = "ff"


def token(token_hash: str) -> str:
    """Redis string: token hash -> JSON principal."""
    return f"{PREFIX}:token:{token_hash}"


def tenant(tenant_id: str) -> str:
    """Redis hash: one tenant."""
    return f"{PREFIX}:tenant:{tenant_id}"


def tenant_jobs(tenant_id: str) -> str:
    """Redis set: job ids of a tenant."""
    return f"{PREFIX}:tenant:{tenant_id}:jobs"


def job(job_id: str) -> str:
    """Redis hash: job spec, tenant, current round, state."""
    return f"{PREFIX}:job:{job_id}"


def job_parties(job_id: str) -> str:
    """Redis hash: party id -> JSON profile."""
    return f"{PREFIX}:job:{job_id}:parties"


def round_(job_id: str, rnd: int) -> str:
    """Redis hash: one round's state."""
    return f"{PREFIX}:job:{job_id}:round:{rnd}"


def round_expected(job_id: str, rnd: int) -> str:
    """Redis set: the parties expected in a round (membership checked on every update)."""
    return f"{PREFIX}:job:{job_id}:round:{rnd}:expected"


def round_updates(job_id: str, rnd: int) -> str:
    """Redis hash: party id -> JSON record of its stored update."""
    return f"{PREFIX}:job:{job_id}:round:{rnd}:updates"


def job_schema(job_id: str) -> str:
    """Redis string: JSON parameter schema (names, dtypes, shapes) every update must match."""
    return f"{PREFIX}:job:{job_id}:schema"


ARRIVALS_MAXLEN = 1_000_000
"""Approximate length the arrivals stream is trimmed to."""


def arrivals_stream() -> str:
    """Redis stream: every stored update, for the scheduler and the Cache Engine."""
    return f"{PREFIX}:arrivals"


def active_rounds() -> str:
    """Redis set: :func:`active_round` of every round not yet closed or failed."""
    return f"{PREFIX}:active_rounds"


def active_round(job_id: str, rnd: int) -> str:
    """A round's member of :func:`active_rounds`."""
    return f"{job_id}:{rnd}"


def rejections(job_id: str) -> str:
    """Redis hash: rejection reason -> count."""
    return f"{PREFIX}:job:{job_id}:rejections"


def rate_limit(subject: str, window: int) -> str:
    """Redis counter: requests of one party or token in one rate-limit window."""
    return f"{PREFIX}:ratelimit:{subject}:{window}"


# --- S3 object keys -------------------------------------------------------------------


def s3_job(tenant_id: str, job_id: str) -> str:
    """Prefix of every object of a job."""
    return f"tenants/{tenant_id}/jobs/{job_id}"


def s3_update(tenant_id: str, job_id: str, rnd: int, party: str, digest: str) -> str:
    """One party's update for one round, named by its content (sha256 hex).

    Every upload attempt writes its own object, so a refused body can never
    overwrite the accepted one; which object is the party's update is decided
    by one atomic transition in Redis (see :mod:`gateway.ingest`).
    """
    if len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise ValueError(f"update digest must be 64 lowercase hex digits, got {digest!r}")
    return f"{s3_party_updates(tenant_id, job_id, rnd, party)}{digest}.ffu"


def s3_round_updates(tenant_id: str, job_id: str, rnd: int) -> str:
    """Prefix of every update object of one round."""
    return f"{s3_job(tenant_id, job_id)}/rounds/{rnd:06d}/updates/"


def s3_party_updates(tenant_id: str, job_id: str, rnd: int, party: str) -> str:
    """Prefix of one party's update objects in one round (one once accepted, none if refused)."""
    return f"{s3_round_updates(tenant_id, job_id, rnd)}{party}/"


def s3_model(tenant_id: str, job_id: str, rnd: int) -> str:
    """The global model produced by round ``rnd`` (round 0: the initial model)."""
    return f"{s3_job(tenant_id, job_id)}/models/{rnd:06d}.ffu"


def s3_partial(tenant_id: str, job_id: str, rnd: int, name: str) -> str:
    """A checkpointed partial aggregate of a round."""
    return f"{s3_job(tenant_id, job_id)}/rounds/{rnd:06d}/partials/{name}.ffu"


def s3_job_spec(tenant_id: str, job_id: str) -> str:
    """The job spec, so Redis can be rebuilt from S3."""
    return f"{s3_job(tenant_id, job_id)}/job.json"
