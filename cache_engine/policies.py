"""FLStore's tailored caching policies P1-P4 (FLStore paper, section 4.4 and Table 1).

Every policy answers three questions for the Cache Engine and the simulator:

- ``on_ingest(key)``: is newly arrived data hot (cache it in function memory now)?
- ``on_request(keys)``: which data must be resident to serve a request for
  ``keys`` (``needed``) and which to fetch ahead for the imminent next request
  (``prefetch``)?
- ``wanted(resident)``: which of the job's resident data should stay?  Resident
  data that no active policy wants is evicted eagerly ("evicts past data").

Policies are stateless objects; their per-job state is a small JSON-able dict
passed in by the caller, so the Redis-backed engine (several gateway replicas)
and the in-memory simulator run exactly the same classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from cache_engine.catalog import CatalogView
from cache_engine.keys import DataKey
from fedfaas.errors import BadRequest

PolicyState = dict[str, Any]
EVICTION_ORDERS = ("lru", "lfu", "fifo", "none")


@dataclass(frozen=True)
class Plan:
    """What a request needs resident now and what to fetch ahead of the next request."""

    needed: tuple[DataKey, ...] = ()
    prefetch: tuple[DataKey, ...] = ()


def _positive(value: int, what: str, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise BadRequest(f"{what} must be an integer >= {least}; got {value!r}", code="bad_policy")
    return value


class CachingPolicy(ABC):
    """One caching policy; subclasses are P1-P4 and the baselines."""

    name: ClassVar[str]
    eviction_order: ClassVar[str] = "lru"
    """Victim order when a function is over budget: lru, lfu, fifo, or none (never evict)."""

    @abstractmethod
    def on_ingest(self, key: DataKey, view: CatalogView, state: PolicyState) -> bool:
        """True if ``key`` (already in the catalog) should be cached as it arrives."""

    def on_request(
        self, keys: Sequence[DataKey], view: CatalogView, state: PolicyState, workload: str
    ) -> Plan:
        """Data needed to serve one request for ``keys`` and data to prefetch."""
        needed: dict[DataKey, None] = {}
        prefetch: dict[DataKey, None] = {}
        for key in keys:
            plan = self.plan_key(key, view, state, workload)
            needed.update(dict.fromkeys(plan.needed))
            prefetch.update(dict.fromkeys(plan.prefetch))
        return Plan(tuple(needed), tuple(k for k in prefetch if k not in needed))

    @abstractmethod
    def plan_key(
        self, key: DataKey, view: CatalogView, state: PolicyState, workload: str
    ) -> Plan:
        """Data needed to serve a request for ``key`` and data to prefetch."""

    @abstractmethod
    def wanted(
        self, resident: Iterable[DataKey], view: CatalogView, state: PolicyState
    ) -> set[DataKey]:
        """The subset of one job's ``resident`` keys this policy wants kept."""


class P1SingleClientOrModel(CachingPolicy):
    """P1: the aggregated model and individually requested client updates (section 4.4).

    The latest ``keep_models`` aggregated models are hot on ingest (serving and
    inference, plus comparison with the previous version); a requested single
    update or model stays cached while it is among the ``max_singles`` most
    recently requested.
    """

    name = "P1"

    def __init__(self, keep_models: int = 2, max_singles: int = 16) -> None:
        self.keep_models = _positive(keep_models, "keep_models")
        self.max_singles = _positive(max_singles, "max_singles")

    def _latest_model(self, key: DataKey, view: CatalogView, key_round: bool) -> bool:
        latest = view.latest_round(key.tenant, key.job, "model")
        return key_round and latest is not None and key.round > latest - self.keep_models

    def on_ingest(self, key: DataKey, view: CatalogView, state: PolicyState) -> bool:
        return self._latest_model(key, view, key.kind == "model")

    def plan_key(
        self, key: DataKey, view: CatalogView, state: PolicyState, workload: str
    ) -> Plan:
        singles: list[str] = [s for s in state.get("singles", []) if s != key.to_str()]
        singles.append(key.to_str())
        state["singles"] = singles[-self.max_singles :]
        return Plan(needed=(key,))

    def wanted(
        self, resident: Iterable[DataKey], view: CatalogView, state: PolicyState
    ) -> set[DataKey]:
        singles = set(state.get("singles", []))
        return {
            k for k in resident
            if k.to_str() in singles or self._latest_model(k, view, k.kind == "model")
        }


class P2AllUpdatesInRound(CachingPolicy):
    """P2: all client updates of a round (section 4.4).

    A request for round ``r`` needs every update of ``r`` and prefetches round
    ``r + 1``; each workload keeps one such window (at most ``max_windows`` per
    job, dropped once training has moved ``window_idle_rounds`` past it).  The
    latest ``keep_latest_rounds`` rounds are hot on ingest, since per-round
    workloads (filtering, contribution, scheduling) need every new round; two by
    default because requests for round ``r`` can still arrive while the first
    updates of ``r + 1`` stream in.  Older rounds are evicted.
    """

    name = "P2"

    def __init__(
        self, keep_latest_rounds: int = 2, max_windows: int = 8, window_idle_rounds: int = 20
    ) -> None:
        self.keep_latest_rounds = _positive(keep_latest_rounds, "keep_latest_rounds")
        self.max_windows = _positive(max_windows, "max_windows")
        self.window_idle_rounds = _positive(window_idle_rounds, "window_idle_rounds")

    def _hot_rounds(
        self, tenant: str, job: str, view: CatalogView, state: PolicyState
    ) -> tuple[int | None, set[int]]:
        latest = view.latest_round(tenant, job, "update")
        windows: set[int] = set()
        for _workload, start, latest_then in state.get("windows", []):
            if latest is None or latest - latest_then <= self.window_idle_rounds:
                windows.update((start, start + 1))
        return latest, windows

    def _is_hot(self, key: DataKey, latest: int | None, windows: set[int]) -> bool:
        if key.kind != "update":
            return False
        recent = latest is not None and key.round > latest - self.keep_latest_rounds
        return recent or key.round in windows

    def on_ingest(self, key: DataKey, view: CatalogView, state: PolicyState) -> bool:
        latest, windows = self._hot_rounds(key.tenant, key.job, view, state)
        return self._is_hot(key, latest, windows)

    def plan_key(
        self, key: DataKey, view: CatalogView, state: PolicyState, workload: str
    ) -> Plan:
        if key.kind != "update":
            return Plan(needed=(key,))
        t, j, r = key.tenant, key.job, key.round
        needed = view.keys_of_round(t, j, r, "update")
        if key not in needed:
            needed.append(key)
        latest = view.latest_round(t, j, "update")
        windows = [w for w in state.get("windows", []) if w[0] != workload]
        windows.append([workload, r, r if latest is None else latest])
        state["windows"] = windows[-self.max_windows :]
        return Plan(needed=tuple(needed), prefetch=tuple(view.keys_of_round(t, j, r + 1, "update")))

    def wanted(
        self, resident: Iterable[DataKey], view: CatalogView, state: PolicyState
    ) -> set[DataKey]:
        out: set[DataKey] = set()
        cache: dict[tuple[str, str], tuple[int | None, set[int]]] = {}
        for k in resident:
            if k.scope not in cache:
                cache[k.scope] = self._hot_rounds(k.tenant, k.job, view, state)
            if self._is_hot(k, *cache[k.scope]):
                out.add(k)
        return out


class P3ClientAcrossRounds(CachingPolicy):
    """P3: one client's updates across rounds (section 4.4).

    A request for client ``c`` in round ``r`` caches it and prefetches ``c``'s
    data from its previous and next participation; the window follows the
    latest request, so ``c``'s data outside it is evicted.  ``c``'s next update
    is hot on ingest, which serves workloads that follow a client while it
    trains.  At most ``max_tracked`` clients per job are followed.  The client
    updates of the latest ``keep_latest_rounds`` rounds (0: none) are hot on
    ingest too: a new session most often starts on a client that has just
    trained (provenance of the newest update), and it then hits.
    """

    name = "P3"

    def __init__(self, max_tracked: int = 16, keep_latest_rounds: int = 1) -> None:
        self.max_tracked = _positive(max_tracked, "max_tracked")
        self.keep_latest_rounds = _positive(keep_latest_rounds, "keep_latest_rounds", least=0)

    def on_ingest(self, key: DataKey, view: CatalogView, state: PolicyState) -> bool:
        return key in self.wanted((key,), view, state)

    def plan_key(
        self, key: DataKey, view: CatalogView, state: PolicyState, workload: str
    ) -> Plan:
        if key.client is None:
            return Plan(needed=(key,))
        t, j, c, kind = key.tenant, key.job, key.client, key.kind
        prefetch = []
        for r in view.client_neighbours(t, j, c, kind, key.round):
            if r is not None:
                prefetch.append(DataKey(t, j, r, c, kind))
        tracked = [e for e in state.get("tracked", []) if (e[0], e[1]) != (c, kind)]
        tracked.append([c, kind, key.round])
        state["tracked"] = tracked[-self.max_tracked :]
        return Plan(needed=(key,), prefetch=tuple(prefetch))

    def wanted(
        self, resident: Iterable[DataKey], view: CatalogView, state: PolicyState
    ) -> set[DataKey]:
        centre = {(c, kind): r for c, kind, r in state.get("tracked", [])}
        windows: dict[tuple[str, str, str, str], set[int | None]] = {}
        latest: dict[tuple[str, str], int | None] = {}
        out: set[DataKey] = set()
        for k in resident:
            if k.client is None:
                continue
            if self.keep_latest_rounds and k.kind == "update":
                if k.scope not in latest:
                    latest[k.scope] = view.latest_round(k.tenant, k.job, "update")
                newest = latest[k.scope]
                if newest is not None and k.round > newest - self.keep_latest_rounds:
                    out.add(k)
                    continue
            if (k.client, k.kind) not in centre:
                continue
            wkey = (k.tenant, k.job, k.client, k.kind)
            if wkey not in windows:
                r = centre[(k.client, k.kind)]
                windows[wkey] = {r, *view.client_neighbours(*wkey, r)}
            if k.round in windows[wkey]:
                out.add(k)
        return out


class P4MetadataHyperparameters(CachingPolicy):
    """P4: metadata and hyperparameters of the last ``k`` rounds (section 4.4, default 10).

    Metadata of the ``k`` most recent rounds is hot on ingest and older metadata
    is evicted; a request prefetches any of the window that is not resident
    (after a function was reclaimed, for instance).
    """

    name = "P4"

    def __init__(self, k: int = 10) -> None:
        self.k = _positive(k, "k")

    def _recent(self, key: DataKey, latest: int | None) -> bool:
        return key.kind == "meta" and latest is not None and key.round > latest - self.k

    def on_ingest(self, key: DataKey, view: CatalogView, state: PolicyState) -> bool:
        return self._recent(key, view.latest_round(key.tenant, key.job, "meta"))

    def plan_key(
        self, key: DataKey, view: CatalogView, state: PolicyState, workload: str
    ) -> Plan:
        if key.kind != "meta":
            return Plan(needed=(key,))
        latest = view.latest_round(key.tenant, key.job, "meta")
        prefetch: list[DataKey] = []
        if latest is not None:
            for r in range(max(0, latest - self.k + 1), latest + 1):
                prefetch.extend(
                    k for k in view.keys_of_round(key.tenant, key.job, r, "meta")
                    if k.client == key.client and k != key
                )
        return Plan(needed=(key,), prefetch=tuple(prefetch))

    def wanted(
        self, resident: Iterable[DataKey], view: CatalogView, state: PolicyState
    ) -> set[DataKey]:
        latest: dict[tuple[str, str], int | None] = {}
        out: set[DataKey] = set()
        for k in resident:
            if k.scope not in latest:
                latest[k.scope] = view.latest_round(k.tenant, k.job, "meta")
            if self._recent(k, latest[k.scope]):
                out.add(k)
        return out
