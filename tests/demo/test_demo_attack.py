"""The malicious party's update: the honest update flipped and scaled."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas.devstack.demo.party import sign_flip_attack


def test_update_is_flipped_and_scaled_around_the_base_model() -> None:
    # Prepare
    base = {"w": np.array([1.0, 2.0], np.float32), "b": np.array([0.5], np.float32)}
    trained = {"w": np.array([1.5, 1.0], np.float32), "b": np.array([0.0], np.float32)}
    # Execute
    poisoned = sign_flip_attack(base, trained, scale=10.0)
    # Assert: delta (0.5, -1.0) becomes (-5, 10); b's (-0.5) becomes 5
    np.testing.assert_array_equal(poisoned["w"], np.array([-4.0, 12.0], np.float32))
    np.testing.assert_array_equal(poisoned["b"], np.array([5.5], np.float32))
    assert poisoned["w"].dtype == np.float32


def test_models_with_different_tensors_are_refused() -> None:
    with pytest.raises(ValueError, match="same tensors"):
        sign_flip_attack({"w": np.zeros(1)}, {"v": np.zeros(1)}, scale=10.0)
