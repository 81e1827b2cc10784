"""Vector maths over one round's client updates, shared by the P2 workloads (FLStore Table 1).

Updates are never stacked into one ``clients x parameters`` matrix: every
statistic is accumulated block by block over the tensors (Gram matrix,
coordinate-wise median products, CountSketch projections), so memory stays at
one block of a few MiB beyond the cached updates themselves.  bfloat16 and
float16 tensors are widened per block.  When a base model (the global model
the round started from) is given, the vectors are the deltas ``w_k - w_base``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from fedfaas.codec import DTYPES
from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads.base import ClientUpdate

#: Elements per block (per client row x columns); 4 Mi float64 = 32 MiB.
BLOCK_ELEMS = 1 << 22
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


def nonfinite_clients(updates: Sequence[ClientUpdate], names: Sequence[str]) -> list[int]:
    """Indices of the updates holding NaN or infinite values in ``names``."""
    bad: list[int] = []
    for i, u in enumerate(updates):
        for name in names:
            arr = u.tensors[name]
            if not np.isfinite(arr.astype(np.float32) if arr.dtype == _BF16 else arr).all():
                bad.append(i)
                break
    return bad


def reject_nonfinite(workload: str, updates: Sequence[ClientUpdate], names: Sequence[str]
                     ) -> None:
    """Raise BadRequest naming the clients whose updates hold NaN or infinity."""
    bad = nonfinite_clients(updates, names)
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
                dtype: type[np.floating[Any]] = np.float64) -> np.ndarray:
    """``G[i, j] = <x_i, x_j>`` over the flattened updates, accumulated in float64."""
    n = len(updates)
    gram = np.zeros((n, n), dtype=np.float64)
    for block in iter_blocks(updates, names, base, dtype):
        gram += (block @ block.T).astype(np.float64)
    return gram


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
    out: dict[str, np.ndarray] = {}
    for name, ref in updates[0].tensors.items():
        acc = np.zeros(ref.shape, dtype=np.float64)
        for wi, u in zip(w, updates, strict=True):
            if wi:
                acc += wi * np.asarray(u.tensors[name], dtype=np.float64)
        if is_float(ref.dtype):
            out[name] = acc.astype(ref.dtype)
        else:
            out[name] = np.rint(acc).astype(ref.dtype)
    return out


def count_sketch(updates: Sequence[ClientUpdate], names: Sequence[str],
                 base: Mapping[str, np.ndarray] | None, dim: int, seed: int) -> np.ndarray:
    """Project the updates to ``dim`` columns with a seeded CountSketch (Charikar et al. 2002).

    Each coordinate goes to one hashed column with a random sign, so inner
    products and distances are preserved in expectation at O(parameters)
    cost, which a dense Gaussian projection of an 11M-parameter model is not.
    """
    n = len(updates)
    out = np.zeros((n, dim), dtype=np.float64)
    for t, name in enumerate(names):
        flats = [np.asarray(u.tensors[name]).reshape(-1) for u in updates]
        base_flat = None if base is None else np.asarray(base[name]).reshape(-1)
        for c, start in enumerate(range(0, flats[0].size, SKETCH_CHUNK)):
            stop = min(start + SKETCH_CHUNK, flats[0].size)
            rng = np.random.default_rng([seed, t, c])
            cols = rng.integers(0, dim, stop - start)
            signs = rng.choice(np.array([-1.0, 1.0]), stop - start)
            shift = 0.0 if base_flat is None else base_flat[start:stop].astype(np.float64)
            for i, flat in enumerate(flats):
                vals = (flat[start:stop].astype(np.float64) - shift) * signs
                out[i] += np.bincount(cols, weights=vals, minlength=dim)
    return out


def update_matrix(updates: Sequence[ClientUpdate], names: Sequence[str],
                  base: Mapping[str, np.ndarray] | None, max_dim: int, seed: int
                  ) -> tuple[np.ndarray, bool]:
    """The updates as a dense float64 matrix, CountSketched to ``max_dim`` columns if longer.

    Returns the matrix and whether it was projected.
    """
    if dimension(updates, names) <= max_dim:
        return np.concatenate(list(iter_blocks(updates, names, base)), axis=1), False
    return count_sketch(updates, names, base, max_dim, seed), True


def coordinate_median(block: np.ndarray) -> np.ndarray:
    """Median of each column of a ``(clients, columns)`` block.

    For a round-sized number of rows a sort along the rows is ~3x faster than
    ``np.median``, which partitions column by column.
    """
    n = block.shape[0]
    if n > 64:
        return np.median(block, axis=0)
    s = np.sort(block, axis=0)
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

