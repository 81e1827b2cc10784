"""Every algorithm on real torch state_dicts of a small CNN with BatchNorm."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
from fusion_helpers import SmallCNN, Tensors, reference_mean, train_parties

from fedfaas import codec
from fedfaas.fusion import get_algorithm

ALL = ["fedavg", "fedprox", "fedsgd", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "median",
       "trimmed-mean", "krum", "multi-krum", "bulyan"]


def _fuse(name: str, updates: list[Tensors]) -> dict[str, np.ndarray]:
    algorithm = get_algorithm(name)
    return algorithm.fuse(updates, [10, 20, 30, 40][:len(updates)],
                         global_model=updates[0]).model


@pytest.mark.parametrize("name", ALL)
def test_result_loads_into_the_model_with_dtypes_and_order_kept(
        name: str, cnn_updates: list[Tensors]) -> None:
    # Execute
    fused = _fuse(name, cnn_updates)
    # Assert
    assert list(fused) == list(cnn_updates[0])
    for k, arr in fused.items():
        assert arr.dtype == cnn_updates[0][k].dtype and arr.shape == cnn_updates[0][k].shape
        assert np.all(np.isfinite(arr.astype(np.float64)))
    model = SmallCNN()
    model.load_state_dict(codec.to_state_dict(fused), strict=True)
    assert model.bn.num_batches_tracked is not None
    assert model.bn.num_batches_tracked.dtype == torch.int64


def test_fedavg_of_state_dicts_matches_the_reference(cnn_updates: list[Tensors]) -> None:
    # Execute
    fused = _fuse("fedavg", cnn_updates)
    # Assert: num_batches_tracked are 1..4, weighted mean 3.0
    ref = reference_mean(cnn_updates, [10, 20, 30, 40])
    for k in fused:
        if k.endswith("num_batches_tracked"):
            assert fused[k].dtype == np.int64 and int(fused[k]) == 3
        else:
            np.testing.assert_allclose(fused[k], ref[k], rtol=1e-5, atol=1e-7)


def test_median_of_an_even_count_of_counters_rounds_half_up(cnn_updates: list[Tensors]) -> None:
    # Execute: counters 1, 2, 3, 4 have median 2.5
    fused = _fuse("median", cnn_updates)
    # Assert
    assert int(fused["bn.num_batches_tracked"]) == 3


def test_float16_state_dicts_with_a_billion_examples_stay_finite() -> None:
    # Prepare
    updates = train_parties(3, torch.float16)
    # Execute
    fused = get_algorithm("fedavg").fuse(updates, [10**9, 2 * 10**9, 3 * 10**9]).model
    # Assert
    ref = reference_mean(updates, [1, 2, 3])
    for k in fused:
        assert fused[k].dtype == updates[0][k].dtype
        assert np.all(np.isfinite(fused[k].astype(np.float64)))
        if fused[k].dtype == np.float16:
            np.testing.assert_allclose(fused[k].astype(np.float64), ref[k], rtol=2e-3, atol=2e-3)
    assert int(fused["bn.num_batches_tracked"]) == 2  # (1*1 + 2*2 + 3*3) / 6 = 2.33


def test_bfloat16_state_dicts_round_trip_through_torch() -> None:
    # Prepare
    updates = [codec.decode(codec.encode(u)).tensors for u in train_parties(2, torch.bfloat16)]
    # Execute
    fused = get_algorithm("fedavg").fuse(updates, [1, 1]).model
    model = SmallCNN().to(torch.bfloat16)
    model.load_state_dict(codec.to_state_dict(fused), strict=True)
    # Assert
    assert fused["conv.weight"].dtype == ml_dtypes.bfloat16
    assert model.conv.weight.dtype == torch.bfloat16
    ref = reference_mean(updates, [1, 1])
    np.testing.assert_allclose(fused["conv.weight"].astype(np.float64), ref["conv.weight"],
                               rtol=1e-2, atol=1e-2)
