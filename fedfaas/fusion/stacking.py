"""Bounded-memory helpers for the rules that need all updates at once (JIT paper, Section 2.1).

Median, trimmed mean and Bulyan are coordinate-wise but not linear: every
coordinate needs the values of all N updates together.  Instead of stacking the
whole model N times, the updates are stacked one tensor at a time, in flat
chunks of at most :data:`BUDGET` bytes, so memory stays at one output model
plus one chunk block whatever the model size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from fedfaas.fusion.algorithm import Tensors
from fedfaas.fusion.checks import ModelSpec, accumulator_dtype, cast_back

#: Bytes of one stacked block (N x chunk) in the accumulator dtype.
BUDGET = 64 * 1024**2


def stacked_chunks(arrays: Sequence[np.ndarray], dtype: np.dtype, budget: int = BUDGET
                   ) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, block)`` with ``block[i] = arrays[i].flat[start:stop]`` as ``dtype``.

    The block buffer is reused between chunks; callers may overwrite it.
    """
    flats = [a.reshape(-1) for a in arrays]
    size = flats[0].size if flats else 0
    step = max(1, budget // (max(1, len(flats)) * np.dtype(dtype).itemsize))
    buf = np.empty((len(flats), min(step, size)), dtype=dtype)
    for a in range(0, size, step):
        b = min(a + step, size)
        block = buf[:, : b - a]
        for row, flat in zip(block, flats, strict=True):
            np.copyto(row, flat[a:b], casting="unsafe")
        yield a, b, block


def coordinatewise(updates: Sequence[Tensors], spec: ModelSpec,
                   reduce: Callable[[np.ndarray], np.ndarray], budget: int = BUDGET
                   ) -> dict[str, np.ndarray]:
    """Apply ``reduce`` (N x k block -> k values) to every coordinate, tensor by tensor.

    Results are cast back to each tensor's dtype (integers rounded half up).
    """
    out: dict[str, np.ndarray] = {}
    for t in spec:
        result = np.empty(t.shape, t.dtype)
        flat = result.reshape(-1)
        arrays = [u[t.name] for u in updates]
        for a, b, block in stacked_chunks(arrays, accumulator_dtype(t.dtype), budget):
            cast_back(reduce(block), t.dtype, out=flat[a:b])
        out[t.name] = result
    return out
