"""A job's parameter schema: the names, dtypes and shapes every update must have.

Fusion is coordinate-wise (JIT paper 2.1), so an update whose tensors differ
from the model's can never be fused.  The schema is taken once per job from
the initial model (``PUT /v1/jobs/{job}/model``) or, without one, from the
first global model, and every later update is checked against it at upload,
so a malformed update is refused (400) before it is stored instead of sinking
a round at aggregation time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedfaas import codec
from fedfaas.errors import BadRequest

MAX_LISTED = 20
"""Differences named in one error message; the count gives the rest."""


@dataclass(frozen=True)
class ParameterSchema:
    """Ordered ``name -> (dtype name, shape)`` of a model's tensors."""

    tensors: tuple[tuple[str, str, tuple[int, ...]], ...]

    @classmethod
    def of_specs(cls, specs: Iterable[codec.TensorSpec]) -> ParameterSchema:
        """Schema of a decoded header's tensor specs (no tensor data read)."""
        return cls(tuple((s.name, s.dtype, tuple(s.shape)) for s in specs))

    @classmethod
    def of_tensors(cls, tensors: Mapping[str, np.ndarray]) -> ParameterSchema:
        """Schema of named numpy tensors (dtype names as the wire format spells them)."""
        return cls(tuple((name, codec.dtype_name(arr.dtype), tuple(int(d) for d in arr.shape))
                         for name, arr in tensors.items()))

    def to_json(self) -> str:
        """Compact JSON: ``[[name, dtype, shape], ...]``."""
        return json.dumps([[n, d, list(s)] for n, d, s in self.tensors], separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> ParameterSchema:
        """Parse :meth:`to_json`'s output; raises :class:`BadRequest` on anything else."""
        try:
            items = json.loads(raw)
            return cls(tuple((_str(n), _str(d), tuple(_dim(x) for x in s)) for n, d, s in items))
        except (ValueError, TypeError) as exc:
            raise BadRequest(f"invalid parameter schema: {exc}") from None

    def differences(self, other: ParameterSchema) -> list[str]:
        """Every way ``other`` differs from this schema, as readable sentences (empty: equal)."""
        mine = {n: (d, s) for n, d, s in self.tensors}
        theirs = {n: (d, s) for n, d, s in other.tensors}
        out = [f"tensor {n!r} is missing" for n in mine if n not in theirs]
        out += [f"tensor {n!r} is not in the model" for n in theirs if n not in mine]
        for name, (dtype, shape) in mine.items():
            if name not in theirs:
                continue
            got_dtype, got_shape = theirs[name]
            if got_shape != shape:
                out.append(f"tensor {name!r} has shape {list(got_shape)}, expected {list(shape)}")
            if got_dtype != dtype:
                out.append(f"tensor {name!r} has dtype {got_dtype}, expected {dtype}")
        return out

    def require(self, other: ParameterSchema, who: str) -> None:
        """Raise a 400 listing every difference of ``other`` (``who`` names the update)."""
        diffs = self.differences(other)
        if not diffs:
            return
        shown = "; ".join(diffs[:MAX_LISTED])
        more = f"; and {len(diffs) - MAX_LISTED} more" if len(diffs) > MAX_LISTED else ""
        raise BadRequest(f"{who} does not match the job's model: {shown}{more}",
                         code="schema_mismatch", details={"differences": diffs})


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _dim(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"expected a non-negative integer dimension, got {value!r}")
    return value
