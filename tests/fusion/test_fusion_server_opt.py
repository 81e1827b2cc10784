"""FedAvgM, FedAdam, FedYogi, FedAdagrad: hand-computed steps and state kept between rounds."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas import codec
from fedfaas.errors import FusionError
from fedfaas.fusion import ServerState, get_algorithm

ZERO = {"w": np.zeros(4, np.float32)}


def _one(values: list[float], dtype: type = np.float32) -> dict[str, np.ndarray]:
    return {"w": np.array(values, dtype)}


def test_fedavgm_accumulates_momentum_over_rounds() -> None:
    # Prepare
    algorithm = get_algorithm("fedavgm", server_lr=1.0, momentum=0.9)
    # Execute: round 1 from x=0 to avg [1,2,3,4]; round 2 to avg x1 + 1
    first = algorithm.fuse([_one([1, 2, 3, 4])], [1], global_model=ZERO)
    second = algorithm.fuse([_one([2, 3, 4, 5])], [1], global_model=first.model,
                           state=first.state)
    # Assert: v1 = [1,2,3,4]; v2 = 0.9 v1 + 1; x2 = x1 + v2
    np.testing.assert_allclose(first.model["w"], [1, 2, 3, 4])
    np.testing.assert_allclose(second.model["w"], [2.9, 4.8, 6.7, 8.6], rtol=1e-6)
    assert second.state is not None and second.state.step == 2


def test_fedavgm_without_momentum_is_fedavg() -> None:
    # Prepare
    updates = [_one([1, 2, 3, 4]), _one([3, 4, 5, 6])]
    # Execute
    result = get_algorithm("fedavgm", momentum=0.0).fuse(updates, [1, 1], global_model=ZERO)
    # Assert
    np.testing.assert_allclose(result.model["w"], [2, 3, 4, 5])


def test_fedadam_step_by_hand() -> None:
    # Prepare: beta1 = beta2 = 0 gives m = delta, v = delta**2, so x = eta * d / (|d| + tau)
    algorithm = get_algorithm("fedadam", server_lr=0.1, beta1=0.0, beta2=0.0, tau=1.0)
    # Execute
    result = algorithm.fuse([_one([1, 3, -1, 0])], [1], global_model=ZERO)
    # Assert
    np.testing.assert_allclose(result.model["w"], [0.05, 0.075, -0.05, 0.0], rtol=1e-6)
    assert result.state is not None
    assert sorted(result.state.tensors) == ["m:w", "v:w"]


def test_fedyogi_step_by_hand() -> None:
    # Prepare: v0 = tau**2 = 1; v = 1 - d**2 * sign(1 - d**2) = [1, 10, 1, 1]
    algorithm = get_algorithm("fedyogi", server_lr=0.1, beta1=0.0, beta2=0.0, tau=1.0)
    # Execute
    result = algorithm.fuse([_one([1, 3, -1, 0])], [1], global_model=ZERO)
    # Assert: x = 0.1 * d / (sqrt(v) + 1)
    np.testing.assert_allclose(result.model["w"], [0.05, 0.3 / (10**0.5 + 1), -0.05, 0.0],
                               rtol=1e-6)
    assert result.state is not None
    np.testing.assert_allclose(result.state.tensors["v:w"], [1, 10, 1, 1])


def test_fedadagrad_step_by_hand() -> None:
    # Prepare: v = tau**2 + d**2 = [2, 10, 2, 1]
    algorithm = get_algorithm("fedadagrad", server_lr=0.1, beta1=0.0, tau=1.0)
    # Execute
    result = algorithm.fuse([_one([1, 3, -1, 0])], [1], global_model=ZERO)
    # Assert
    expected = [0.1 / (2**0.5 + 1), 0.3 / (10**0.5 + 1), -0.1 / (2**0.5 + 1), 0.0]
    np.testing.assert_allclose(result.model["w"], expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["fedavgm", "fedadam", "fedyogi", "fedadagrad"])
def test_state_stored_with_the_codec_resumes_exactly(name: str) -> None:
    # Prepare
    algorithm = get_algorithm(name)
    rounds = [[_one([1, 2, 3, 4]), _one([2, 2, 2, 2])], [_one([0, 1, 0, 1]), _one([5, 5, 5, 5])]]
    first = algorithm.fuse(rounds[0], [1, 3], global_model=ZERO)
    assert first.state is not None
    # Execute: the state goes to S3 as a codec body and comes back read-only
    tensors, meta = first.state.to_tensors()
    stored = codec.decode(codec.encode(tensors, meta))
    state = ServerState.from_tensors(stored.tensors, stored.meta)
    resumed = algorithm.fuse(rounds[1], [2, 2], global_model=first.model, state=state)
    direct = algorithm.fuse(rounds[1], [2, 2], global_model=first.model, state=first.state)
    # Assert
    np.testing.assert_array_equal(resumed.model["w"], direct.model["w"])
    assert resumed.state is not None and resumed.state.step == 2


def test_integer_buffers_take_their_average_and_floats_keep_their_dtype() -> None:
    # Prepare
    updates: list[dict[str, np.ndarray]] = [
        {"w": np.array([1, 2, 3, 4], np.float16), "n": np.array([4], np.int64)},
        {"w": np.array([3, 2, 1, 0], np.float16), "n": np.array([7], np.int64)}]
    global_model: dict[str, np.ndarray] = {"w": np.zeros(4, np.float16),
                                           "n": np.array([3], np.int64)}
    # Execute
    result = get_algorithm("fedadam").fuse(updates, [1, 1], global_model=global_model)
    # Assert
    assert result.model["w"].dtype == np.float16 and result.model["n"].dtype == np.int64
    assert result.model["n"].tolist() == [6]
    assert result.state is not None
    assert result.state.tensors["m:w"].dtype == np.float32 and "m:n" not in result.state.tensors


def test_state_of_another_algorithm_is_rejected() -> None:
    # Prepare
    first = get_algorithm("fedyogi").fuse([_one([1, 2, 3, 4])], [1], global_model=ZERO)
    # Execute / Assert
    with pytest.raises(FusionError, match="belongs to 'fedyogi', not 'fedadam'"):
        get_algorithm("fedadam").fuse([_one([1, 2, 3, 4])], [1], global_model=ZERO,
                                     state=first.state)


def test_state_of_another_model_is_rejected() -> None:
    # Prepare
    state = ServerState("fedavgm", 1, {"momentum:w": np.zeros(5, np.float32)})
    # Execute / Assert
    with pytest.raises(FusionError, match="'momentum:w' is \\[5\\] float32, expected \\[4\\]"):
        get_algorithm("fedavgm").fuse([_one([1, 2, 3, 4])], [1], global_model=ZERO, state=state)


def test_a_corrupt_stored_state_is_rejected() -> None:
    # Execute / Assert
    with pytest.raises(FusionError, match="'step' must be an integer"):
        ServerState.from_tensors({}, {"kind": "fedfaas.server_state", "algorithm": "fedadam",
                                      "step": -1})
    with pytest.raises(FusionError, match="not a server state"):
        ServerState.from_tensors({}, {"kind": "fedfaas.partial"})


def test_server_optimisers_need_the_global_model() -> None:
    # Execute / Assert
    for name in ("fedavgm", "fedadam", "fedyogi", "fedadagrad"):
        with pytest.raises(FusionError, match="needs the current global model"):
            get_algorithm(name).fuse([_one([1, 2, 3, 4])], [1])
