"""The dtype rules: integer buffers rounded, half floats never overflow, mismatches rejected."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from fedfaas import codec
from fedfaas.errors import FusionError
from fedfaas.fusion import PartialAggregate, fedavg, get_algorithm, median


def test_integer_tensors_are_averaged_and_rounded_half_up() -> None:
    # Prepare
    updates = [{"n": np.array([1, -1, 10, 127], np.int64)},
               {"n": np.array([2, -2, 13, 127], np.int64)}]
    # Execute: means 1.5, -1.5, 11.5, 127
    fused = fedavg(updates, [1, 1])
    # Assert
    assert fused["n"].dtype == np.int64
    np.testing.assert_array_equal(fused["n"], [2, -1, 12, 127])


def test_small_integer_dtypes_stay_in_range() -> None:
    # Prepare
    updates = [{"q": np.array([127, -128, 0, 255 // 2], np.int8)},
               {"q": np.array([127, -128, 1, 1], np.int8)}]
    # Execute
    fused = fedavg(updates, [3, 1])
    # Assert
    assert fused["q"].dtype == np.int8
    np.testing.assert_array_equal(fused["q"], [127, -128, 0, 96])


def test_bool_tensors_take_the_weighted_majority() -> None:
    # Prepare
    updates = [{"m": np.array([True, True, False, False])},
               {"m": np.array([True, False, True, False])}]
    # Execute: means 1, 0.25, 0.75, 0 with weights 1:3
    fused = fedavg(updates, [1, 3])
    # Assert
    assert fused["m"].dtype == np.bool_
    np.testing.assert_array_equal(fused["m"], [True, False, True, False])


def test_float16_with_a_billion_examples_does_not_overflow() -> None:
    # Prepare: 60000 * 1e9 is far beyond float16's 65504
    updates = [{"h": np.array([60000, -60000, 1, 0.5], np.float16)},
               {"h": np.array([60000, -60000, 3, 0.5], np.float16)}]
    # Execute
    fused = fedavg(updates, [10**9, 10**9])
    # Assert
    assert fused["h"].dtype == np.float16
    np.testing.assert_array_equal(fused["h"], np.array([60000, -60000, 2, 0.5], np.float16))


def test_float16_with_very_unequal_weights_stays_finite() -> None:
    # Prepare: the second weight is 2**30 times the first (forces a rescale)
    a = {"h": np.array([65504, 1, 2, 3], np.float16)}
    b = {"h": np.array([65504, 2, 4, 6], np.float16)}
    # Execute
    fused = PartialAggregate()
    fused.add(a, 1, "a")
    fused.add(b, 2**30, "b")
    result = fused.finalize()
    # Assert
    np.testing.assert_array_equal(result["h"], np.array([65504, 2, 4, 6], np.float16))


def test_bfloat16_round_trips_through_the_codec_and_fusion() -> None:
    # Prepare
    bf16 = ml_dtypes.bfloat16
    values = np.array([1.5, -2.0, 3.25, 0.0078125], bf16)
    body = codec.encode({"b": values, "c": np.array([1.0, 2.0, 3.0, 4.0], bf16)})
    other = codec.encode({"b": values, "c": np.array([3.0, 4.0, 5.0, 6.0], bf16)})
    updates = [codec.decode(body).tensors, codec.decode(other).tensors]
    # Execute
    fused = fedavg(updates, [5, 5])
    back = codec.decode(codec.encode(fused)).tensors
    # Assert
    assert back["b"].dtype == bf16 and back["c"].dtype == bf16
    np.testing.assert_array_equal(back["b"], values)
    np.testing.assert_array_equal(back["c"].astype(np.float32), [2, 3, 4, 5])


def test_median_of_integers_rounds_half_up_and_keeps_dtype() -> None:
    # Prepare
    updates = [{"n": np.array([1, 4, 0, 7], np.int32)}, {"n": np.array([2, 5, 0, 8], np.int32)}]
    # Execute
    fused = median(updates)
    # Assert
    assert fused["n"].dtype == np.int32
    np.testing.assert_array_equal(fused["n"], [2, 5, 0, 8])


@pytest.mark.parametrize(("bad", "message"), [
    ({"w": np.zeros(3, np.float32)}, "party 'b': tensor 'w' has shape \\[3\\], expected \\[4\\]"),
    ({"w": np.zeros(4, np.float64)}, "party 'b': tensor 'w' has dtype float64, expected float32"),
    ({"v": np.zeros(4, np.float32)}, "party 'b': tensor 'w' is missing"),
    ({"w": np.zeros(4, np.float32), "x": np.zeros(1)}, "party 'b': unexpected tensor 'x'"),
    ({"w": np.zeros(4, np.complex64)}, "party 'b': tensor 'w' has dtype complex64"),
])
def test_mismatched_updates_are_rejected_naming_tensor_and_party(
        bad: dict[str, np.ndarray], message: str) -> None:
    # Prepare
    good = {"w": np.zeros(4, np.float32)}
    # Execute / Assert
    for name in ("fedavg", "median", "krum"):
        with pytest.raises(FusionError, match=message):
            get_algorithm(name).fuse([good, bad, good], [1, 1, 1], ["a", "b", "c"])


def test_unsupported_dtypes_are_rejected() -> None:
    # Prepare
    updates = [{"w": np.zeros(4, np.complex64)}, {"w": np.zeros(4, np.complex64)}]
    # Execute / Assert
    with pytest.raises(FusionError, match="party '0': tensor 'w' has unsupported dtype complex64"):
        fedavg(updates, [1, 1])


@pytest.mark.parametrize("weights", [[1, 0], [1, -2], [1, float("nan")], [1, float("inf")],
                                     [1, True], [1, "3"], [1]])
def test_bad_weights_are_rejected(weights: list[object]) -> None:
    # Prepare
    updates = [{"w": np.zeros(4, np.float32)}, {"w": np.ones(4, np.float32)}]
    # Execute / Assert
    with pytest.raises(FusionError, match="weight"):
        fedavg(updates, weights)  # type: ignore[arg-type]


def test_duplicate_party_ids_in_one_call_are_rejected() -> None:
    # Prepare
    updates = [{"w": np.zeros(4, np.float32)}, {"w": np.ones(4, np.float32)}]
    # Execute / Assert
    with pytest.raises(FusionError, match="party 'a' appears twice"):
        get_algorithm("median").fuse(updates, [1, 1], ["a", "a"])


def test_no_updates_is_rejected() -> None:
    # Execute / Assert
    with pytest.raises(FusionError, match="no updates"):
        fedavg([], [])
