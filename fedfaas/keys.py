"""Names of every Redis key and S3 object, in one place, always scoped by tenant and job.

Components are validated DNS labels (see :func:`fedfaas.spec.check_id`), so a
name can never escape its tenant's prefix.  The JIT scheduler's keys live under
a namespace and the Cache Engine's under a prefix, each a parameter (default
:data:`JIT_NAMESPACE`, :data:`CE_PREFIX`) so that tests and several deployments
can share one Redis.  ``tests/core/test_keys_one_module.py`` fails when a key is
built anywhere else.
"""

from __future__ import annotations

PREFIX = "ff"

# --- tenancy --------------------------------------------------------------------------


def token(token_hash: str) -> str:
    """Redis string: token hash -> JSON principal."""
    return f"{PREFIX}:token:{token_hash}"


def tenant(tenant_id: str) -> str:
    """Redis hash: one tenant."""
    return f"{PREFIX}:tenant:{tenant_id}"


def tenant_jobs(tenant_id: str) -> str:
    """Redis set: job ids of a tenant."""
    return f"{PREFIX}:tenant:{tenant_id}:jobs"


# --- jobs and rounds ------------------------------------------------------------------


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


def round_lease(job_id: str, rnd: int) -> str:
    """Redis string with a TTL: owner of the round's work lease (one replica works on it)."""
    return f"{round_(job_id, rnd)}:lock"


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


# --- JIT scheduler (JIT paper 5.5); ``task`` is a task key, ``job/round`` ----------------

JIT_NAMESPACE = f"{PREFIX}:jit"
"""Namespace of a deployment's JIT scheduler state."""


def jit_task(ns: str, task: str) -> str:
    """Redis string: JSON record of one aggregation task (``jit_task(ns, "")`` is the prefix)."""
    return f"{ns}:task:{task}"


def jit_arrival_times(ns: str, task: str) -> str:
    """Redis list: a task's arrival times (the arrival log)."""
    return f"{ns}:times:{task}"


def jit_update_ids(ns: str, task: str) -> str:
    """Redis list: a task's update ids, parallel to :func:`jit_arrival_times`."""
    return f"{ns}:ids:{task}"


def jit_active(ns: str) -> str:
    """Redis zset: task -> priority, of open and finalising tasks."""
    return f"{ns}:active"


def jit_timers(ns: str) -> str:
    """Redis zset: task -> time its timer fires."""
    return f"{ns}:timers"


def jit_inflight(ns: str) -> str:
    """Redis hash: decision id -> JSON decision (claimed work)."""
    return f"{ns}:inflight"


def jit_leases(ns: str) -> str:
    """Redis zset: decision id -> lease expiry."""
    return f"{ns}:leases"


def jit_running(ns: str) -> str:
    """Redis counter: aggregation invocations running."""
    return f"{ns}:running"


def jit_decision_seq(ns: str) -> str:
    """Redis counter: the last decision id handed out."""
    return f"{ns}:seq"


def jit_t_pair(ns: str, model_bytes: int) -> str:
    """Redis string: calibrated ``t_pair`` seconds for one model size (paper 5.4)."""
    return f"{ns}:t_pair:{model_bytes}"


def jit_learner(ns: str, job_id: str) -> str:
    """Redis string: JSON of a job's arrival learner."""
    return f"{ns}:learner:{job_id}"


def jit_estimate(ns: str, task: str) -> str:
    """Redis string: JSON of a round's estimate as recorded at its start."""
    return f"{ns}:estimate:{task}"


def jit_party_arrivals(ns: str, task: str) -> str:
    """Redis hash: party id -> time its update of the round arrived."""
    return f"{ns}:arrivals:{task}"


def jit_report(ns: str, task: str) -> str:
    """Redis string: JSON report of a finished round, predicted against observed."""
    return f"{ns}:report:{task}"


def jit_eager_steps(ns: str, model_bytes: int) -> str:
    """Redis list: latest measured single-update step seconds for one model size."""
    return f"{ns}:eager_step:{int(model_bytes)}"


def jit_warm_ping(ns: str) -> str:
    """Redis string with a TTL: set while a warm-hold ping of ``aggregate`` is recent."""
    return f"{ns}:warm_ping"


def jit_warm_ping_at(ns: str) -> str:
    """Redis string: time of the last warm-hold ping."""
    return f"{ns}:warm_ping_at"


def jit_launch(ns: str, job_id: str, rnd: int) -> str:
    """Redis string: JSON ``[time, updates]`` of a round's first aggregation launch."""
    return f"{ns}:launch:{job_id}:{rnd}"


# --- FLStore cache (FLStore 4.2) and tracked requests ---------------------------------

CE_PREFIX = f"{PREFIX}:ce"
"""Prefix of a deployment's Cache Engine keys."""


def ce_function(prefix: str, function_id: str) -> str:
    """Redis hash: data key -> bytes held by one cache function."""
    return f"{prefix}:fn:{function_id}"


def ce_rank(prefix: str, order: str) -> str:
    """Redis zset: data key -> last access (lru), access count (lfu) or arrival (fifo)."""
    return f"{prefix}:rank:{order}"


def ce_clock(prefix: str) -> str:
    """Redis counter: the logical clock of the ranks."""
    return f"{prefix}:clock"


def ce_stats(prefix: str, tenant_id: str) -> str:
    """Redis hash: ``<policy>:hits|misses`` -> count, of one tenant."""
    return f"{prefix}:t:{tenant_id}:stats"


def ce_stats_tenant(prefix: str, name: str) -> str | None:
    """The tenant of a :func:`ce_stats` key (None: ``name`` is not one)."""
    head, _, tail = ce_stats(prefix, "*").rpartition("*")
    if len(name) <= len(head) + len(tail) or not name.startswith(head) or not name.endswith(tail):
        return None
    return name[len(head):-len(tail)]


def _ce_job(prefix: str, tenant_id: str, job_id: str) -> str:
    return f"{prefix}:t:{tenant_id}:j:{job_id}"


def ce_job_pattern(prefix: str, tenant_id: str, job_id: str) -> str:
    """SCAN pattern of every Cache Engine key of one job."""
    return f"{_ce_job(prefix, tenant_id, job_id)}:*"


def ce_locations(prefix: str, tenant_id: str, job_id: str) -> str:
    """Redis hash: data key -> ``primary,replica,...`` (the Cache Engine table)."""
    return f"{_ce_job(prefix, tenant_id, job_id)}:loc"


def ce_version(prefix: str, tenant_id: str, job_id: str) -> str:
    """Redis counter: bumped by every change to the job (optimistic locking)."""
    return f"{_ce_job(prefix, tenant_id, job_id)}:ver"


def ce_policy_state(prefix: str, tenant_id: str, job_id: str) -> str:
    """Redis hash: policy -> JSON policy state."""
    return f"{_ce_job(prefix, tenant_id, job_id)}:state"


def ce_workloads(prefix: str, tenant_id: str, job_id: str) -> str:
    """Redis hash: workload -> policy."""
    return f"{_ce_job(prefix, tenant_id, job_id)}:workloads"


def ce_sizes(prefix: str, tenant_id: str, job_id: str) -> str:
    """Redis hash: data key -> bytes (the catalog: everything ingested)."""
    return f"{_ce_job(prefix, tenant_id, job_id)}:size"


def ce_latest(prefix: str, tenant_id: str, job_id: str) -> str:
    """Redis hash: data kind -> latest round."""
    return f"{_ce_job(prefix, tenant_id, job_id)}:latest"


def ce_round_keys(prefix: str, tenant_id: str, job_id: str, rnd: int, kind: str) -> str:
    """Redis set: data keys of one kind in one round."""
    return f"{_ce_job(prefix, tenant_id, job_id)}:r:{rnd}:{kind}"


def ce_client_rounds(prefix: str, tenant_id: str, job_id: str, client: str, kind: str) -> str:
    """Redis zset: rounds of one client's data of one kind."""
    return f"{_ce_job(prefix, tenant_id, job_id)}:c:{client}:{kind}"


def tracked_request(request_id: str) -> str:
    """Redis hash: one FLStore request tracked by the Request Tracker."""
    return f"{PREFIX}:req:{request_id}"


# --- rate limits ----------------------------------------------------------------------


def rate_limit(subject: str, window: int) -> str:
    """Redis counter: requests of one party or token in one rate-limit window."""
    return f"{PREFIX}:ratelimit:{subject}:{window}"


def rate_subject_party(job_id: str, party: str) -> str:
    """The :func:`rate_limit` subject of one party of one job."""
    return f"party:{job_id}:{party}"


def rate_subject_token(token_hash: str) -> str:
    """The :func:`rate_limit` subject of one tenant-admin token."""
    return f"token:{token_hash}"


# --- S3 objects -----------------------------------------------------------------------

_S3_TENANTS = "tenants/"


def s3_is_tenant_object(name: str) -> bool:
    """Whether ``name`` is an object under some tenant's prefix (and climbs no ``..``)."""
    return name.startswith(_S3_TENANTS) and ".." not in name


def s3_job(tenant_id: str, job_id: str) -> str:
    """Prefix of every object of a job."""
    return f"{_S3_TENANTS}{tenant_id}/jobs/{job_id}"


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


def s3_server_state(tenant_id: str, job_id: str, rnd: int) -> str:
    """The server optimiser's state after round ``rnd``."""
    return f"{s3_job(tenant_id, job_id)}/state/{rnd:06d}.ffu"


def s3_validation(tenant_id: str, job_id: str) -> str:
    """A job's validation set (arrays ``x_val``, ``y_val``)."""
    return f"{s3_job(tenant_id, job_id)}/validation.ffu"


def s3_result(tenant_id: str, job_id: str, request_id: str) -> str:
    """The tensors an FLStore request returned, too large for its JSON answer."""
    return f"{s3_job(tenant_id, job_id)}/results/{request_id}.ffu"


def s3_job_spec(tenant_id: str, job_id: str) -> str:
    """The job spec, so Redis can be rebuilt from S3."""
    return f"{s3_job(tenant_id, job_id)}/job.json"


# --- benchmarks (bench/, never production) ---------------------------------------------


def bench_cache_agg_copy(s3_key: str) -> str:
    """Redis string: the Cache-Agg baseline's copy of one S3 object's body."""
    return f"bench:cache-agg:{s3_key}"


def s3_bench_object(bench: str, run: str, name: str) -> str:
    """A scratch object a benchmark writes straight to S3, outside every tenant."""
    return f"bench/{bench}/{run}/{name}.ffu"
