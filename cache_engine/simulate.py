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


class Simulator:
    """Replays events one by one on a :class:`SimulatedCache` (see :func:`simulate`)."""

    def __init__(
        self, capacity: int, *, policy: str | None = None,
        overrides: Mapping[str, str] | None = None,
        policy_params: Mapping[str, Mapping[str, Any]] | None = None, label: str | None = None,
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise BadRequest(f"capacity must be a positive integer; got {capacity!r}")
        self.policy = None if policy is None else check_policy_name(policy)
        self.overrides = overrides
        self.policies = make_policies(policy_params)
        self.catalog = InMemoryCatalog()
        self.cache = SimulatedCache(self.catalog, capacity)
        self.jobs: dict[tuple[str, str], core.JobPolicies] = {}
        self.result = SimResult(label or policy or "flstore", capacity)

    def resolve(self, workload: str) -> str:
        """The policy serving ``workload``."""
        return self.policy if self.policy is not None else policy_for(workload, self.overrides)

    def job(self, scope: tuple[str, str]) -> core.JobPolicies:
        """The policies and states of one job."""
        return self.jobs.setdefault(scope, core.JobPolicies({}))

    def declare(self, scope: tuple[str, str], workloads: Iterable[str]) -> None:
        """Make the policies of ``workloads`` active for a job, as its spec would."""
        job = self.job(scope)
        for workload in workloads:
            name = self.resolve(workload)
            job.active.setdefault(name, self.policies[name])

    def feed(self, event: TraceEvent) -> core.RequestOutcome | None:
        """Apply one event; return the outcome of a request."""
        result = self.result
        if isinstance(event, Ingest):
            self.catalog.add(event.key, event.size)
            result.ingested += 1
            result.cached_on_ingest += core.ingest(
                self.job(event.key.scope), self.catalog, self.cache, event.key)
            return None
        self.declare(event.keys[0].scope, [event.workload])
        outcome = core.request(self.job(event.keys[0].scope), self.catalog, self.cache,
                               self.resolve(event.workload), event.workload, event.keys)
        counts = result.per_workload.setdefault(event.workload, [0, 0])
        counts[0] += outcome.hit
        counts[1] += 1
        result.requests += 1
        result.hits += outcome.hit
        result.fetched += len(outcome.missed) - len(outcome.unplaced)
        result.prefetched += len(outcome.prefetched)
        result.evictions = self.cache.evictions
        return outcome


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
        Workloads every job declares up front, as a job spec does.  None: each
        job declares the workloads it issues in the trace.
    """
    sim = Simulator(capacity, policy=policy, overrides=overrides,
                    policy_params=policy_params, label=label)
    per_job: dict[tuple[str, str], set[str]] = {}
    for event in trace:
        scope = event.keys[0].scope if isinstance(event, Request) else event.key.scope
        workloads = per_job.setdefault(scope, set())
        if isinstance(event, Request):
            workloads.add(event.workload)
    for scope, workloads in per_job.items():
        sim.declare(scope, workloads if declared is None else declared)
    for event in trace:
        sim.feed(event)
    sim.result.evictions = sim.cache.evictions
    return sim.result
