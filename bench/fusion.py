"""Fusion throughput and memory against memory bandwidth and Flower (JIT paper, Section 5.4).

Fuses N ResNet-18-sized updates with FedAvg through the path the aggregation
function uses (codec-decoded read-only views folded into a PartialAggregate by
the fedavg strategy), and in the same run measures

- the physical limit: a streaming read of the same bytes on all cores;
- Flower 1.28's ``aggregate`` and ``aggregate_inplace`` on the same data
  (``aggregate_inplace`` from real ``FitRes`` objects, as Flower's server runs it);
- peak memory above the inputs, as a multiple of one model, with tracemalloc
  (numpy reports its buffers to it) for ours and Flower's alike.

GB/s is bytes of updates read per second, best of a few repetitions.
"""

from __future__ import annotations

import math
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fedfaas import codec
from fedfaas.fusion import get_strategy, kernels

GB = 1e9


def resnet18_shapes(width: int = 64, classes: int = 1000) -> list[tuple[str, tuple[int, ...]]]:
    """Parameter names and shapes of ResNet-18 (62 tensors, 11.7M parameters at width 64)."""
    shapes: list[tuple[str, tuple[int, ...]]] = [("conv1.weight", (width, 3, 7, 7))]
    shapes += [("bn1.weight", (width,)), ("bn1.bias", (width,))]
    c_in = width
    for layer, mult in enumerate((1, 2, 4, 8), start=1):
        c = width * mult
        for block in range(2):
            p = f"layer{layer}.{block}"
            first_in = c_in if block == 0 else c
            shapes += [(f"{p}.conv1.weight", (c, first_in, 3, 3)),
                       (f"{p}.bn1.weight", (c,)), (f"{p}.bn1.bias", (c,)),
                       (f"{p}.conv2.weight", (c, c, 3, 3)),
                       (f"{p}.bn2.weight", (c,)), (f"{p}.bn2.bias", (c,))]
            if block == 0 and first_in != c:
                shapes += [(f"{p}.downsample.0.weight", (c, first_in, 1, 1)),
                           (f"{p}.downsample.1.weight", (c,)), (f"{p}.downsample.1.bias", (c,))]
        c_in = c
    shapes += [("fc.weight", (classes, c_in)), ("fc.bias", (classes,))]
    return shapes


def make_bodies(n: int, shapes: Sequence[tuple[str, tuple[int, ...]]], seed: int = 0
                ) -> tuple[list[bytes], list[int]]:
    """``n`` encoded random float32 updates and their numbers of examples."""
    rng = np.random.default_rng(seed)
    bodies = []
    for i in range(n):
        tensors = {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in shapes}
        bodies.append(codec.encode(tensors, {"party": f"p{i}"}))
    weights = [int(w) for w in rng.integers(100, 10_000, size=n)]
    return bodies, weights


def _best(fn: Callable[[], Any], reps: int) -> float:
    best = math.inf
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated by ``fn`` above what was live when it started."""
    kernels.shutdown()  # per-thread scratch must be allocated inside the measurement
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _streaming_read(updates: Sequence[dict[str, np.ndarray]]) -> None:
    """Read every byte once on all cores (a max-reduction, which is memory-bound)."""
    flats = [a.reshape(-1) for u in updates for a in u.values()]
    kernels.run_chunked([f.size for f in flats], lambda k, a, b: flats[k][a:b].max(),
                        work=sum(f.size for f in flats))


def run(quick: bool = False) -> dict[str, Any]:
    """Run the fusion benchmark; ``quick`` uses 4 updates of a half-width ResNet-18."""
    n, width, reps = (4, 32, 3) if quick else (10, 64, 5)
    shapes = resnet18_shapes(width)
    params = sum(math.prod(s) for _, s in shapes)
    model_bytes = params * 4
    total_bytes = n * model_bytes
    print(f"fusion: {n} updates x {params / 1e6:.2f}M float32 params in {len(shapes)} tensors "
          f"({model_bytes / 1e6:.1f} MB each), {kernels.default_threads()} threads", flush=True)
    bodies, weights = make_bodies(n, shapes)
    parties = [f"p{i}" for i in range(n)]
    decoded = [codec.decode(b).tensors for b in bodies]
    strategy = get_strategy("fedavg")

    def ours() -> dict[str, np.ndarray]:
        updates = [codec.decode(b).tensors for b in bodies]
        partial = strategy.new_partial()
        partial.add_many(updates, weights, parties)
        return strategy.finalize(partial, consume=True).model

    def ours_streaming() -> dict[str, np.ndarray]:
        partial = strategy.new_partial()
        for body, w, p in zip(bodies, weights, parties, strict=True):
            partial.add(codec.decode(body).tensors, w, p)
        return strategy.finalize(partial, consume=True).model

    result_ours = ours()
    expected = {k: sum(np.float64(w) * u[k] for u, w in zip(decoded, weights, strict=True))
                / sum(weights) for k in decoded[0]}
    err = max(float(np.max(np.abs(result_ours[k] - expected[k]))) for k in expected)
    print(f"fusion: ours max abs error vs float64 reference {err:.2e}", flush=True)

    figures: dict[str, float | None] = {}
    figures["limit"] = total_bytes / _best(lambda: _streaming_read(decoded), reps) / GB
    print(f"fusion: streaming read (limit)  {figures['limit']:.1f} GB/s", flush=True)
    figures["ours"] = total_bytes / _best(ours, reps) / GB
    print(f"fusion: ours (batch)            {figures['ours']:.1f} GB/s", flush=True)
    figures["ours_streaming"] = total_bytes / _best(ours_streaming, reps) / GB
    print(f"fusion: ours (one at a time)    {figures['ours_streaming']:.1f} GB/s", flush=True)
    ours_peak = _peak_bytes(ours) / model_bytes
    print(f"fusion: ours peak memory        {ours_peak:.2f} x model", flush=True)

    flower_peak: float | None = None
    inplace_peak: float | None = None
    try:
        from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
        from flwr.server.strategy.aggregate import aggregate, aggregate_inplace
    except ImportError:
        print("fusion: flwr is not installed; Flower figures skipped", flush=True)
        figures["flower"] = figures["flower_inplace"] = None
    else:
        lists = [list(u.values()) for u in decoded]
        results = list(zip(lists, weights, strict=True))
        fit_res = [(None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrs), w, {}))
                   for arrs, w in results]
        flower_reps = max(2, reps // 2)
        figures["flower"] = total_bytes / _best(lambda: aggregate(results), flower_reps) / GB
        print(f"fusion: flower aggregate        {figures['flower']:.2f} GB/s", flush=True)
        figures["flower_inplace"] = total_bytes / _best(
            lambda: aggregate_inplace(fit_res), flower_reps) / GB  # type: ignore[arg-type]
        print(f"fusion: flower aggregate_inplace {figures['flower_inplace']:.2f} GB/s", flush=True)
        flower_peak = _peak_bytes(lambda: aggregate(results)) / model_bytes
        inplace_peak = _peak_bytes(
            lambda: aggregate_inplace(fit_res)) / model_bytes  # type: ignore[arg-type]
        print(f"fusion: flower peak memory      {flower_peak:.2f} x model (aggregate), "
              f"{inplace_peak:.2f} x model (aggregate_inplace)", flush=True)

    best_flower = max((v for k, v in figures.items() if k.startswith("flower") and v), default=None)
    ours_gbps, limit_gbps = figures["ours"], figures["limit"]
    assert ours_gbps is not None and limit_gbps is not None
    return {
        "bench": "fusion",
        "ours_gbps": round(ours_gbps, 2),
        "ours_streaming_gbps": round(figures["ours_streaming"] or 0.0, 2),
        "limit_gbps": round(limit_gbps, 2),
        "flower_gbps": None if figures["flower"] is None else round(figures["flower"], 3),
        "flower_inplace_gbps": (None if figures["flower_inplace"] is None
                                else round(figures["flower_inplace"], 3)),
        "ours_peak_mem_x_model": round(ours_peak, 3),
        "flower_peak_mem_x_model": None if flower_peak is None else round(flower_peak, 3),
        "flower_inplace_peak_mem_x_model": (None if inplace_peak is None
                                            else round(inplace_peak, 3)),
        "ratio_vs_limit": round(ours_gbps / limit_gbps, 3),
        "ratio_vs_flower": None if not best_flower else round(ours_gbps / best_flower, 1),
        "updates": n,
        "params": params,
        "threads": kernels.default_threads(),
        "max_abs_error": err,
    }
