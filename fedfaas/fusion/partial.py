"""Streaming partial aggregates for the linear fusion rules (JIT paper, Sections 2.1 and 5.4).

A linear rule (FedAvg, FedProx, FedSGD and the server optimisers' averaging
step) only needs ``sum_i w_i * x_i`` and ``sum_i w_i``.  :class:`PartialAggregate`
holds exactly that, so an aggregation can

- fold updates in one at a time as they arrive (one pass over each update;
  peak memory is one accumulator plus the update being read, whatever N);
- be checkpointed with the codec (:meth:`PartialAggregate.to_tensors`) and
  resumed after preemption (:meth:`PartialAggregate.from_tensors`);
- be parallelised by party: partials over disjoint party sets merge
  (:meth:`PartialAggregate.merge`, :func:`merge_tree`).

Overflow: weights are normalised before multiplying.  The accumulator holds
``sum_i (w_i / w_ref) * x_i`` with ``w_ref`` the total weight of the first batch
added (rescaled if a weight ``2**20`` times larger arrives later), so float16
updates weighted by 10**9 examples never overflow; the mean is
``acc * w_ref / sum_i w_i``, and a partial filled in one batch already holds
the mean, so finalising it in place costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedfaas.codec import DTYPES, dtype_name
from fedfaas.errors import Conflict, FusionError
from fedfaas.fusion import kernels
from fedfaas.fusion.checks import (
    ModelSpec,
    TensorInfo,
    accumulator_dtype,
    check_parties,
    check_updates,
    check_weights,
)

KIND = "fedfaas.partial"
#: Largest ratio between a new weight and ``w_ref`` before the accumulator is rescaled.
MAX_RELATIVE_WEIGHT = float(2**20)


def _flat(arr: np.ndarray) -> np.ndarray:
    return arr.reshape(-1)


class PartialAggregate:
    """The weighted sum of the updates of a set of parties, in float32/float64.

    Parameters
    ----------
    spec
        Expected model spec; taken from the first update when ``None``.
    threads
        Worker threads for the inner loops (default: all usable cores).
    """

    def __init__(self, spec: ModelSpec | None = None, *, threads: int | None = None) -> None:
        self._spec = spec
        self._acc: dict[str, np.ndarray] | None = None
        self._w_ref = 0.0
        self._consumed = False
        self.total_weight = 0.0
        self.parties: list[str] = []
        self._party_set: set[str] = set()
        self.threads = threads

    # --- inspection -------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of updates folded in."""
        return len(self.parties)

    @property
    def spec(self) -> ModelSpec | None:
        """Names, shapes and input dtypes of the model being fused."""
        return self._spec

    def __contains__(self, party: object) -> bool:
        return party in self._party_set

    def __repr__(self) -> str:
        return f"PartialAggregate(count={self.count}, total_weight={self.total_weight})"

    def _live(self) -> None:
        if self._consumed:
            raise Conflict("this partial aggregate was consumed by finalize(consume=True)")

    def _flat_acc(self) -> list[np.ndarray]:
        assert self._acc is not None and self._spec is not None
        return [_flat(self._acc[t.name]) for t in self._spec]

    # --- folding updates in -----------------------------------------------------------

    def add(self, update: Mapping[str, np.ndarray], weight: float, party: str) -> None:
        """Fold in one party's update with ``weight`` (e.g. its number of examples)."""
        self.add_many([update], [weight], [party])

    def add_many(self, updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float],
                 parties: Sequence[str]) -> None:
        """Fold in several updates in one pass over the accumulator.

        Everything is validated first: a mismatched tensor raises
        :class:`FusionError`, a party already folded in raises :class:`Conflict`,
        and in both cases the partial is unchanged.
        """
        self._live()
        n = len(updates)
        party_ids = check_parties(parties, n)
        ws = check_weights(weights, n)
        dup = [p for p in party_ids if p in self._party_set]
        if dup:
            raise Conflict(f"party {dup[0]!r} is already in this partial aggregate")
        spec = check_updates(updates, party_ids, self._spec)
        init = self._acc is None
        if init:
            self._spec = spec
            arrays = kernels.allocate([t.shape for t in spec],
                                      [accumulator_dtype(t.dtype) for t in spec])
            self._acc = {t.name: a for t, a in zip(spec, arrays, strict=True)}
            # Normalising by the batch's total makes a one-batch partial the mean already.
            self._w_ref = math.fsum(ws)
        elif max(ws) > self._w_ref * MAX_RELATIVE_WEIGHT:
            kernels.scale(self._flat_acc(), self._w_ref / math.fsum(ws), threads=self.threads)
            self._w_ref = math.fsum(ws)
        inputs = [[_flat(u[t.name]) for t in spec] for u in updates]
        kernels.weighted_sum(self._flat_acc(), inputs, [w / self._w_ref for w in ws],
                             init=init, threads=self.threads)
        self.total_weight += math.fsum(ws)
        self.parties.extend(party_ids)
        self._party_set.update(party_ids)

    def merge(self, other: PartialAggregate) -> PartialAggregate:
        """Fold ``other`` (over a disjoint set of parties) into this partial; returns ``self``."""
        self._live()
        other._live()
        if other is self:
            raise Conflict("cannot merge a partial aggregate with itself")
        overlap = [p for p in other.parties if p in self._party_set]
        if overlap:
            raise Conflict(f"party {overlap[0]!r} is in both partial aggregates")
        if other._acc is None:
            return self
        if self._spec is not None and self._spec != other._spec:
            raise FusionError("partial aggregates hold different models: "
                              + _spec_diff(self._spec, other._spec))
        if self._acc is None:
            self._spec = other._spec
            self._acc = {k: v.copy() for k, v in other._acc.items()}
            self._w_ref = other._w_ref
        else:
            if other._w_ref > self._w_ref:
                kernels.scale(self._flat_acc(), self._w_ref / other._w_ref, threads=self.threads)
                self._w_ref = other._w_ref
            kernels.weighted_sum(self._flat_acc(), [other._flat_acc()],
                                 [other._w_ref / self._w_ref], init=False, threads=self.threads)
        self.total_weight += other.total_weight
        self.parties.extend(other.parties)
        self._party_set.update(other.parties)
        return self

    # --- results ----------------------------------------------------------------------

    def _scaled(self, dtypes: Sequence[np.dtype[Any]], consume: bool) -> dict[str, np.ndarray]:
        self._live()
        if self._acc is None or self._spec is None:
            raise FusionError("no updates have been added to this partial aggregate")
        pairs = list(zip(self._spec, dtypes, strict=True))
        reuse = {t.name for t, dt in pairs if consume and self._acc[t.name].dtype == dt}
        fresh = [(t, dt) for t, dt in pairs if t.name not in reuse]
        arrays = kernels.allocate([t.shape for t, _ in fresh], [dt for _, dt in fresh])
        new = {t.name: a for (t, _), a in zip(fresh, arrays, strict=True)}
        outs = {t.name: self._acc[t.name] if t.name in reuse else new[t.name] for t, _ in pairs}
        kernels.scale_into([_flat(outs[t.name]) for t in self._spec], self._flat_acc(),
                           self._w_ref / self.total_weight, threads=self.threads)
        if consume:
            self._acc = None
            self._consumed = True
        return outs

    def finalize(self, *, consume: bool = False) -> dict[str, np.ndarray]:
        """The weighted mean, in each tensor's input dtype (integers rounded half up).

        With ``consume=True`` accumulators already in the input dtype (float32,
        float64) become the result, saving one model of memory; the partial
        cannot be used afterwards.
        """
        return self._scaled([t.dtype for t in self._spec or ()], consume)

    def mean(self, *, consume: bool = False) -> dict[str, np.ndarray]:
        """The weighted mean in the accumulator dtype (float32/float64), not rounded."""
        return self._scaled([accumulator_dtype(t.dtype) for t in self._spec or ()], consume)

    # --- checkpointing ----------------------------------------------------------------

    def to_tensors(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Named tensors and metadata for :func:`fedfaas.codec.encode` (no copy)."""
        self._live()
        spec = self._spec if self._acc is not None and self._spec is not None else ()
        meta = {
            "kind": KIND,
            "w_ref": self._w_ref,
            "total_weight": self.total_weight,
            "parties": list(self.parties),
            "dtypes": [dtype_name(t.dtype) for t in spec],
        }
        tensors = {t.name: self._acc[t.name] for t in spec} if self._acc is not None else {}
        return tensors, meta

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any], *,
                     copy: bool = True, threads: int | None = None) -> PartialAggregate:
        """Resume a partial stored with :meth:`to_tensors` (e.g. decoded by the codec).

        Read-only or non-contiguous arrays are always copied; with ``copy=False``
        writable ones are adopted as accumulators.
        """
        if meta.get("kind") != KIND:
            raise FusionError(f"not a partial aggregate: meta 'kind' must be {KIND!r}")
        parties = meta.get("parties")
        names = meta.get("dtypes")
        if not isinstance(parties, list) or not isinstance(names, list):
            raise FusionError("partial aggregate meta needs lists 'parties' and 'dtypes'")
        party_ids = check_parties(parties, len(parties))
        part = cls(threads=threads)
        if not party_ids:
            if tensors or names:
                raise FusionError("an empty partial aggregate cannot hold tensors")
            return part
        if len(names) != len(tensors):
            raise FusionError(f"partial aggregate has {len(tensors)} tensors but "
                              f"{len(names)} dtypes")
        w_ref, total = meta.get("w_ref"), meta.get("total_weight")
        for key, val in (("w_ref", w_ref), ("total_weight", total)):
            if isinstance(val, bool) or not isinstance(val, int | float) or not (
                    math.isfinite(val) and val > 0):
                raise FusionError(f"partial aggregate meta {key!r} must be a number > 0")
        infos, acc = [], {}
        for (name, arr), dname in zip(tensors.items(), names, strict=True):
            if dname not in DTYPES:
                raise FusionError(f"partial aggregate tensor {name!r}: unknown dtype {dname!r}")
            dt = DTYPES[dname]
            if arr.dtype != accumulator_dtype(dt):
                raise FusionError(f"partial aggregate tensor {name!r} is {arr.dtype}, expected "
                                  f"{accumulator_dtype(dt)} for {dname} updates")
            infos.append(TensorInfo(name, tuple(arr.shape), dt))
            own = not copy and arr.flags.writeable and arr.flags.c_contiguous
            acc[name] = arr if own else np.array(arr, order="C", copy=True)
        part._spec = tuple(infos)
        part._acc = acc
        part._w_ref = float(w_ref)  # type: ignore[arg-type]
        part.total_weight = float(total)  # type: ignore[arg-type]
        part.parties = party_ids
        part._party_set = set(party_ids)
        return part


def _spec_diff(a: ModelSpec | None, b: ModelSpec | None) -> str:
    a_map = {t.name: t for t in a or ()}
    for t in b or ():
        mine = a_map.get(t.name)
        if mine is None:
            return f"tensor {t.name!r} is only in the second"
        if mine != t:
            return (f"tensor {t.name!r} is {list(mine.shape)} {mine.dtype} vs "
                    f"{list(t.shape)} {t.dtype}")
    return "tensor lists differ"


def merge_tree(partials: Sequence[PartialAggregate]) -> PartialAggregate:
    """Merge partials over disjoint party sets pairwise, in a tree; returns the root.

    All are checked first (disjoint parties, same model).  The left partial of
    each pair absorbs the right one, so the inputs must not be reused.
    """
    if not partials:
        raise FusionError("no partial aggregates to merge")
    seen: set[str] = set()
    spec: ModelSpec | None = None
    for part in partials:
        part._live()
        for p in part.parties:
            if p in seen:
                raise Conflict(f"party {p!r} is in more than one partial aggregate")
            seen.add(p)
        if part.spec is not None and part.count:
            if spec is not None and part.spec != spec:
                raise FusionError(f"partial aggregates hold different models: "
                                  f"{_spec_diff(spec, part.spec)}")
            spec = part.spec
    level = list(partials)
    while len(level) > 1:
        nxt = [level[i].merge(level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]
