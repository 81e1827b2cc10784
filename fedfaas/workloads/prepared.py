"""Compute-ready statistics a cache function keeps next to the data it holds (FLStore 4.1-4.2).

FLStore's point is that the data a non-training workload reads is already in
the memory of the function that runs it.  Decoded updates are float32 views
that need no further decoding, but every P2 workload still starts with the
same passes over the round: is every update finite, the Gram matrix of the
deltas to the base model, the coordinate-wise median, a CountSketch of each
update.  :class:`Prepared` keeps such *derived statistics* of held data,
keyed by the data keys they come from, so that they are computed once (when
the data is loaded or on first use) and reused by every later request until
the data they depend on changes.  Final workload results are never kept.

Workload cores take a ``prepared`` argument that may be None: without it the
same helpers compute the statistic for the call and keep nothing, which is
what an aggregator with a fresh memory per request (the paper's baselines)
does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def nbytes_of(value: Any) -> int:
    """Memory pinned by a statistic (numpy arrays, and tuples/lists/dicts of them)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, tuple | list):
        return sum(nbytes_of(v) for v in value)
    if isinstance(value, dict):
        return sum(nbytes_of(v) for v in value.values())
    return 64


@dataclass
class _Item:
    value: Any
    deps: frozenset[str]
    nbytes: int


class Prepared:
    """Derived statistics of held data, each tagged with the data keys it depends on.

    Parameters
    ----------
    budget_bytes
        Most memory the statistics may pin; least recently used ones are
        dropped beyond it (the owner counts :attr:`used_bytes` in its budget).
    """

    def __init__(self, budget_bytes: int = 256 * 1024**2) -> None:
        self.budget_bytes = budget_bytes
        self._items: OrderedDict[Hashable, _Item] = OrderedDict()
        self._keys: dict[int, tuple[str, int]] = {}  # id -> (data key, registrations)
        self._lock = threading.RLock()

    # --- which held data a mapping of tensors is ------------------------------------
    def register(self, tensors: Mapping[str, np.ndarray], key: str) -> None:
        """Declare that ``tensors`` (a held, immutable decoding) is the data under ``key``.

        Identity is used because workload cores receive the decoded mappings
        themselves; the owner registers them for the duration of a request,
        while they are referenced and their ids cannot be reused.
        """
        with self._lock:
            known = self._keys.get(id(tensors))
            count = known[1] if known is not None and known[0] == key else 0
            self._keys[id(tensors)] = (key, count + 1)

    def unregister(self, tensors: Iterable[Mapping[str, np.ndarray]]) -> None:
        """Forget mappings registered for a request that has finished (counted per request)."""
        with self._lock:
            for t in tensors:
                known = self._keys.get(id(t))
                if known is None:
                    continue
                if known[1] > 1:
                    self._keys[id(t)] = (known[0], known[1] - 1)
                else:
                    del self._keys[id(t)]

    def key_of(self, tensors: Mapping[str, np.ndarray] | None) -> str | None:
        """The data key of a registered mapping ("-" for None), else None (not memoisable)."""
        if tensors is None:
            return "-"
        with self._lock:
            known = self._keys.get(id(tensors))
        return None if known is None else known[0]

    # --- memo ------------------------------------------------------------------------
    def get_or_compute(self, what: Hashable, deps: Iterable[str], compute: Callable[[], T]) -> T:
        """The statistic ``what`` over data ``deps``, computed by ``compute`` on first use."""
        dep_set = frozenset(d for d in deps if d != "-")
        with self._lock:
            item = self._items.get(what)
            if item is not None:
                self._items.move_to_end(what)
                return item.value
        value = compute()  # outside the lock: other requests need not wait
        self.store(what, dep_set, value)
        return value

    def lookup(self, what: Hashable) -> Any | None:
        """The statistic ``what`` if kept, else None."""
        with self._lock:
            item = self._items.get(what)
            if item is None:
                return None
            self._items.move_to_end(what)
            return item.value

    def store(self, what: Hashable, deps: Iterable[str], value: Any) -> None:
        """Keep ``value`` as statistic ``what`` over data ``deps`` (within the budget)."""
        size = nbytes_of(value)
        if size > self.budget_bytes:
            return
        with self._lock:
            self._items[what] = _Item(value, frozenset(d for d in deps if d != "-"), size)
            self._items.move_to_end(what)
            while self.used_bytes > self.budget_bytes and len(self._items) > 1:
                self._items.popitem(last=False)

    def invalidate(self, keys: Iterable[str]) -> int:
        """Drop every statistic that depends on one of ``keys``; returns how many."""
        gone = set(keys)
        with self._lock:
            stale = [w for w, item in self._items.items() if item.deps & gone]
            for w in stale:
                del self._items[w]
        return len(stale)

    def clear(self) -> None:
        """Drop every statistic."""
        with self._lock:
            self._items.clear()

    @property
    def used_bytes(self) -> int:
        """Memory the statistics pin."""
        return sum(item.nbytes for item in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


def memo(prepared: Prepared | None, what: tuple[Any, ...],
         data: Iterable[Mapping[str, np.ndarray] | None], compute: Callable[[], T]) -> T:
    """``compute()``, kept in ``prepared`` under ``what`` + the data keys when all are known.

    ``data`` lists the tensor mappings the statistic is computed from (None for
    an absent base model); when any of them is not registered, nothing is kept.
    """
    if prepared is None:
        return compute()
    keys = [prepared.key_of(d) for d in data]
    if any(k is None for k in keys):
        return compute()
    ks = tuple(str(k) for k in keys)
    return prepared.get_or_compute((*what, ks), ks, compute)
