"""Splitting a model coordinate-wise so shards of every update fuse independently (JIT, 2.1, 5.4).

Every rule in this package except Krum's selection is coordinate-wise
(``M1 ⊕ M2 = [f(M1[1], M2[1]), ...]``, Section 2.1), so aggregation is data
parallel over the model's coordinates as well as over parties: ``N_agg``
aggregators can each fuse shard ``i`` of every update, and the fused shards are
reassembled exactly.  Shards are balanced by bytes; cuts fall on tensor
boundaries when one is near, and otherwise inside a large tensor on a flat
element range.  Krum and Bulyan shard too, because squared distances add up over
shards (see :func:`fedfaas.fusion.krum.squared_distances`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from fedfaas.codec import DTYPES
from fedfaas.errors import BadRequest, FusionError
from fedfaas.fusion.checks import ModelSpec, TensorInfo, model_spec


class SpecLike(Protocol):
    """Anything with a tensor's ``name``, ``shape`` and ``dtype`` (a wire name or numpy dtype)."""

    @property
    def name(self) -> str: ...

    @property
    def shape(self) -> Any: ...

    @property
    def dtype(self) -> Any: ...


@dataclass(frozen=True)
class Piece:
    """Flat element range ``[start, stop)`` of tensor ``name``."""

    name: str
    start: int
    stop: int
    whole: bool

    @property
    def key(self) -> str:
        """Name of the piece in a shard's tensor map (a valid codec tensor name)."""
        return self.name if self.whole else f"{self.name}[{self.start}:{self.stop}]"


@dataclass(frozen=True)
class Shard:
    """One coordinate-wise slice of the model."""

    index: int
    pieces: tuple[Piece, ...]
    nbytes: int


def spec_of(specs: Mapping[str, np.ndarray] | Iterable[SpecLike]) -> ModelSpec:
    """A :data:`ModelSpec` from a tensor map, :class:`TensorInfo` s or codec ``TensorSpec`` s."""
    if isinstance(specs, Mapping):
        return model_spec(specs, "model")
    infos = []
    for s in specs:
        dt = DTYPES.get(s.dtype) if isinstance(s.dtype, str) else np.dtype(s.dtype)
        if dt is None:
            raise FusionError(f"tensor {s.name!r} has unsupported dtype {s.dtype!r}")
        infos.append(TensorInfo(s.name, tuple(int(d) for d in s.shape), dt))
    return tuple(infos)


def shard_ranges(specs: Mapping[str, np.ndarray] | Iterable[SpecLike], n_shards: int, *,
                 tolerance: float = 0.125) -> list[Shard]:
    """Split a model into ``n_shards`` contiguous shards of about equal bytes.

    A cut moves to the nearest tensor boundary when that is within
    ``tolerance`` of a shard's size; otherwise it splits the tensor.  A model
    with fewer elements than shards yields some empty shards.
    """
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
        raise BadRequest(f"n_shards must be an integer >= 1, got {n_shards!r}")
    spec = spec_of(specs)
    bounds = [0]
    for t in spec:
        bounds.append(bounds[-1] + t.nbytes)
    total = bounds[-1]
    tol = tolerance * total / n_shards
    cuts = [0]
    for k in range(1, n_shards):
        ideal = k * total / n_shards
        j = bisect.bisect_right(bounds, ideal) - 1
        lo, hi = bounds[j], bounds[j + 1]
        near = lo if ideal - lo <= hi - ideal else hi
        if abs(near - ideal) <= tol:
            cut = near
        else:
            item = spec[j].dtype.itemsize
            cut = lo + round((ideal - lo) / item) * item
        cuts.append(max(cut, cuts[-1]))
    cuts.append(total)
    pieces: list[list[Piece]] = [[] for _ in range(n_shards)]
    for j, t in enumerate(spec):
        lo, hi, item = bounds[j], bounds[j + 1], t.dtype.itemsize
        if t.size == 0:
            k = next((k for k in range(n_shards) if lo < cuts[k + 1]), n_shards - 1)
            pieces[k].append(Piece(t.name, 0, 0, True))
            continue
        for k in range(bisect.bisect_right(cuts, lo) - 1, n_shards):
            a, b = max(lo, cuts[k]), min(hi, cuts[k + 1])
            if cuts[k] >= hi:
                break
            if a < b:
                start, stop = (a - lo) // item, (b - lo) // item
                pieces[k].append(Piece(t.name, start, stop, start == 0 and stop == t.size))
    return [Shard(k, tuple(pieces[k]), cuts[k + 1] - cuts[k]) for k in range(n_shards)]


def take_shard(tensors: Mapping[str, np.ndarray], shard: Shard) -> dict[str, np.ndarray]:
    """Shard ``shard`` of a tensor map, keyed by :attr:`Piece.key` (views, no copy)."""
    out: dict[str, np.ndarray] = {}
    for p in shard.pieces:
        arr = tensors.get(p.name)
        if arr is None:
            raise FusionError(f"tensor {p.name!r} of shard {shard.index} is missing")
        if arr.size < p.stop:
            raise FusionError(f"tensor {p.name!r} has {arr.size} elements, shard {shard.index} "
                              f"needs {p.stop}")
        out[p.key] = arr if p.whole else arr.reshape(-1)[p.start:p.stop]
    return out


def assemble_shards(parts: Sequence[Mapping[str, np.ndarray]], shards: Sequence[Shard],
                    specs: Mapping[str, np.ndarray] | Iterable[SpecLike]
                    ) -> dict[str, np.ndarray]:
    """Reassemble fused shards (``parts[i]`` for ``shards[i]``) into whole tensors.

    Names and shapes come from ``specs``; dtypes from the parts (all pieces of
    a tensor must agree).  A tensor held whole by one shard is not copied.
    """
    spec = spec_of(specs)
    if len(parts) != len(shards):
        raise FusionError(f"got {len(parts)} fused shards for {len(shards)} shards")
    found: dict[str, list[tuple[Piece, np.ndarray]]] = {}
    for part, shard in zip(parts, shards, strict=True):
        for p in shard.pieces:
            arr = part.get(p.key)
            if arr is None:
                raise FusionError(f"fused shard {shard.index} lacks tensor {p.key!r}")
            if arr.size != p.stop - p.start:
                raise FusionError(f"fused shard {shard.index}: {p.key!r} has {arr.size} "
                                  f"elements, expected {p.stop - p.start}")
            found.setdefault(p.name, []).append((p, arr))
    out: dict[str, np.ndarray] = {}
    for t in spec:
        got = sorted(found.pop(t.name, []), key=lambda pa: pa[0].start)
        if not got:
            raise FusionError(f"no shard holds tensor {t.name!r}")
        dtypes = {arr.dtype for _, arr in got}
        if len(dtypes) > 1:
            raise FusionError(f"pieces of tensor {t.name!r} have different dtypes")
        if len(got) == 1 and got[0][0].whole:
            out[t.name] = got[0][1].reshape(t.shape)
            continue
        whole = np.empty(t.shape, dtype=got[0][1].dtype)
        flat = whole.reshape(-1)
        pos = 0
        for p, arr in got:
            if p.start != pos:
                raise FusionError(f"shards do not cover tensor {t.name!r} at element {pos}")
            flat[p.start:p.stop] = arr.reshape(-1)
            pos = p.stop
        if pos != t.size:
            raise FusionError(f"shards do not cover tensor {t.name!r} at element {pos}")
        out[t.name] = whole
    if found:
        raise FusionError(f"fused shards hold unknown tensor {next(iter(found))!r}")
    return out
