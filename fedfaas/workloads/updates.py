"""Vector maths over one round's client updates, shared by the P2 workloads (FLStore Table 1).

Updates are never stacked into one ``clients x parameters`` matrix: every
statistic is accumulated block by block over the tensors (Gram matrix,
coordinate-wise median products, CountSketch projections), so memory stays at
one block that fits a core's L2 cache beyond the cached updates themselves.
bfloat16 and float16 tensors are widened per block.  When a base model (the
global model the round started from) is given, the vectors are the deltas
``w_k - w_base``.

Helpers that take ``prepared`` (a :class:`~fedfaas.workloads.prepared.Prepared`)
keep their statistic there, keyed by the data it comes from, so that a cache
function computes it once per held round instead of once per request.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from fedfaas.codec import DTYPES
from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads.base import ClientUpdate
from fedfaas.workloads.prepared import Prepared, memo

#: Elements per block (client rows x columns); 256 Ki float64 = 2 MiB stays in L2.
BLOCK_ELEMS = 1 << 18
#: Elements per chunk of the weighted sums (64 Ki float64 = 512 KiB).
SUM_CHUNK = 1 << 16
#: Columns per CountSketch chunk; fixed so a client's sketch does not depend on the round size.
SKETCH_CHUNK = 1 << 16
_BF16 = DTYPES["bfloat16"]


def is_float(dtype: np.dtype[Any]) -> bool:
    """True for float16/32/64 and bfloat16 (which numpy reports as kind 'V')."""
    return np.dtype(dtype).kind == "f" or np.dtype(dtype) == _BF16


def is_numeric(dtype: np.dtype[Any]) -> bool:
    """True for the float, integer and bool dtypes the codec carries."""
    return is_float(dtype) or np.dtype(dtype).kind in "iub"


def check_round_updates(workload: str, updates: Sequence[ClientUpdate], *, min_clients: int,
                        base: Mapping[str, np.ndarray] | None = None) -> list[str]:
    """Validate a round's updates and return the names of their floating-point tensors.

    Checks: at least ``min_clients`` updates, distinct client names, one round,
    the same tensor names and shapes in every update (and in ``base``), numeric
    dtypes.  Raises NotFound when there are no updates, BadRequest otherwise.
    """
    if not updates:
        raise NotFound(f"{workload}: no client updates are available for this round")
    if len(updates) < min_clients:
        raise BadRequest(f"{workload} needs at least {min_clients} client updates, "
                         f"got {len(updates)}")
    names = [u.client for u in updates]
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        raise BadRequest(f"{workload}: client(s) {', '.join(dupes)} appear more than once")
    rounds = {u.round for u in updates if u.round is not None}
    if len(rounds) > 1:
        raise BadRequest(f"{workload}: updates come from several rounds {sorted(rounds)}")
    ref = updates[0].tensors
    if not ref:
        raise BadRequest(f"{workload}: the update of {updates[0].client!r} holds no tensors")
    for name, arr in ref.items():
        if not is_numeric(arr.dtype):
            raise BadRequest(f"{workload}: tensor {name!r} has non-numeric dtype {arr.dtype}")
    for u in updates[1:]:
        _check_same_layout(workload, ref, u.tensors, f"the update of {u.client!r}",
                           f"{updates[0].client!r}'s")
    floats = [k for k, v in ref.items() if is_float(v.dtype)]
    if not floats:
        raise BadRequest(f"{workload}: the updates hold no floating-point tensors")
    if base is not None:
        missing = [k for k in floats if k not in base]
        if missing:
            raise BadRequest(f"{workload}: the base model lacks tensor(s) {missing[:5]}")
        for k in floats:
            if tuple(base[k].shape) != tuple(ref[k].shape):
                raise BadRequest(f"{workload}: base model tensor {k!r} has shape "
                                 f"{tuple(base[k].shape)}, updates have {tuple(ref[k].shape)}")
    return floats


def _check_same_layout(workload: str, ref: Mapping[str, np.ndarray],
                       other: Mapping[str, np.ndarray], what: str, ref_name: str) -> None:
    if set(other) != set(ref):
        extra = sorted(set(other) - set(ref))[:5]
        lost = sorted(set(ref) - set(other))[:5]
        raise BadRequest(f"{workload}: {what} has different tensors than {ref_name} "
                         f"(missing {lost}, extra {extra})")
    for name, arr in ref.items():
        if tuple(other[name].shape) != tuple(arr.shape):
            raise BadRequest(f"{workload}: tensor {name!r} of {what} has shape "
                             f"{tuple(other[name].shape)}, expected {tuple(arr.shape)}")
        if not is_numeric(other[name].dtype):
            raise BadRequest(f"{workload}: tensor {name!r} of {what} is not numeric")


def names_signature(names: Sequence[str]) -> tuple[int, int]:
    """A short key for a list of tensor names (memo keys)."""
    return len(names), hash(tuple(names))


def is_finite(tensors: Mapping[str, np.ndarray], names: Sequence[str]) -> bool:
    """True when no tensor of ``names`` holds NaN or infinity."""
    for name in names:
        arr = tensors[name]
        # max and min are finite only if every element is (NaN propagates): two
        # reductions, no boolean temporary of the tensor's size.
        if arr.size == 0:
            continue
        a = arr.astype(np.float32) if arr.dtype == _BF16 else arr
        if not (np.isfinite(a.max()) and np.isfinite(a.min())):
            return False
    return True


def nonfinite_clients(updates: Sequence[ClientUpdate], names: Sequence[str],
                      prepared: Prepared | None = None) -> list[int]:
    """Indices of the updates holding NaN or infinite values in ``names``."""
    sig = names_signature(names)

    def finite(u: ClientUpdate) -> bool:
        return memo(prepared, ("finite", sig), [u.tensors], lambda: is_finite(u.tensors, names))

    return [i for i, u in enumerate(updates) if not finite(u)]


def reject_nonfinite(workload: str, updates: Sequence[ClientUpdate], names: Sequence[str],
                     prepared: Prepared | None = None) -> None:
    """Raise BadRequest naming the clients whose updates hold NaN or infinity."""
    bad = nonfinite_clients(updates, names, prepared)
    if bad:
        who = ", ".join(updates[i].client for i in bad)
        raise BadRequest(f"{workload}: update(s) of {who} hold NaN or infinite values; "
                         "run malicious-filter to screen them")


def dimension(updates: Sequence[ClientUpdate], names: Sequence[str]) -> int:
    """Length of the flattened update vector."""
    return int(sum(updates[0].tensors[k].size for k in names))


def iter_blocks(updates: Sequence[ClientUpdate], names: Sequence[str],
                base: Mapping[str, np.ndarray] | None = None,
                dtype: type[np.floating[Any]] = np.float64,
                block_elems: int = BLOCK_ELEMS) -> Iterator[np.ndarray]:
    """Consecutive ``(clients, columns)`` blocks of the flattened update vectors."""
    n = len(updates)
    step = max(1, block_elems // n)
    for name in names:
        flats = [np.asarray(u.tensors[name]).reshape(-1) for u in updates]
        base_flat = None if base is None else np.asarray(base[name]).reshape(-1)
        for start in range(0, flats[0].size, step):
            stop = min(start + step, flats[0].size)
            block = np.empty((n, stop - start), dtype=dtype)
            for i, flat in enumerate(flats):
                block[i] = flat[start:stop]
            if base_flat is not None:
                block -= base_flat[start:stop].astype(dtype)
            yield block


def gram_matrix(updates: Sequence[ClientUpdate], names: Sequence[str],
                base: Mapping[str, np.ndarray] | None = None,
                dtype: type[np.floating[Any]] = np.float64,
                prepared: Prepared | None = None) -> np.ndarray:
    """``G[i, j] = <x_i, x_j>`` over the flattened updates, accumulated in float64."""

    def compute() -> np.ndarray:
        n = len(updates)
        gram = np.zeros((n, n), dtype=np.float64)
        for block in iter_blocks(updates, names, base, dtype):
            gram += (block @ block.T).astype(np.float64)
        return gram

    what = ("gram", np.dtype(dtype).name, names_signature(names))
    return memo(prepared, what, [*(u.tensors for u in updates), base], compute).copy()


def sq_distances(gram: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances from a Gram matrix (clipped at 0 against rounding)."""
    sq = np.diag(gram)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)


def cosine_from_gram(gram: np.ndarray) -> np.ndarray:
    """Cosine similarities from a Gram matrix; a zero vector has similarity 0 to everything."""
    norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
    denom = np.outer(norms, norms)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(denom > 0, gram / np.where(denom > 0, denom, 1.0), 0.0)
    return np.clip(cos, -1.0, 1.0)


def example_weights(updates: Sequence[ClientUpdate], weighting: str = "num_examples"
                    ) -> tuple[np.ndarray, str]:
    """FedAvg weights summing to 1 and the weighting actually used.

    ``"num_examples"`` uses each update's ``meta["num_examples"]`` when every
    update has one, else falls back to ``"uniform"``.
    """
    counts = [u.num_examples for u in updates]
    if weighting == "num_examples" and all(c is not None for c in counts):
        w = np.asarray(counts, dtype=np.float64)
        return w / w.sum(), "num_examples"
    return np.full(len(updates), 1.0 / len(updates)), "uniform"


def fedavg(updates: Sequence[ClientUpdate], weights: Sequence[float] | np.ndarray
           ) -> dict[str, np.ndarray]:
    """Weighted average of whole updates (McMahan et al. 2017), tensor by tensor.

    Weights are normalised here.  Float tensors keep their dtype; integer
    tensors (e.g. ``num_batches_tracked``) get the rounded weighted mean
    rather than being zeroed.
    """
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != len(updates) or len(w) == 0 or np.any(w < 0) or w.sum() <= 0:
        raise BadRequest("FedAvg weights must be non-negative, one per update, not all zero")
    w = w / w.sum()
    used = [(float(wi), u) for wi, u in zip(w, updates, strict=True) if wi]
    acc = np.empty(SUM_CHUNK, dtype=np.float64)
    tmp = np.empty(SUM_CHUNK, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for name, ref in updates[0].tensors.items():
        flats = [(wi, np.asarray(u.tensors[name]).reshape(-1)) for wi, u in used]
        res = np.empty(ref.size, dtype=ref.dtype)
        # Chunks that stay in L2: the same float64 sum of ``w_i * x_i`` as a
        # whole-tensor loop (same order, same rounding), without its temporaries.
        for start in range(0, ref.size, SUM_CHUNK):
            stop = min(start + SUM_CHUNK, ref.size)
            a, t = acc[:stop - start], tmp[:stop - start]
            a.fill(0.0)
            for wi, flat in flats:
                t[:] = flat[start:stop]
                t *= wi
                a += t
            res[start:stop] = a if is_float(ref.dtype) else np.rint(a)
        out[name] = res.reshape(ref.shape)
    return out


def _sketch_rows(vectors: Sequence[Mapping[str, np.ndarray]], names: Sequence[str], dim: int,
                 seed: int) -> np.ndarray:
    """CountSketch of each vector (rows), one pass over the hashes for all of them."""
    m = len(vectors)
    out = np.zeros(m * dim, dtype=np.float64)
    offsets = (np.arange(m) * dim)[:, None]
    for t, name in enumerate(names):
        flats = [np.asarray(v[name]).reshape(-1) for v in vectors]
        size = flats[0].size
        for c, start in enumerate(range(0, size, SKETCH_CHUNK)):
            stop = min(start + SKETCH_CHUNK, size)
            rng = np.random.default_rng([seed, t, c])
            cols = rng.integers(0, dim, stop - start)
            signs = rng.choice(np.array([-1.0, 1.0]), stop - start)
            block = np.empty((m, stop - start), dtype=np.float64)
            for i, flat in enumerate(flats):
                block[i] = flat[start:stop]
            block *= signs
            # One bincount for every row: row i's columns are shifted by i * dim.
            out += np.bincount((cols[None, :] + offsets).reshape(-1), weights=block.reshape(-1),
                               minlength=m * dim)
    return out.reshape(m, dim)


def count_sketch(updates: Sequence[ClientUpdate], names: Sequence[str],
                 base: Mapping[str, np.ndarray] | None, dim: int, seed: int,
                 prepared: Prepared | None = None) -> np.ndarray:
    """Project the updates to ``dim`` columns with a seeded CountSketch (Charikar et al. 2002).

    Each coordinate goes to one hashed column with a random sign, so inner
    products and distances are preserved in expectation at O(parameters)
    cost, which a dense Gaussian projection of an 11M-parameter model is not.
    The sketch is linear, so the deltas' sketches are ``S(w_k) - S(w_base)``:
    each held vector is sketched once and kept in ``prepared``.
    """
    vectors: list[Mapping[str, np.ndarray]] = [u.tensors for u in updates]
    if base is not None:
        vectors.append(base)
    what = ("sketch", dim, seed, names_signature(names))
    rows: list[np.ndarray | None] = [None] * len(vectors)
    keys = [prepared.key_of(v) if prepared is not None else None for v in vectors]
    for i, key in enumerate(keys):
        if prepared is not None and key is not None:
            rows[i] = prepared.lookup((*what, key))
    todo = [i for i, r in enumerate(rows) if r is None]
    if todo:
        fresh = _sketch_rows([vectors[i] for i in todo], names, dim, seed)
        for j, i in enumerate(todo):
            rows[i] = fresh[j]
            key = keys[i]
            if prepared is not None and key is not None:
                prepared.store((*what, key), [key], fresh[j].copy())
    out = np.stack([r for r in rows if r is not None])
    return out[:len(updates)] - out[len(updates)] if base is not None else out


def update_matrix(updates: Sequence[ClientUpdate], names: Sequence[str],
                  base: Mapping[str, np.ndarray] | None, max_dim: int, seed: int,
                  prepared: Prepared | None = None) -> tuple[np.ndarray, bool]:
    """The updates as a dense float64 matrix, CountSketched to ``max_dim`` columns if longer.

    Returns the matrix and whether it was projected.
    """
    if dimension(updates, names) <= max_dim:
        return np.concatenate(list(iter_blocks(updates, names, base)), axis=1), False
    return count_sketch(updates, names, base, max_dim, seed, prepared), True


#: Largest number of rows sorted by a comparator network; beyond it ``np.median``.
NETWORK_MAX_ROWS = 32


@functools.lru_cache(maxsize=NETWORK_MAX_ROWS)
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort comparators ``(i, j)``, ``i < j``, for ``n`` rows.

    Built for the next power of two; comparators that touch the padding rows
    (think +inf) never swap and are dropped.
    """
    size = 1
    while size < n:
        size *= 2
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


def coordinate_median(block: np.ndarray) -> np.ndarray:
    """Median of each column of a finite ``(clients, columns)`` block.

    For a round-sized number of rows the columns are sorted at once by a
    comparator network of whole-row ``minimum``/``maximum`` operations, which
    is several times faster than ``np.sort`` along a strided axis (or
    ``np.median``, which partitions column by column); the result is the same.
    """
    n = block.shape[0]
    if n > NETWORK_MAX_ROWS:
        return np.median(block, axis=0)
    s = np.array(block, dtype=np.result_type(block.dtype, np.float32), copy=True)
    tmp = np.empty_like(s[0])
    for i, j in sorting_network(n):
        np.minimum(s[i], s[j], out=tmp)
        np.maximum(s[i], s[j], out=s[j])
        s[i] = tmp
    mid = n // 2
    return s[mid] if n % 2 else 0.5 * (s[mid - 1] + s[mid])


def robust_z(values: np.ndarray, min_scale: float = 0.0) -> np.ndarray:
    """Modified z-scores ``(x - median) / max(1.4826 MAD, min_scale)`` (Iglewicz & Hoaglin 1993).

    When the MAD is 0 the mean absolute deviation (scaled by 1.2533) stands
    in; when every scale is 0 every score is 0.  ``min_scale`` keeps a tight
    honest cluster from turning small differences into large scores.
    """
    x = np.asarray(values, dtype=np.float64)
    med = np.median(x)
    dev = np.abs(x - med)
    scale = 1.4826 * float(np.median(dev))
    if scale <= 0:
        scale = 1.2533 * float(np.mean(dev))
    scale = max(scale, min_scale)
    if scale <= 0:
        return np.zeros_like(x)
    return (x - med) / scale

