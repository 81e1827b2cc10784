"""The threaded, chunked kernels give the same numbers as the obvious numpy code."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas.fusion import PartialAggregate, kernels, measure_t_pair


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threaded_chunked_fusion_matches_numpy(threads: int) -> None:
    # Prepare: big enough for several chunks and for the thread pool to be used
    rng = np.random.default_rng(0)
    sizes = [kernels.CHUNK * 2 + 17, 5, kernels.CHUNK - 3]
    updates = [{f"t{j}": rng.standard_normal(n).astype(np.float32) for j, n in enumerate(sizes)}
               for _ in range(3)]
    weights = [1.0, 2.0, 5.0]
    partial = PartialAggregate(threads=threads)
    # Execute
    partial.add_many(updates, weights, ["a", "b", "c"])
    fused = partial.finalize()
    # Assert
    for name in updates[0]:
        expected = sum(u[name].astype(np.float64) * w for u, w in zip(updates, weights,
                                                                       strict=True)) / 8.0
        np.testing.assert_allclose(fused[name], expected, rtol=1e-5, atol=1e-6)


def test_allocated_arrays_are_aligned_and_disjoint() -> None:
    # Execute
    arrays = kernels.allocate([(3,), (5, 2), (0,), (7,)], [np.float32, np.float64, np.float32,
                                                             np.float32])
    for i, a in enumerate(arrays):
        a[...] = i
    # Assert
    assert [a.shape for a in arrays] == [(3,), (5, 2), (0,), (7,)]
    assert all(a.ctypes.data % 64 == 0 for a in arrays if a.size)
    assert [float(a.flat[0]) for a in arrays if a.size] == [0, 1, 3]


def test_t_pair_is_measured_on_a_model_spec() -> None:
    # Prepare
    model: dict[str, np.ndarray] = {"w": np.zeros((64, 64), np.float32),
                                    "n": np.zeros((), np.int64)}
    # Execute
    t_pair = measure_t_pair(model, repeats=2)
    # Assert
    assert 0.0 < t_pair < 1.0


@pytest.mark.parametrize("weights", [[5.0, 1.0, 3.0, 2.0], [2.0, 2.0, 2.0, 2.0],
                                     [1e-9, 1.0, 1e9, 3.0]])
def test_batches_into_a_live_accumulator_match_numpy(weights: list[float]) -> None:
    # Prepare: a first batch, then a second batch folded into the live accumulator
    rng = np.random.default_rng(1)
    updates: list[dict[str, np.ndarray]] = [
        {"f": rng.standard_normal(50).astype(np.float32),
         "h": rng.standard_normal(50).astype(np.float16),
         "d": rng.standard_normal(50),
         "i": rng.integers(-50, 50, 50).astype(np.int32)} for _ in range(4)]
    partial = PartialAggregate()
    # Execute
    partial.add_many(updates[:2], weights[:2], ["a", "b"])
    partial.add_many(updates[2:], weights[2:], ["c", "d"])
    fused = partial.mean()
    # Assert
    total = sum(weights)
    for name in updates[0]:
        expected = sum(u[name].astype(np.float64) * w for u, w in zip(updates, weights,
                                                                       strict=True)) / total
        np.testing.assert_allclose(fused[name], expected, rtol=1e-5, atol=1e-5)
