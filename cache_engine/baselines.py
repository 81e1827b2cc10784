"""Baseline caching policies FLStore is compared against (FLStore paper, section 5.4, appendix C).

- :class:`LRUPolicy`, :class:`LFUPolicy`, :class:`FIFOPolicy`: traditional
  caches.  They cache what is requested (demand fill, as a cache in front of the
  persistent store does) and, with ``admit_on_ingest=True``, also everything
  that arrives (write-allocate).  They never evict eagerly; a full function
  evicts by recency, frequency or arrival order.
- :class:`StaticPolicy`: a fixed set: first come, first cached until the budget
  is full, then nothing changes.
- :class:`RandomPolicy` (FLStore-Random): for every request, one of P1-P4 chosen
  at random regardless of the workload (seeded, reproducible).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from cache_engine.catalog import CatalogView
from cache_engine.keys import DataKey
from cache_engine.policies import (
    CachingPolicy,
    P1SingleClientOrModel,
    P2AllUpdatesInRound,
    P3ClientAcrossRounds,
    P4MetadataHyperparameters,
    Plan,
    PolicyState,
)


class _TraditionalPolicy(CachingPolicy):
    """Cache what is requested (and what arrives if ``admit_on_ingest``); keep everything."""

    def __init__(self, admit_on_ingest: bool = False) -> None:
        self.admit_on_ingest = bool(admit_on_ingest)

    def on_ingest(self, key: DataKey, view: CatalogView, state: PolicyState) -> bool:
        return self.admit_on_ingest

    def plan_key(
        self, key: DataKey, view: CatalogView, state: PolicyState, workload: str
    ) -> Plan:
        return Plan(needed=(key,))

    def wanted(
        self, resident: Iterable[DataKey], view: CatalogView, state: PolicyState
    ) -> set[DataKey]:
        return set(resident)


class LRUPolicy(_TraditionalPolicy):
    """Least recently used goes first."""

    name = "lru"
    eviction_order = "lru"


class LFUPolicy(_TraditionalPolicy):
    """Least frequently used goes first (ties: least recently used)."""

    name = "lfu"
    eviction_order = "lfu"


class FIFOPolicy(_TraditionalPolicy):
    """First cached goes first."""

    name = "fifo"
    eviction_order = "fifo"


class StaticPolicy(_TraditionalPolicy):
    """First-come fill, then never change: admits while there is room, never evicts."""

    name = "static"
    eviction_order = "none"

    def __init__(self, admit_on_ingest: bool = True) -> None:
        super().__init__(admit_on_ingest)


class RandomPolicy(CachingPolicy):
    """FLStore-Random: one of P1-P4 picked at random for every request (section 5.4).

    The pick is a pure function of ``seed`` and a per-job counter kept in the
    policy state, so gateway replicas sharing the state draw the same sequence.
    Ingest decisions and evictions follow the most recently picked policy.
    """

    name = "random"

    def __init__(self, seed: int = 0, delegates: Sequence[CachingPolicy] | None = None) -> None:
        self.seed = int(seed)
        pool = delegates or (
            P1SingleClientOrModel(), P2AllUpdatesInRound(),
            P3ClientAcrossRounds(), P4MetadataHyperparameters(),
        )
        self.delegates = {p.name: p for p in pool}

    def _current(self, state: PolicyState) -> tuple[CachingPolicy, PolicyState]:
        name = state.get("current", next(iter(self.delegates)))
        sub: PolicyState = state.setdefault("sub", {}).setdefault(name, {})
        return self.delegates[name], sub

    def on_ingest(self, key: DataKey, view: CatalogView, state: PolicyState) -> bool:
        policy, sub = self._current(state)
        return policy.on_ingest(key, view, sub)

    def on_request(
        self, keys: Sequence[DataKey], view: CatalogView, state: PolicyState, workload: str
    ) -> Plan:
        draw = int(state.get("draws", 0))
        state["draws"] = draw + 1
        state["current"] = random.Random(f"{self.seed}:{draw}").choice(sorted(self.delegates))
        policy, sub = self._current(state)
        return policy.on_request(keys, view, sub, workload)

    def plan_key(
        self, key: DataKey, view: CatalogView, state: PolicyState, workload: str
    ) -> Plan:
        policy, sub = self._current(state)
        return policy.plan_key(key, view, sub, workload)

    def wanted(
        self, resident: Iterable[DataKey], view: CatalogView, state: PolicyState
    ) -> set[DataKey]:
        policy, sub = self._current(state)
        return policy.wanted(resident, view, sub)
