"""Input validation and dtype rules shared by every fusion algorithm (JIT paper, Section 2.1).

Fusion is coordinate-wise over tensors that every party's update holds with the
same name, shape and dtype.  Everything here runs before any maths so that a bad
update is rejected with a :class:`~fedfaas.errors.FusionError` (400) that names
the offending tensor and party, and no partial result is ever computed from it.

Dtype rules (one place, used by every algorithm):

- float32, float16 and bfloat16 accumulate in float32; float64 in float64.
  Results are cast back to the input dtype only at finalisation.
- Integer and bool tensors (e.g. BatchNorm's ``num_batches_tracked``) accumulate
  in float64 and are **rounded half up** back to their own dtype; bool is True
  where the (weighted) mean is >= 0.5.  They are never zeroed nor turned into
  floats, and an average of in-range integers is always in range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedfaas.codec import DTYPES
from fedfaas.errors import BadRequest, FusionError

_SUPPORTED = frozenset(DTYPES.values())
BFLOAT16 = DTYPES["bfloat16"]


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape and dtype of one model tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes in the input dtype."""
        return self.size * self.dtype.itemsize


ModelSpec = tuple[TensorInfo, ...]


def is_float(dtype: np.dtype[Any]) -> bool:
    """True for float16/32/64 and bfloat16."""
    return dtype.kind == "f" or dtype == BFLOAT16


def accumulator_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """The dtype sums of ``dtype`` tensors are kept in (see the module docstring)."""
    if dtype == np.float64 or not is_float(dtype):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def cast_back(values: np.ndarray, dtype: np.dtype[Any], out: np.ndarray | None = None
              ) -> np.ndarray:
    """Cast accumulator-dtype ``values`` to ``dtype`` with the integer rounding rule."""
    if is_float(dtype):
        if out is None:
            return np.asarray(values).astype(dtype)
        out[...] = values
        return out
    # Round half up; for bool means in [0, 1] this is True exactly when the mean >= 0.5.
    result = np.asarray(np.floor(values + 0.5)).astype(dtype)
    if out is None:
        return result
    out[...] = result
    return out


def model_spec(tensors: Mapping[str, np.ndarray], who: str = "update") -> ModelSpec:
    """Spec of an ordered tensor map; rejects unsupported dtypes."""
    infos = []
    for name, arr in tensors.items():
        if not isinstance(arr, np.ndarray):
            raise FusionError(f"{who}: tensor {name!r} is not a numpy array")
        if arr.dtype not in _SUPPORTED:
            raise FusionError(
                f"{who}: tensor {name!r} has unsupported dtype {arr.dtype}; "
                f"supported: {', '.join(DTYPES)}"
            )
        infos.append(TensorInfo(name, tuple(int(d) for d in arr.shape), arr.dtype))
    return tuple(infos)


def party_label(parties: Sequence[str] | None, i: int) -> str:
    """How error messages name the i-th update."""
    return f"party {parties[i]!r}" if parties is not None else f"update #{i}"


def check_matches(spec: ModelSpec, tensors: Mapping[str, np.ndarray], who: str) -> None:
    """Raise :class:`FusionError` unless ``tensors`` has exactly ``spec``'s names, shapes, dtypes."""
    names = {t.name for t in spec}
    missing = [t.name for t in spec if t.name not in tensors]
    if missing:
        raise FusionError(f"{who}: tensor {missing[0]!r} is missing ({len(missing)} missing)")
    extra = [n for n in tensors if n not in names]
    if extra:
        raise FusionError(f"{who}: unexpected tensor {extra[0]!r} ({len(extra)} unexpected)")
    for t in spec:
        arr = tensors[t.name]
        if not isinstance(arr, np.ndarray):
            raise FusionError(f"{who}: tensor {t.name!r} is not a numpy array")
        if arr.shape != t.shape:
            raise FusionError(
                f"{who}: tensor {t.name!r} has shape {list(arr.shape)}, expected {list(t.shape)}"
            )
        if arr.dtype != t.dtype:
            raise FusionError(f"{who}: tensor {t.name!r} has dtype {arr.dtype}, expected {t.dtype}")


def check_updates(updates: Sequence[Mapping[str, np.ndarray]],
                  parties: Sequence[str] | None = None,
                  spec: ModelSpec | None = None) -> ModelSpec:
    """Check that all updates share one spec (the first update's unless ``spec`` is given)."""
    if len(updates) == 0:
        raise FusionError("no updates to fuse")
    if spec is None:
        spec = model_spec(updates[0], party_label(parties, 0))
    for i, update in enumerate(updates):
        check_matches(spec, update, party_label(parties, i))
    return spec


def check_weights(weights: Sequence[float], n: int) -> list[float]:
    """Weights as floats; each must be finite and > 0 (e.g. a number of examples)."""
    if len(weights) != n:
        raise FusionError(f"got {len(weights)} weights for {n} updates")
    out = []
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, int | float | np.integer | np.floating):
            raise FusionError(f"weight #{i} must be a number, got {type(w).__name__}")
        f = float(w)
        if not math.isfinite(f) or f <= 0.0:
            raise FusionError(f"weight #{i} must be finite and > 0, got {w!r}")
        out.append(f)
    return out


def check_parties(parties: Sequence[str] | None, n: int) -> list[str]:
    """Party ids as a list of distinct non-empty strings (``"0"``, ``"1"``, ... when absent)."""
    if parties is None:
        return [str(i) for i in range(n)]
    if len(parties) != n:
        raise FusionError(f"got {len(parties)} party ids for {n} updates")
    seen: set[str] = set()
    for p in parties:
        if not isinstance(p, str) or not p:
            raise FusionError(f"party id {p!r} must be a non-empty string")
        if p in seen:
            raise FusionError(f"party {p!r} appears twice among the updates")
        seen.add(p)
    return list(parties)


def check_param(name: str, value: Any, *, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> Any:
    """Validate one algorithm parameter; raises :class:`BadRequest` naming it."""
    kind = "an integer" if integer else "a number"
    ok_types: tuple[type, ...] = (int, np.integer) if integer else (int, float, np.integer,
                                                                     np.floating)
    if isinstance(value, bool) or not isinstance(value, ok_types):
        raise BadRequest(f"parameter {name!r} must be {kind}, got {value!r}")
    v = int(value) if integer else float(value)
    if not math.isfinite(v):
        raise BadRequest(f"parameter {name!r} must be finite, got {value!r}")
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise BadRequest(f"parameter {name!r} must be {'>' if lo_open else '>='} {lo}, got {v}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise BadRequest(f"parameter {name!r} must be {'<' if hi_open else '<='} {hi}, got {v}")
    return v
