"""Fixtures for the fusion tests: tiny hand-checkable updates and real torch state_dicts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fusion_helpers import Tensors, train_parties

from fedfaas import codec


@pytest.fixture(scope="session")
def cnn_updates() -> list[Tensors]:
    """Four parties' float32 state_dicts (as numpy, through the codec like the function sees)."""
    return [codec.decode(codec.encode(u)).tensors for u in train_parties(4)]


@pytest.fixture()
def roundtrip() -> Callable[[Tensors], Tensors]:
    """Encode and decode with the codec: read-only views, as an aggregation function gets."""
    return lambda tensors: codec.decode(codec.encode(tensors)).tensors
