"""The Cache Engine table in Redis: data key -> cache functions holding it (FLStore, section 4.2).

:class:`FunctionTable` is the :class:`~cache_engine.core.CacheBackend` of one
optimistic Redis transaction.  It loads the contents of every cache function
(after ``WATCH`` on them), lets the shared decision steps place and evict in
memory, then :meth:`flush` writes the final state inside ``MULTI``.  Placement
puts a primary copy on the least-loaded function with room and each replica on
a different function; a full function evicts by the policy's victim order.
The placements and evictions the caller must carry out on the functions are
the difference between the loaded and the final contents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from cache_engine.catalog import CatalogView
from cache_engine.keys import DataKey
from fedfaas.keys import ce_function, ce_locations, ce_rank, ce_version
from fedfaas.meta import text

ORDERS = ("lru", "lfu", "fifo")
TICKS_PER_TRANSACTION = 4096


@dataclass(frozen=True)
class Move:
    """One copy of ``key`` to load into, or drop from, cache function ``function_id``."""

    key: DataKey
    function_id: str


class FunctionTable:
    """Function contents and table entries, loaded in a transaction and flushed at its end."""

    def __init__(
        self, pipe: Any, prefix: str, functions: Sequence[str], budgets: Mapping[str, int],
        replicas: int, sizes: CatalogView, clock: int,
    ) -> None:
        self.pipe = pipe
        self.prefix = prefix
        self.functions = list(functions)
        self.budgets = budgets
        self.replicas = replicas
        self.sizes = sizes
        self.clock = clock
        self._initial: dict[str, dict[DataKey, int]] = {}
        self.contents: dict[str, dict[DataKey, int]] = {}
        self._holders: dict[DataKey, list[str]] = {}
        self._dirty: dict[DataKey, None] = {}
        self._touched: dict[DataKey, float] = {}
        self._placed: dict[DataKey, float] = {}
        self._seq = 0
        self._jobs: dict[tuple[str, str], dict[DataKey, None]] = {}
        self.closed = False
        for fid in self.functions:
            self.load(fid)

    def load(self, fid: str) -> dict[DataKey, int]:
        """Contents of ``fid`` (watched and read on first use)."""
        if fid not in self.contents:
            self.pipe.watch(ce_function(self.prefix, fid))
            raw = self.pipe.hgetall(ce_function(self.prefix, fid))
            held = {DataKey.from_str(text(k)): int(text(v)) for k, v in raw.items()}
            self._initial[fid] = dict(held)
            self.contents[fid] = held
        return self.contents[fid]

    def used(self, fid: str) -> int:
        """Bytes held by ``fid`` in the current (unflushed) state."""
        return sum(self.load(fid).values())

    def holders(self, key: DataKey) -> list[str]:
        """Functions holding ``key``, primary first."""
        if key not in self._holders:
            if self.closed:
                raise RuntimeError(f"{key} was not read before the transaction committed")
            raw = self.pipe.hget(ce_locations(self.prefix, key.tenant, key.job), key.to_str())
            self._holders[key] = [f for f in text(raw).split(",") if f] if raw else []
        return self._holders[key]

    def _set_holders(self, key: DataKey, fids: list[str]) -> None:
        self._holders[key] = fids
        self._dirty[key] = None
        job = self.resident_of_job_map(key.tenant, key.job)
        if fids:
            job[key] = None
        else:
            job.pop(key, None)

    # --- core.CacheBackend -------------------------------------------------------------

    def resident_of_job_map(self, tenant: str, job: str) -> dict[DataKey, None]:
        if (tenant, job) not in self._jobs:
            raw = self.pipe.hkeys(ce_locations(self.prefix, tenant, job))
            self._jobs[(tenant, job)] = dict.fromkeys(
                sorted(DataKey.from_str(text(k)) for k in raw))
        return self._jobs[(tenant, job)]

    def resident_of_job(self, tenant: str, job: str) -> list[DataKey]:
        return list(self.resident_of_job_map(tenant, job))

    def is_resident(self, key: DataKey) -> bool:
        return bool(self.holders(key))

    def _tick(self) -> float:
        # Orders events within one transaction too, as the simulator's clock does.
        self._seq += 1
        return float(self.clock * TICKS_PER_TRANSACTION + min(self._seq, TICKS_PER_TRANSACTION - 1))

    def touch(self, key: DataKey) -> None:
        self._touched[key] = self._tick()

    def evict(self, key: DataKey) -> None:
        for fid in list(self.holders(key)):
            self.drop_copy(key, fid)

    def place(self, key: DataKey, pinned: Set[DataKey], order: str) -> bool:
        if self.is_resident(key):
            self.touch(key)
            return True
        return bool(self.add_copies(key, pinned, order))

    # --- placement -----------------------------------------------------------------

    def drop_copy(self, key: DataKey, fid: str) -> None:
        """Remove ``fid``'s copy of ``key`` (the entry goes when no copy is left)."""
        self.load(fid).pop(key, None)
        holders = self.holders(key)
        if fid in holders:
            self._set_holders(key, [f for f in holders if f != fid])

    def add_copies(self, key: DataKey, pinned: Set[DataKey], order: str) -> list[str]:
        """Top ``key`` up to one primary plus ``replicas`` copies; return the new holders."""
        size = self.sizes.size_of(key)
        if size is None:
            return []
        holders = list(self.holders(key))
        added: list[str] = []
        while len(holders) < 1 + self.replicas:
            fid = self._choose(size, holders, pinned | {key}, order)
            if fid is None:
                break
            self.contents[fid][key] = size
            holders.append(fid)
            added.append(fid)
        if added:
            self._placed.setdefault(key, self._tick())
            self._set_holders(key, holders)
        return added

    def _choose(self, size: int, exclude: list[str], pinned: Set[DataKey], order: str) -> str | None:
        candidates = sorted(
            (self.used(f), f) for f in self.functions
            if f not in exclude and size <= self.budgets[f]
        )
        for used, fid in candidates:
            if used + size <= self.budgets[fid]:
                return fid
        if order not in ORDERS:
            return None
        for _used, fid in candidates:
            if self._make_room(fid, size, pinned, order):
                return fid
        return None

    def _make_room(self, fid: str, size: int, pinned: Set[DataKey], order: str) -> bool:
        """Evict ``fid``'s copies by ``order`` until ``size`` bytes fit; False if they cannot."""
        held = self.contents[fid]
        movable = [k for k in held if k not in pinned]
        free = self.budgets[fid] - self.used(fid)
        if free + sum(held[k] for k in movable) < size:
            return False
        for victim in self._ranked(movable, order):
            if free >= size:
                break
            free += held[victim]
            self.drop_copy(victim, fid)
        return True

    def _ranked(self, keys: list[DataKey], order: str) -> list[DataKey]:
        """``keys`` from first to last victim; ties and unranked keys go by LRU, then name."""
        if not keys:
            return []
        members = [k.to_str() for k in keys]
        primary = self.pipe.zmscore(ce_rank(self.prefix, order), members)
        recency = self.pipe.zmscore(ce_rank(self.prefix, "lru"), members)
        inf = float("inf")

        def rank(i: int) -> tuple[float, float, str]:
            first = primary[i] if primary[i] is not None else inf
            last = recency[i] if recency[i] is not None else inf
            return (first, last, members[i])

        return [keys[i] for i in sorted(range(len(keys)), key=rank)]

    # --- results and commit ----------------------------------------------------------

    def moves(self) -> tuple[list[Move], list[Move]]:
        """``(placements, evictions)``: copies to load into and drop from functions."""
        placed, dropped = [], []
        for fid, now in self.contents.items():
            before = self._initial[fid]
            placed += [Move(k, fid) for k in now if k not in before]
            dropped += [Move(k, fid) for k in before if k not in now]
        return placed, dropped

    def flush(self, pipe: Any, bump: Set[tuple[str, str]] = frozenset()) -> None:
        """Queue the final state into ``pipe`` (after ``MULTI``); no reads after this."""
        self.closed = True
        pf = self.prefix
        for fid, now in self.contents.items():
            before = self._initial[fid]
            gone = [k.to_str() for k in before if k not in now]
            new = {k.to_str(): s for k, s in now.items() if before.get(k) != s}
            if gone:
                pipe.hdel(ce_function(pf, fid), *gone)
            if new:
                pipe.hset(ce_function(pf, fid), mapping=new)
        jobs = set(bump)
        for key in self._dirty:
            jobs.add(key.scope)
            loc, field = ce_locations(pf, key.tenant, key.job), key.to_str()
            holders = self._holders[key]
            if holders:
                pipe.hset(loc, field, ",".join(holders))
                tick = self._placed.get(key, float(self.clock * TICKS_PER_TRANSACTION))
                for order in ORDERS:
                    pipe.zadd(ce_rank(pf, order), {field: 1 if order == "lfu" else tick}, nx=True)
            else:
                pipe.hdel(loc, field)
                for order in ORDERS:
                    pipe.zrem(ce_rank(pf, order), field)
        for key, tick in self._touched.items():
            pipe.zadd(ce_rank(pf, "lru"), {key.to_str(): tick}, xx=True)
            pipe.zadd(ce_rank(pf, "lfu"), {key.to_str(): 1}, xx=True, incr=True)
        for tenant, job in jobs:
            pipe.incr(ce_version(pf, tenant, job))
