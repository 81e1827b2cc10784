"""Offline estimate of ``t_pair`` for the aggregation-time model (JIT paper, Section 5.4).

"``t_pair`` on a single CPU core can be easily computed offline on the
aggregator before the FL job starts - by randomly generating model updates ...
and measuring the time taken to fuse pairs of these randomly generated model
updates."  :func:`measure_t_pair` does exactly that with the same kernel the
aggregation functions use, so ``t_agg = N_parties * t_pair / (C_agg * N_agg)``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import numpy as np

from fedfaas.errors import BadRequest
from fedfaas.fusion.checks import ModelSpec, is_float
from fedfaas.fusion.partial import PartialAggregate
from fedfaas.fusion.shards import SpecLike, spec_of


def random_update(spec: ModelSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random update of the given spec (normal floats, small integers)."""
    out: dict[str, np.ndarray] = {}
    for t in spec:
        if is_float(t.dtype):
            out[t.name] = rng.standard_normal(t.shape, dtype=np.float32).astype(t.dtype)
        else:
            out[t.name] = rng.integers(0, 2, size=t.shape).astype(t.dtype)
    return out


def measure_t_pair(specs: Mapping[str, np.ndarray] | Iterable[SpecLike], *, threads: int = 1,
                   repeats: int = 3, seed: int = 0) -> float:
    """Seconds to fold one more update of this model into an aggregate (best of ``repeats``).

    ``threads=1`` gives the paper's single-core ``t_pair``.
    """
    if repeats < 1:
        raise BadRequest("repeats must be >= 1")
    spec = spec_of(specs)
    rng = np.random.default_rng(seed)
    first, second = random_update(spec, rng), random_update(spec, rng)
    best = float("inf")
    for r in range(repeats):
        partial = PartialAggregate(spec, threads=threads)
        partial.add(first, 1.0, "a")
        start = time.perf_counter()
        partial.add(second, 2.0, f"b{r}")
        best = min(best, time.perf_counter() - start)
    return best
