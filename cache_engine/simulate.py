"""Replay a trace of ingests and non-training requests against a caching policy (FLStore, 5.4).

The simulator runs the same policy classes and the same decision steps
(:mod:`cache_engine.core`) as the Redis-backed :class:`~cache_engine.engine.CacheEngine`,
over one in-memory cache whose capacity is counted in entries (a client update,
an aggregated model or a round's metadata each take ``Ingest.size`` units,
1 by default).  A request hits when all the data it needs is resident when it
arrives, whether it got there on ingest, by prefetch or by an earlier request.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from cache_engine import core
from cache_engine.catalog import InMemoryCatalog
from cache_engine.keys import DataKey, check_id
from cache_engine.registry import check_policy_name, make_policies, policy_for
from fedfaas.errors import BadRequest


@dataclass(frozen=True)
class Ingest:
    """Data arrives (a client update, a round's model or metadata) and is persisted."""

    key: DataKey
    size: int = 1


@dataclass(frozen=True)
class Request:
    """A non-training workload asks for data."""

    workload: str
    keys: tuple[DataKey, ...]

    def __post_init__(self) -> None:
        check_id(self.workload, "workload")
        if not self.keys:
            raise BadRequest("a request must name at least one data key")


TraceEvent = Ingest | Request


class SimulatedCache:
    """One in-memory cache of ``capacity`` units implementing :class:`core.CacheBackend`."""

    def __init__(self, catalog: InMemoryCatalog, capacity: int) -> None:
        self.catalog = catalog
        self.capacity = capacity
        self.used = 0
        self.evictions = 0
        self._clock = 0
        self._size: dict[DataKey, int] = {}
        self._by_job: dict[tuple[str, str], dict[DataKey, None]] = defaultdict(dict)
        self._last: dict[DataKey, int] = {}
        self._freq: dict[DataKey, int] = {}
        self._inserted: dict[DataKey, int] = {}

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def resident_of_job(self, tenant: str, job: str) -> list[DataKey]:
        return list(self._by_job.get((tenant, job), ()))

    def is_resident(self, key: DataKey) -> bool:
        return key in self._size

    def touch(self, key: DataKey) -> None:
        self._last[key] = self._tick()
        self._freq[key] += 1

    def _victim(self, order: str, pinned: Set[DataKey]) -> DataKey | None:
        candidates = [k for k in self._size if k not in pinned]
        if order == "none" or not candidates:
            return None
        if order == "lfu":
            return min(candidates, key=lambda k: (self._freq[k], self._last[k]))
        if order == "fifo":
            return min(candidates, key=self._inserted.__getitem__)
        return min(candidates, key=self._last.__getitem__)

    def place(self, key: DataKey, pinned: Set[DataKey], order: str) -> bool:
        if key in self._size:
            self.touch(key)
            return True
        size = self.catalog.size_of(key)
        if size is None or size > self.capacity:
            return False
        while self.used + size > self.capacity:
            victim = self._victim(order, pinned)
            if victim is None:
                return False
            self.evict(victim)
        now = self._tick()
        self._size[key] = size
        self._by_job[key.scope][key] = None
        self._last[key], self._freq[key], self._inserted[key] = now, 1, now
        self.used += size
        return True

    def evict(self, key: DataKey) -> None:
        size = self._size.pop(key, None)
        if size is None:
            return
        self.evictions += 1
        self.used -= size
        self._by_job[key.scope].pop(key, None)
        del self._last[key], self._freq[key], self._inserted[key]


@dataclass
class SimResult:
    """Hit counts of one replay."""

    label: str
    capacity: int
    requests: int = 0
    hits: int = 0
    per_workload: dict[str, list[int]] = field(default_factory=dict)
    ingested: int = 0
    cached_on_ingest: int = 0
    fetched: int = 0
    prefetched: int = 0
    evictions: int = 0

    @property
    def hit_rate(self) -> float:
        """Hits over requests (0.0 for an empty trace)."""
        return self.hits / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "label": self.label, "capacity": self.capacity, "requests": self.requests,
            "hits": self.hits, "hit_rate": self.hit_rate, "ingested": self.ingested,
            "cached_on_ingest": self.cached_on_ingest, "fetched": self.fetched,
            "prefetched": self.prefetched, "evictions": self.evictions,
            "per_workload": {w: {"hits": h, "requests": n}
                             for w, (h, n) in sorted(self.per_workload.items())},
        }


def _declared_workloads(
    trace: Sequence[TraceEvent], declared: Iterable[str] | None
) -> dict[tuple[str, str], set[str]]:
    """Workloads per job: those the trace issues, plus any declared for every job."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    extra = set(declared or ())
    for event in trace:
        if isinstance(event, Request):
            out[event.keys[0].scope].add(event.workload)
        else:
            out[event.key.scope] |= extra
    return out


def simulate(
    trace: Sequence[TraceEvent],
    capacity: int,
    *,
    policy: str | None = None,
    overrides: Mapping[str, str] | None = None,
    policy_params: Mapping[str, Mapping[str, Any]] | None = None,
    declared: Iterable[str] | None = None,
    label: str | None = None,
) -> SimResult:
    """Replay ``trace`` against a cache of ``capacity`` units.

    Parameters
    ----------
    trace
        Ingests and requests in arrival order.
    capacity
        Cache size in units (a client update is one unit by default).
    policy
        If given, every workload uses this policy (a baseline run); otherwise
        each workload uses its Table 1 policy, with ``overrides`` first.
    policy_params
        Constructor parameters per policy name, e.g. ``{"P4": {"k": 5}}``.
    declared
        Workloads every job declares up front (as a job spec does); the
        workloads the trace issues are always active for their job.
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise BadRequest(f"capacity must be a positive integer; got {capacity!r}")
    if policy is not None:
        check_policy_name(policy)
    policies = make_policies(policy_params)

    def resolve(workload: str) -> str:
        return policy if policy is not None else policy_for(workload, overrides)

    catalog = InMemoryCatalog()
    cache = SimulatedCache(catalog, capacity)
    jobs = {
        scope: core.JobPolicies({resolve(w): policies[resolve(w)] for w in sorted(ws)})
        for scope, ws in _declared_workloads(trace, declared).items()
    }
    result = SimResult(label or policy or "flstore", capacity)
    for event in trace:
        if isinstance(event, Ingest):
            catalog.add(event.key, event.size)
            job = jobs.setdefault(event.key.scope, core.JobPolicies({}))
            result.ingested += 1
            result.cached_on_ingest += core.ingest(job, catalog, cache, event.key)
            continue
        name = resolve(event.workload)
        outcome = core.request(jobs[event.keys[0].scope], catalog, cache, name,
                               event.workload, event.keys)
        counts = result.per_workload.setdefault(event.workload, [0, 0])
        counts[0] += outcome.hit
        counts[1] += 1
        result.requests += 1
        result.hits += outcome.hit
        result.fetched += len(outcome.missed) - len(outcome.unplaced)
        result.prefetched += len(outcome.prefetched)
    result.evictions = cache.evictions
    return result
