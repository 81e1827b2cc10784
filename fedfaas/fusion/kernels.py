"""Cache-blocked, multi-threaded inner loops of the linear fusion rules (JIT paper, Section 5.4).

Fusion is memory-bound: the time to fuse is the time to read the updates once.
The loops here walk the model in chunks of :data:`CHUNK` elements that stay in a
core's L2 cache and, for each chunk, fold every update into the accumulator
before moving on, so main memory sees each update byte read once and the
accumulator written once per call, whatever the number of updates.  Chunks are
split between threads (numpy releases the GIL), which is how the ``C_agg``
cores of an aggregator are used in the paper's
``t_agg = N_parties * t_pair / (C_agg * N_agg)``.

All arrays passed in are flat (1-D) views.  Per-thread scratch buffers (for
dtype conversions) are reused, so the extra memory is ``threads * CHUNK``
elements per accumulator dtype.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

#: Elements per chunk: 1 MiB of float32 accumulator, which fits a 2 MiB L2 with its scratch.
CHUNK = 1 << 18
#: Below this many element-operations threads cost more than they save.
INLINE_WORK = 1 << 21

_Item = tuple[int, int, int]  # (tensor index, start, stop) of a flat range
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_local = threading.local()


@functools.lru_cache(maxsize=1)
def default_threads() -> int:
    """Cores this process may use (the paper's ``C_agg``): affinity, capped by a cgroup quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    try:
        # A container's CPU limit (OpenFaaS "limits.cpu") shows up here, not in the affinity.
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            # A smaller pool another call may still be using is left to finish on its own.
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fusion")
            _pool_size = workers
        return _pool


def shutdown() -> None:
    """Stop the worker threads (restarted on the next call); for process exit and tests."""
    global _pool, _pool_size
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True)
        _pool, _pool_size = None, 0


def scratch(dtype: np.dtype[Any], n: int) -> np.ndarray:
    """This thread's reusable buffer of ``n`` elements of ``dtype``."""
    key = np.dtype(dtype).str
    buf: np.ndarray | None = getattr(_local, key, None)
    if buf is None or buf.size < n:
        buf = np.empty(max(n, CHUNK), dtype=dtype)
        setattr(_local, key, buf)
    return buf[:n]


def allocate(shapes: Sequence[tuple[int, ...]], dtypes: Sequence[npt.DTypeLike]
             ) -> list[np.ndarray]:
    """Uninitialised arrays carved from one buffer per dtype, each 64-byte aligned.

    One large allocation is backed by transparent huge pages (numpy advises them
    from 4 MiB), which makes first-touch page faults about twice as cheap as
    for one allocation per tensor.
    """
    offsets: list[int] = []
    totals: dict[np.dtype[Any], int] = {}
    for shape, dtype in zip(shapes, dtypes, strict=True):
        dt = np.dtype(dtype)
        per_line = max(1, 64 // dt.itemsize)
        start = -(-totals.get(dt, 0) // per_line) * per_line
        offsets.append(start)
        totals[dt] = start + math.prod(shape)
    buffers = {dt: np.empty(n + 64 // dt.itemsize, dt) for dt, n in totals.items()}
    out = []
    for shape, dtype, start in zip(shapes, dtypes, offsets, strict=True):
        buf = buffers[np.dtype(dtype)]
        skew = (-buf.ctypes.data % 64) // buf.itemsize
        out.append(buf[skew + start: skew + start + math.prod(shape)].reshape(shape))
    return out


def reuse_freed_memory(max_bytes: int = 1 << 30) -> bool:
    """Ask glibc to keep freed buffers up to ``max_bytes`` for reuse instead of unmapping them.

    A warm aggregation function allocates an accumulator every round; by
    default glibc returns such large blocks to the kernel and the next round
    pays a page fault per page (about a quarter of the fusion time here).  Call
    once at process start; process-wide, glibc only.  Same as setting
    ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``.  Returns whether
    it took effect.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = libc.mallopt(m_mmap_threshold, ctypes.c_int(min(max_bytes, 2**31 - 1)))
    ok &= libc.mallopt(m_trim_threshold, ctypes.c_int(min(2 * max_bytes, 2**31 - 1)))
    return bool(ok)


def _plan(sizes: Sequence[int], threads: int) -> list[list[_Item]]:
    items = [(k, a, min(a + CHUNK, size)) for k, size in enumerate(sizes)
             for a in range(0, size, CHUNK)]
    if threads <= 1 or len(items) <= 1:
        return [items]
    total = sum(sizes)
    groups: list[list[_Item]] = [[] for _ in range(threads)]
    done, g = 0, 0
    for item in items:
        groups[g].append(item)
        done += item[2] - item[1]
        # Contiguous groups of equal element counts keep each thread's reads sequential.
        if g < threads - 1 and done >= total * (g + 1) / threads:
            g += 1
    return [grp for grp in groups if grp]


def run_chunked(sizes: Sequence[int], fn: Callable[[int, int, int], None], *, work: int,
                threads: int | None = None) -> None:
    """Call ``fn(k, start, stop)`` over every chunk of tensors of ``sizes``, on threads.

    ``work`` (element-operations) decides whether threads are worth starting.
    """
    n = default_threads() if threads is None else max(1, threads)
    # Inside a worker, submitting to the same pool and waiting could deadlock it.
    if work < INLINE_WORK or getattr(_local, "in_pool", False):
        n = 1
    groups = _plan(sizes, n)

    def run(group: list[_Item]) -> None:
        for k, a, b in group:
            fn(k, a, b)

    if len(groups) == 1:
        run(groups[0])
        return

    def run_in_pool(group: list[_Item]) -> None:
        _local.in_pool = True
        run(group)

    # The caller works on the first group instead of waiting idle.
    pool = _executor(len(groups) - 1)
    futures = [pool.submit(run_in_pool, g) for g in groups[1:]]
    try:
        run(groups[0])
    finally:
        wait(futures)
    for fut in futures:
        fut.result()


def weighted_sum(acc: Sequence[np.ndarray], inputs: Sequence[Sequence[np.ndarray]],
                 weights: Sequence[float], *, init: bool, threads: int | None = None) -> None:
    """``acc[k] (=|+=) sum_i weights[i] * inputs[i][k]`` for every tensor ``k``, in place.

    ``acc`` arrays are flat, writable, in the accumulator dtype; ``inputs[i][k]``
    are flat arrays of any supported dtype with the same length.

    Several inputs are folded Horner-style, ``acc = (acc * w_prev / w_i) + x_i``,
    so each update costs one add that reads it from memory plus one multiply
    that stays in cache (none when consecutive weights are equal), and no
    scratch buffer.  Inputs go in ascending weight order, which keeps
    ``w_prev / w_i <= 1`` and the running value bounded.
    """
    sizes = [a.size for a in acc]
    order = sorted(range(len(inputs)), key=lambda i: weights[i])
    # (input index, factor applied to acc before adding it, or None), then the final factor.
    steps: list[tuple[int, float | None]] = []
    current = None if init else 1.0
    for i in order:
        w = weights[i]
        steps.append((i, None if current is None or current == w else current / w))
        current = w
    final = current if current not in (None, 1.0) else None
    axpy = not init and len(inputs) == 1

    def chunk(k: int, a: int, b: int) -> None:
        av = acc[k][a:b]
        dt = av.dtype
        if axpy:
            # One update into a live accumulator: acc += w * x without rescaling acc twice.
            x, w = inputs[0][k][a:b], weights[0]
            if x.dtype == dt and w == 1.0:
                np.add(av, x, out=av)
                return
            s = scratch(dt, b - a)
            if x.dtype == dt:
                np.multiply(x, dt.type(w), out=s)
            else:
                np.copyto(s, x, casting="unsafe")
                if w != 1.0:
                    np.multiply(s, dt.type(w), out=s)
            np.add(av, s, out=av)
            return
        for n, (i, factor) in enumerate(steps):
            x = inputs[i][k][a:b]
            if n == 0 and init:
                np.copyto(av, x, casting="unsafe")
                continue
            if factor is not None:
                np.multiply(av, dt.type(factor), out=av)
            if x.dtype == dt:
                np.add(av, x, out=av)
            else:
                s = scratch(dt, b - a)
                np.copyto(s, x, casting="unsafe")
                np.add(av, s, out=av)
        if final is not None:
            np.multiply(av, dt.type(final), out=av)

    run_chunked(sizes, chunk, work=sum(sizes) * max(1, len(inputs)), threads=threads)


def scale(acc: Sequence[np.ndarray], factor: float, *, threads: int | None = None) -> None:
    """``acc[k] *= factor`` in place."""

    def chunk(k: int, a: int, b: int) -> None:
        av = acc[k][a:b]
        np.multiply(av, av.dtype.type(factor), out=av)

    run_chunked([a.size for a in acc], chunk, work=sum(a.size for a in acc), threads=threads)


def scale_into(out: Sequence[np.ndarray], acc: Sequence[np.ndarray], factor: float, *,
               threads: int | None = None) -> None:
    """``out[k] = cast(acc[k] * factor)``: float outputs are cast, integer/bool ones rounded half up.

    ``out[k]`` may be ``acc[k]`` itself (same dtype) to finalise in place.
    """

    if factor == 1.0 and all(o.dtype == a.dtype and o.ctypes.data == a.ctypes.data
                             for o, a in zip(out, acc, strict=True)):
        return

    def chunk(k: int, a: int, b: int) -> None:
        av, ov = acc[k][a:b], out[k][a:b]
        f = av.dtype.type(factor)
        if ov.dtype == av.dtype:
            np.multiply(av, f, out=ov)
            return
        s = scratch(av.dtype, b - a)
        np.multiply(av, f, out=s)
        if ov.dtype.kind in "iub":
            # Round half up; for bool floor(m + 0.5) is 1 exactly when the mean m >= 0.5.
            np.add(s, 0.5, out=s)
            np.floor(s, out=s)
        np.copyto(ov, s, casting="unsafe")

    run_chunked([a.size for a in acc], chunk, work=sum(a.size for a in acc), threads=threads)
