"""FedAvg, FedProx and FedSGD on hand-computed 4-element arrays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fedfaas.errors import FusionError
from fedfaas.fusion import FedAvg, fedavg, get_algorithm


def test_fedavg_weights_by_examples() -> None:
    # Prepare
    updates = [{"w": np.array([1, 2, 3, 4], np.float32)}, {"w": np.array([5, 6, 7, 8], np.float32)}]
    # Execute
    fused = fedavg(updates, [1, 3])
    # Assert: (1*1 + 3*5) / 4 = 4, ...
    np.testing.assert_array_equal(fused["w"], np.array([4, 5, 6, 7], np.float32))
    assert fused["w"].dtype == np.float32


def test_fedavg_keeps_tensor_order_and_shapes() -> None:
    # Prepare
    u: dict[str, np.ndarray] = {"b": np.ones((2, 2), np.float32), "a": np.zeros(3, np.float64)}
    # Execute
    fused = FedAvg().fuse([u, u], [2, 5], ["p", "q"])
    # Assert
    assert list(fused.model) == ["b", "a"]
    assert fused.model["b"].shape == (2, 2) and fused.model["a"].dtype == np.float64
    assert fused.parties == ["p", "q"] and fused.state is None


def test_fedavg_result_is_writable_and_independent_of_inputs(
        roundtrip: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]) -> None:
    # Prepare
    u = roundtrip({"w": np.array([1.0, 2.0, 3.0, 4.0], np.float32)})
    # Execute
    fused = fedavg([u], [7])
    fused["w"][0] = 100.0
    # Assert
    assert u["w"][0] == 1.0


def test_fedprox_fuses_like_fedavg_and_hands_mu_to_parties() -> None:
    # Prepare
    updates = [{"w": np.array([0, 0, 4, 8], np.float32)}, {"w": np.array([2, 2, 0, 0], np.float32)}]
    algorithm = get_algorithm("fedprox", mu=0.25)
    # Execute
    result = algorithm.fuse(updates, [1, 1])
    # Assert
    np.testing.assert_array_equal(result.model["w"], [1, 1, 2, 4])
    assert algorithm.round_config() == {"proximal_mu": 0.25}
    assert get_algorithm("fedavg").round_config() == {}


def test_fedsgd_steps_the_global_model_with_the_mean_gradient() -> None:
    # Prepare
    grads = [{"w": np.array([1, 2, 3, 4], np.float32)}, {"w": np.array([3, 2, 1, 0], np.float32)}]
    global_model = {"w": np.ones(4, np.float32)}
    # Execute: mean gradient (1*g1 + 3*g2)/4 = [2.5, 2, 1.5, 1]; x - 0.5 * g
    result = get_algorithm("fedsgd", server_lr=0.5).fuse(grads, [1, 3],
                                                         global_model=global_model)
    # Assert
    np.testing.assert_allclose(result.model["w"], [-0.25, 0.0, 0.25, 0.5], atol=1e-7)
    assert result.model["w"].dtype == np.float32


def test_fedsgd_averages_integer_buffers_instead_of_stepping_them() -> None:
    # Prepare
    grads: list[dict[str, np.ndarray]] = [
        {"w": np.zeros(4, np.float32), "n": np.array(10, np.int64)},
        {"w": np.zeros(4, np.float32), "n": np.array(13, np.int64)}]
    global_model: dict[str, np.ndarray] = {"w": np.ones(4, np.float32),
                                           "n": np.array(9, np.int64)}
    # Execute: (10 + 13) / 2 = 11.5 rounds half up to 12
    result = get_algorithm("fedsgd").fuse(grads, [1, 1], global_model=global_model)
    # Assert
    assert result.model["n"].dtype == np.int64 and int(result.model["n"]) == 12
    np.testing.assert_array_equal(result.model["w"], np.ones(4, np.float32))


def test_fedsgd_without_a_global_model_is_rejected() -> None:
    # Prepare
    grads = [{"w": np.zeros(4, np.float32)}]
    # Execute / Assert
    with pytest.raises(FusionError, match="global model"):
        get_algorithm("fedsgd").fuse(grads, [1])


def test_fedsgd_rejects_a_global_model_of_another_shape() -> None:
    # Prepare
    grads = [{"w": np.zeros(4, np.float32)}]
    # Execute / Assert
    with pytest.raises(FusionError, match="global model: tensor 'w' has shape"):
        get_algorithm("fedsgd").fuse(grads, [1], global_model={"w": np.zeros(5, np.float32)})
