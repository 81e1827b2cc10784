"""What data exists, cached or not: the catalog the caching policies read (FLStore, section 4.4).

Policies decide from the shape of the FL job (which clients took part in a
round, a client's previous and next participation, the latest round), not from
what happens to be cached.  :class:`CatalogView` is that read-only view;
:class:`InMemoryCatalog` backs the simulator, and the Redis-backed view in
:mod:`cache_engine.table` backs the engine, so both run the same policy classes.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Protocol

from cache_engine.keys import DataKey


class CatalogView(Protocol):
    """Read-only view of every data key ingested for a job (hot or cold)."""

    def latest_round(self, tenant: str, job: str, kind: str) -> int | None:
        """Highest round holding data of ``kind``, or None."""
        ...

    def keys_of_round(self, tenant: str, job: str, round: int, kind: str) -> list[DataKey]:
        """Every key of ``kind`` in ``round``, sorted."""
        ...

    def client_neighbours(
        self, tenant: str, job: str, client: str, kind: str, round: int
    ) -> tuple[int | None, int | None]:
        """The rounds of ``client``'s data of ``kind`` just before and just after ``round``."""
        ...

    def size_of(self, key: DataKey) -> int | None:
        """Size in bytes recorded at ingest, or None if the key was never ingested."""
        ...


class InMemoryCatalog:
    """A :class:`CatalogView` held in process memory (for the simulator and tests)."""

    def __init__(self) -> None:
        self._sizes: dict[DataKey, int] = {}
        self._latest: dict[tuple[str, str, str], int] = {}
        self._by_round: dict[tuple[str, str, int, str], list[DataKey]] = defaultdict(list)
        self._client_rounds: dict[tuple[str, str, str, str], list[int]] = defaultdict(list)

    def add(self, key: DataKey, size: int = 1) -> None:
        """Record that ``key`` exists (in the persistent store) with ``size`` bytes."""
        if key in self._sizes:
            self._sizes[key] = size
            return
        self._sizes[key] = size
        scope = (key.tenant, key.job, key.kind)
        self._latest[scope] = max(self._latest.get(scope, key.round), key.round)
        bisect.insort(self._by_round[(key.tenant, key.job, key.round, key.kind)], key)
        if key.client is not None:
            bisect.insort(self._client_rounds[(key.tenant, key.job, key.client, key.kind)],
                          key.round)

    def __contains__(self, key: object) -> bool:
        return key in self._sizes

    def latest_round(self, tenant: str, job: str, kind: str) -> int | None:
        return self._latest.get((tenant, job, kind))

    def keys_of_round(self, tenant: str, job: str, round: int, kind: str) -> list[DataKey]:
        return list(self._by_round.get((tenant, job, round, kind), ()))

    def client_neighbours(
        self, tenant: str, job: str, client: str, kind: str, round: int
    ) -> tuple[int | None, int | None]:
        rounds = self._client_rounds.get((tenant, job, client, kind), [])
        lo = bisect.bisect_left(rounds, round)
        hi = bisect.bisect_right(rounds, round)
        return (rounds[lo - 1] if lo > 0 else None, rounds[hi] if hi < len(rounds) else None)

    def size_of(self, key: DataKey) -> int | None:
        return self._sizes.get(key)
