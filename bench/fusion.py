"""Fusion throughput and memory against memory bandwidth and Flower (JIT paper, Section 5.4).

Fuses N ResNet-18-sized updates with FedAvg through the path the aggregation
function uses (codec-decoded read-only views folded into a PartialAggregate by
the fedavg algorithm), and in the same run measures

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
from fedfaas.fusion import LinearAlgorithm, get_algorithm, kernels

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


def _best_of(methods: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Best wall time of each method, repetitions interleaved so load drifts hit all alike."""
    best = dict.fromkeys(methods, math.inf)
    for _ in range(reps):
        for name, fn in methods.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
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


def _streaming_read(bodies: Sequence[bytes]) -> None:
    """Read every byte of the bodies once on all cores (an int64 max-reduction, memory-bound).

    Each body is one contiguous buffer, so this is the cheapest possible way to
    touch the same bytes the fusion reads.
    """
    flats = [np.frombuffer(b, dtype=np.int64, count=len(b) // 8) for b in bodies]
    kernels.run_chunked([f.size for f in flats], lambda k, a, b: flats[k][a:b].max(),
                        work=sum(f.size for f in flats))


def run(quick: bool = False) -> dict[str, Any]:
    """Run the fusion benchmark; ``quick`` uses 4 updates of a half-width ResNet-18."""
    n, width, reps = (4, 32, 5) if quick else (10, 64, 7)
    shapes = resnet18_shapes(width)
    params = sum(math.prod(s) for _, s in shapes)
    model_bytes = params * 4
    total_bytes = n * model_bytes
    # What a warm aggregation function does at start; applies to Flower's runs alike.
    tuned = kernels.reuse_freed_memory()
    print(f"fusion: {n} updates x {params / 1e6:.2f}M float32 params in {len(shapes)} tensors "
          f"({model_bytes / 1e6:.1f} MB each), {kernels.default_threads()} threads, "
          f"freed-memory reuse {'on' if tuned else 'unavailable'}", flush=True)
    bodies, weights = make_bodies(n, shapes)
    parties = [f"p{i}" for i in range(n)]
    decoded = [codec.decode(b).tensors for b in bodies]
    algorithm = get_algorithm("fedavg")
    assert isinstance(algorithm, LinearAlgorithm)

    def ours() -> dict[str, np.ndarray]:
        partial = algorithm.new_partial()
        partial.add_many(decoded, weights, parties)
        return algorithm.finalize(partial, consume=True).model

    def ours_streaming() -> dict[str, np.ndarray]:
        partial = algorithm.new_partial()
        for update, w, p in zip(decoded, weights, parties, strict=True):
            partial.add(update, w, p)
        return algorithm.finalize(partial, consume=True).model

    fused = ours()
    expected = {k: sum(np.float64(w) * u[k] for u, w in zip(decoded, weights, strict=True))
                / sum(weights) for k in decoded[0]}
    err = max(float(np.max(np.abs(fused[k] - expected[k]))) for k in expected)
    del fused, expected
    print(f"fusion: ours max abs error vs a float64 reference {err:.2e}", flush=True)

    methods: dict[str, Callable[[], Any]] = {
        "decode": lambda: [codec.decode(b) for b in bodies],
        "limit": lambda: _streaming_read(bodies),
        "ours": ours,
        "ours_streaming": ours_streaming,
    }
    fit_res: list[tuple[Any, Any]] = []
    try:
        from flwr.common import Code, FitRes, Status, ndarrays_to_parameters
        from flwr.server.strategy.aggregate import aggregate, aggregate_inplace
    except ImportError:
        print("fusion: flwr is not installed; Flower figures skipped", flush=True)
    else:
        results = [(list(u.values()), w) for u, w in zip(decoded, weights, strict=True)]
        fit_res = [(None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(arrs), w, {}))
                   for arrs, w in results]
        methods["flower"] = lambda: aggregate(results)
        methods["flower_inplace"] = lambda: aggregate_inplace(fit_res)
    seconds = _best_of(methods, reps)
    body_bytes = sum(len(b) // 8 * 8 for b in bodies)
    gbps = {k: (body_bytes if k == "limit" else total_bytes) / v / GB
            for k, v in seconds.items() if k != "decode"}
    for name, value in gbps.items():
        print(f"fusion: {name:<16} {value:7.2f} GB/s", flush=True)
    print(f"fusion: codec.decode of all updates {seconds['decode'] * 1e3:.1f} ms "
          "(outside the figures: updates arrive decoded)", flush=True)

    peaks = {k: _peak_bytes(methods[k]) / model_bytes
             for k in ("ours", "flower", "flower_inplace") if k in methods}
    for name, value in peaks.items():
        print(f"fusion: {name:<16} peak memory {value:5.2f} x model", flush=True)

    best_flower = max((gbps[k] for k in ("flower", "flower_inplace") if k in gbps), default=None)

    def rounded(value: float | None, digits: int = 3) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "bench": "fusion",
        "ours_gbps": rounded(gbps["ours"], 2),
        "limit_gbps": rounded(gbps["limit"], 2),
        "flower_gbps": rounded(gbps.get("flower")),
        "flower_inplace_gbps": rounded(gbps.get("flower_inplace")),
        "ours_peak_mem_x_model": rounded(peaks["ours"]),
        "flower_peak_mem_x_model": rounded(peaks.get("flower")),
        "ratio_vs_limit": rounded(gbps["ours"] / gbps["limit"]),
        "ratio_vs_flower": None if best_flower is None else rounded(gbps["ours"] / best_flower, 1),
        "updates": n,
        "params": params,
        "ours_streaming_gbps": rounded(gbps["ours_streaming"], 2),
        "flower_inplace_peak_mem_x_model": rounded(peaks.get("flower_inplace")),
        "decode_ms": rounded(seconds["decode"] * 1e3, 2),
        "max_abs_error": err,
        "threads": kernels.default_threads(),
        "freed_memory_reuse": tuned,
    }
