"""The Cache Engine's decision steps, shared by the Redis engine and the simulator (FLStore, 4.2-4.4).

FLStore's Cache Engine filters hot data from cold data with the policy of each
workload (Figure 6, step 4) and places hot data in function memory (step 5).
This module holds those steps once, over an abstract :class:`CacheBackend`, so
the simulator that measures hit rates and the Redis-backed engine that the
gateway runs make the same decisions:

- ingest: data is cached if any policy active for the job calls it hot;
- request: the workload's policy names the data needed and the data to
  prefetch; the request hits when all needed data is resident on arrival;
- both: resident data of the job that no active policy wants is evicted, and a
  full function evicts by the policy's victim order (LRU for P1-P4).
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from typing import Protocol

from cache_engine.catalog import CatalogView
from cache_engine.keys import DataKey
from cache_engine.policies import CachingPolicy, PolicyState
from fedfaas.errors import BadRequest


class CacheBackend(Protocol):
    """Where data is resident: one bin in the simulator, cache functions in the engine."""

    def resident_of_job(self, tenant: str, job: str) -> list[DataKey]:
        """Every resident key of one job."""
        ...

    def is_resident(self, key: DataKey) -> bool:
        """True if at least one function holds ``key``."""
        ...

    def touch(self, key: DataKey) -> None:
        """Record an access to resident ``key`` (recency and frequency)."""
        ...

    def place(self, key: DataKey, pinned: Set[DataKey], order: str) -> bool:
        """Make ``key`` resident, evicting by ``order`` (never ``pinned``); False if impossible."""
        ...

    def evict(self, key: DataKey) -> None:
        """Drop ``key`` from every function holding it."""
        ...


@dataclass
class JobPolicies:
    """The policies active for one job (those of its workloads) and their states."""

    active: dict[str, CachingPolicy]
    states: dict[str, PolicyState] = field(default_factory=dict)

    def state(self, name: str) -> PolicyState:
        """The mutable state of policy ``name`` for this job."""
        return self.states.setdefault(name, {})


@dataclass(frozen=True)
class RequestOutcome:
    """What one request needed, whether it hit, what could not be cached, what was prefetched."""

    policy: str
    needed: tuple[DataKey, ...]
    prefetch: tuple[DataKey, ...]
    hit: bool
    missed: tuple[DataKey, ...]
    unplaced: tuple[DataKey, ...]
    prefetched: tuple[DataKey, ...]


def evict_unwanted(
    job: JobPolicies, view: CatalogView, cache: CacheBackend,
    tenant: str, job_id: str, pinned: Set[DataKey],
) -> list[DataKey]:
    """Evict the job's resident keys that no active policy wants; return them."""
    resident = cache.resident_of_job(tenant, job_id)
    wanted: set[DataKey] = set(pinned)
    for name, policy in job.active.items():
        wanted |= policy.wanted(resident, view, job.state(name))
    evicted = [k for k in resident if k not in wanted]
    for key in evicted:
        cache.evict(key)
    return evicted


def ingest(job: JobPolicies, view: CatalogView, cache: CacheBackend, key: DataKey) -> bool:
    """Decide and apply the caching of newly arrived ``key`` (already in the catalog).

    Returns
    -------
    bool
        True if ``key`` is now resident.
    """
    order = None
    for name, policy in job.active.items():
        if policy.on_ingest(key, view, job.state(name)):
            order = policy.eviction_order
            break
    evict_unwanted(job, view, cache, key.tenant, key.job, {key})
    if order is None:
        return cache.is_resident(key)
    return cache.place(key, {key}, order)


def request(
    job: JobPolicies, view: CatalogView, cache: CacheBackend,
    policy_name: str, workload: str, keys: Sequence[DataKey],
) -> RequestOutcome:
    """Plan and apply one non-training request for ``keys`` under ``policy_name``.

    The request hits when every needed key is resident on arrival.  Missed keys
    are placed (the caller fetches them from the persistent store into the
    chosen functions), then prefetched keys.
    """
    if not keys:
        raise BadRequest("a request must name at least one data key", code="bad_request")
    if len({k.scope for k in keys}) != 1:
        raise BadRequest("all data keys of a request must belong to one tenant and job",
                         code="bad_request")
    if policy_name not in job.active:
        raise BadRequest(f"policy {policy_name} is not active for this job", code="bad_policy")
    policy = job.active[policy_name]
    plan = policy.on_request(keys, view, job.state(policy_name), workload)
    missed = tuple(k for k in plan.needed if not cache.is_resident(k))
    for key in plan.needed:
        if key not in missed:
            cache.touch(key)
    pinned = set(plan.needed) | set(plan.prefetch)
    evict_unwanted(job, view, cache, keys[0].tenant, keys[0].job, pinned)
    unplaced = tuple(k for k in missed if not cache.place(k, pinned, policy.eviction_order))
    prefetched = tuple(
        k for k in plan.prefetch
        if not cache.is_resident(k) and cache.place(k, pinned, policy.eviction_order)
    )
    return RequestOutcome(
        policy_name, plan.needed, plan.prefetch, not missed, missed, unplaced, prefetched
    )
