"""FLStore's Cache Engine: which cache function holds which FL data (FLStore, sections 4.2-4.5).

The engine runs inside the stateless gateway and keeps all of its state in
Redis, so several gateway replicas can share it.  It records every ingested
key in a catalog, keeps data hot in cache-function memory per the caching
policies of the job's workloads (Table 1), tracks where each copy lives
(primary first, then replicas), accounts function memory against a budget, and
tells its caller which copies to load into or drop from which function.  It
never moves data itself: the caller (the gateway and the Request Tracker)
fetches from the persistent store and talks to the functions.

Every mutating call is one optimistic Redis transaction (``WATCH`` the job and
every cache function, decide, ``MULTI``/``EXEC``), retried when another
gateway replica changed the same data in between.
"""

from __future__ import annotations

import functools
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import redis

from cache_engine import core
from cache_engine.keys import DataKey, check_id
from cache_engine.layout import RedisCatalog, text
from cache_engine.registry import check_policy_name, make_policies, policy_for
from cache_engine.results import Fetch, IngestResult, LostResult, RequestPlan
from cache_engine.table import FunctionTable, Move
from fedfaas.errors import BadRequest, Unavailable
from fedfaas.keys import (
    CE_PREFIX,
    ce_clock,
    ce_function,
    ce_job_pattern,
    ce_locations,
    ce_policy_state,
    ce_stats,
    ce_version,
    ce_workloads,
)

T = TypeVar("T")
P = ParamSpec("P")
Write = Callable[[Any], None]
Body = Callable[[Any, FunctionTable, RedisCatalog], tuple[T, Write]]


def _redis_errors(method: Callable[P, T]) -> Callable[P, T]:
    """Translate Redis failures into :class:`Unavailable` (503, safe to retry)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise Unavailable(f"Redis is unavailable to the Cache Engine: {exc}") from exc

    return wrapper


class CacheEngine:
    """The Redis-backed Cache Engine.

    Parameters
    ----------
    redis
        Client of the shared Redis (with socket timeouts).
    functions
        Ids of the cache functions (distinct OpenFaaS function names).
    budget_bytes
        Memory budget per function, one value for all or one per function.
    replicas
        Copies of each cached item beyond the primary, each on another function.
    overrides
        Deployment-wide workload -> policy overrides of Table 1.
    policy_params
        Constructor parameters per policy name, e.g. ``{"P4": {"k": 5}}``.
    default_workloads
        Workloads active for every job before it registers or issues any.
    """

    def __init__(
        self, redis: redis.Redis, functions: Sequence[str], *, budget_bytes: int | Mapping[str, int],
        replicas: int = 1, prefix: str = CE_PREFIX, overrides: Mapping[str, str] | None = None,
        policy_params: Mapping[str, Mapping[str, Any]] | None = None,
        default_workloads: Iterable[str] = (), max_retries: int = 100,
    ) -> None:
        self.functions = [check_id(f, "function id") for f in functions]
        if not self.functions or len(set(self.functions)) != len(self.functions):
            raise BadRequest("cache functions must be a non-empty list of distinct ids")
        if isinstance(budget_bytes, Mapping):
            self.budgets = {f: int(budget_bytes[f]) for f in self.functions}
        else:
            self.budgets = dict.fromkeys(self.functions, int(budget_bytes))
        if min(self.budgets.values()) < 1:
            raise BadRequest("every function budget must be a positive number of bytes")
        if not 0 <= replicas < len(self.functions):
            raise BadRequest(f"replicas must be in [0, {len(self.functions) - 1}]")
        self.redis = redis
        self.replicas = replicas
        self.prefix = prefix
        self.overrides = dict(overrides or {})
        for name in self.overrides.values():
            check_policy_name(name)
        self.policies = make_policies(policy_params)
        self.default_workloads = {w: policy_for(w, self.overrides) for w in default_workloads}
        self.max_retries = max_retries

    # --- transactions ---------------------------------------------------------------

    def _transact(
        self, scopes: Iterable[tuple[str, str]], body: Body[T],
        pending: tuple[DataKey, int] | None = None,
    ) -> tuple[T, FunctionTable]:
        """Run ``body`` under WATCH on ``scopes`` and every function; commit its writes.

        Raises
        ------
        Unavailable
            If Redis fails or the data stays contended for ``max_retries`` attempts.
        """
        scopes = list(scopes)
        for attempt in range(self.max_retries):
            try:
                with self.redis.pipeline(transaction=True) as pipe:
                    if scopes:
                        pipe.watch(*(ce_version(self.prefix, t, j) for t, j in scopes))
                    clock = int(self.redis.incr(ce_clock(self.prefix)))
                    catalog = RedisCatalog(pipe, self.prefix, pending)
                    table = FunctionTable(pipe, self.prefix, self.functions, self.budgets,
                                          self.replicas, catalog, clock)
                    result, write = body(pipe, table, catalog)
                    pipe.multi()
                    catalog.write(pipe)
                    write(pipe)
                    table.flush(pipe, set(scopes))
                    pipe.execute()
                    return result, table
            except redis.WatchError:
                time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
        raise Unavailable("the Cache Engine table is too contended; retry later")

    def _job(self, pipe: Any, tenant: str, job: str) -> tuple[core.JobPolicies, dict[str, str]]:
        """The job's active policies (from its workloads) and their states."""
        raw = pipe.hgetall(ce_workloads(self.prefix, tenant, job))
        workloads = dict(self.default_workloads)
        workloads.update({text(w): text(p) for w, p in raw.items()})
        active = {p: self.policies[p] for p in sorted(set(workloads.values()))}
        states = {text(k): json.loads(text(v)) for k, v in
                  pipe.hgetall(ce_policy_state(self.prefix, tenant, job)).items()}
        return core.JobPolicies(active, states), workloads

    def _save_states(self, pipe: Any, tenant: str, job: str, jp: core.JobPolicies) -> None:
        if jp.states:
            pipe.hset(ce_policy_state(self.prefix, tenant, job),
                      mapping={k: json.dumps(v, sort_keys=True) for k, v in jp.states.items()})

    # --- public API -----------------------------------------------------------------

    @_redis_errors
    def register_workloads(
        self, tenant: str, job: str, workloads: Iterable[str],
        overrides: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Declare the non-training workloads of a job (from its spec); return workload -> policy.

        Their policies decide what is hot from the first ingest on.  ``overrides``
        maps workloads of this job to other policies.
        """
        check_id(tenant, "tenant")
        check_id(job, "job")
        mapping = {w: policy_for(w, overrides, self.overrides) for w in workloads}
        if mapping:
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(ce_workloads(self.prefix, tenant, job),
                          mapping={w: p for w, p in mapping.items()})
                pipe.incr(ce_version(self.prefix, tenant, job))
                pipe.execute()
        return mapping

    @_redis_errors
    def ingest(self, key: DataKey, size_bytes: int) -> IngestResult:
        """Record newly stored data and cache it if a policy of its job calls it hot.

        Call after the data is durable in the persistent store; then load it into
        ``result.functions`` and drop ``result.evictions`` from theirs.
        """
        if isinstance(size_bytes, bool) or not isinstance(size_bytes, int) or size_bytes < 1:
            raise BadRequest(f"size_bytes must be a positive integer; got {size_bytes!r}")

        def body(pipe: Any, table: FunctionTable, catalog: RedisCatalog) -> tuple[None, Write]:
            jp, _ = self._job(pipe, key.tenant, key.job)
            core.ingest(jp, catalog, table, key)
            return None, lambda p: self._save_states(p, key.tenant, key.job, jp)

        _, table = self._transact([key.scope], body, pending=(key, size_bytes))
        _, dropped = table.moves()
        return IngestResult(key, tuple(table.holders(key)), tuple(dropped))

    @_redis_errors
    def lookup(self, key: DataKey) -> list[str]:
        """Cache functions holding ``key``, primary first; empty if it is only in the store."""
        raw = self.redis.hget(ce_locations(self.prefix, key.tenant, key.job), key.to_str())
        return [f for f in text(raw).split(",") if f] if raw else []

    @_redis_errors
    def plan_request(self, workload: str, keys: Sequence[DataKey]) -> RequestPlan:
        """Plan a non-training request of ``workload`` for ``keys`` (one tenant and job).

        Counts a hit for the workload's policy when every needed key is resident,
        and records the placements the caller must make for misses and prefetches.
        """
        keys = list(keys)
        if not keys or len({k.scope for k in keys}) != 1:
            raise BadRequest("a request needs data keys of exactly one tenant and job")
        tenant, job = keys[0].scope
        box: dict[str, Any] = {}

        def body(
            pipe: Any, table: FunctionTable, catalog: RedisCatalog
        ) -> tuple[core.RequestOutcome, Write]:
            jp, workloads = self._job(pipe, tenant, job)
            policy = workloads.get(workload) or policy_for(workload, self.overrides)
            jp.active.setdefault(policy, self.policies[policy])
            outcome = core.request(jp, catalog, table, policy, workload, keys)
            box["policy"] = policy

            def write(p: Any) -> None:
                if workload not in workloads:
                    p.hset(ce_workloads(self.prefix, tenant, job), workload, policy)
                self._save_states(p, tenant, job, jp)
                outcome_name = "hits" if outcome.hit else "misses"
                p.hincrby(ce_stats(self.prefix, tenant), f"{policy}:{outcome_name}")

            return outcome, write

        outcome, table = self._transact([(tenant, job)], body)
        placed, dropped = table.moves()
        targets: dict[DataKey, list[str]] = {}
        for move in placed:
            targets.setdefault(move.key, []).append(move.function_id)
        missed = set(outcome.missed)
        return RequestPlan(
            workload=workload, policy=box["policy"], hit=outcome.hit,
            resident={k: tuple(table.holders(k)) for k in outcome.needed if k not in missed},
            misses=tuple(Fetch(k, tuple(targets[k])) for k in outcome.missed if k in targets),
            prefetch=tuple(Fetch(k, tuple(targets[k])) for k in outcome.prefetched
                           if k in targets),
            unplaced=outcome.unplaced, evictions=tuple(dropped),
        )

    @_redis_errors
    def release(self, key: DataKey, function_id: str) -> None:
        """Forget ``function_id``'s copy of ``key`` (its load failed or the function lost it)."""
        check_id(function_id, "function id")

        def body(pipe: Any, table: FunctionTable, catalog: RedisCatalog) -> tuple[None, Write]:
            table.drop_copy(key, function_id)
            return None, lambda p: None

        self._transact([key.scope], body)

    @_redis_errors
    def mark_function_lost(self, function_id: str) -> LostResult:
        """A reclaimed function came back empty: drop it from every table entry.

        Requests then fall back to the replicas or to the persistent store, and the
        function is refilled by later placements (see :meth:`restore`).
        """
        check_id(function_id, "function id")
        held = list(self.redis.hkeys(ce_function(self.prefix, function_id)))
        scopes = sorted({DataKey.from_str(text(k)).scope for k in held})

        def body(
            pipe: Any, table: FunctionTable, catalog: RedisCatalog
        ) -> tuple[LostResult, Write]:
            keys = list(table.load(function_id))
            for key in keys:
                table.drop_copy(key, function_id)
            dropped = tuple(k for k in keys if not table.holders(k))
            degraded = tuple(k for k in keys if table.holders(k))
            return LostResult(function_id, dropped, degraded), lambda p: None

        result, _ = self._transact(scopes, body)
        return result

    @_redis_errors
    def restore(self, keys: Sequence[DataKey]) -> tuple[Fetch, ...]:
        """Re-place ``keys`` that an active policy still wants and top up missing replicas.

        Use after :meth:`mark_function_lost`; the caller loads each returned
        :class:`Fetch` from the persistent store (or a surviving replica).
        """
        fetches: list[Fetch] = []
        for scope in sorted({k.scope for k in keys}):
            group = [k for k in keys if k.scope == scope]

            def body(
                pipe: Any, table: FunctionTable, catalog: RedisCatalog,
                group: list[DataKey] = group, scope: tuple[str, str] = scope,
            ) -> tuple[None, Write]:
                jp, _ = self._job(pipe, *scope)
                wanted: set[DataKey] = set()
                for name, policy in jp.active.items():
                    wanted |= policy.wanted(group, catalog, jp.state(name))
                for key in group:
                    if key in wanted or table.is_resident(key):
                        table.add_copies(key, set(group), "lru")
                return None, lambda p: None

            _, table = self._transact([scope], body)
            placed, _ = table.moves()
            for key in group:
                fids = tuple(m.function_id for m in placed if m.key == key)
                if fids:
                    fetches.append(Fetch(key, fids))
        return tuple(fetches)

    @_redis_errors
    def stats(self, tenant: str) -> dict[str, dict[str, int]]:
        """Hit and miss counts per policy for ``tenant``."""
        out: dict[str, dict[str, int]] = {}
        raw = self.redis.hgetall(ce_stats(self.prefix, check_id(tenant, "tenant")))
        for field, count in raw.items():
            policy, what = text(field).rsplit(":", 1)
            out.setdefault(policy, {"hits": 0, "misses": 0})[what] = int(text(count))
        return out

    @_redis_errors
    def usage(self) -> dict[str, int]:
        """Bytes accounted to each cache function."""
        return {f: sum(int(text(v)) for v in self.redis.hvals(ce_function(self.prefix, f)))
                for f in self.functions}

    @_redis_errors
    def resident(self, tenant: str, job: str) -> dict[DataKey, list[str]]:
        """The table entries of one job: data key -> holders."""
        raw = self.redis.hgetall(ce_locations(self.prefix, tenant, job))
        return {DataKey.from_str(text(k)): text(v).split(",") for k, v in raw.items()}

    @_redis_errors
    def drop_job(self, tenant: str, job: str) -> tuple[Move, ...]:
        """Forget a finished or deleted job: table entries, catalog, policy state.

        Returns the copies the caller must drop from the functions; the persistent
        store is untouched.  Call once the job no longer ingests.
        """
        check_id(tenant, "tenant")
        check_id(job, "job")

        def body(pipe: Any, table: FunctionTable, catalog: RedisCatalog) -> tuple[None, Write]:
            for key in table.resident_of_job(tenant, job):
                table.evict(key)
            return None, lambda p: None

        _, table = self._transact([(tenant, job)], body)
        # Ids cannot hold glob characters, so the pattern matches this job's keys only.
        names = list(self.redis.scan_iter(match=ce_job_pattern(self.prefix, tenant, job), count=1000))
        for start in range(0, len(names), 500):
            self.redis.delete(*names[start : start + 500])
        return tuple(table.moves()[1])
