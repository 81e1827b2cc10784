"""Shared FL scenarios for the workload tests: digits MLP clients trained from one base model."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from fedfaas.models import (
    Digits,
    build_model,
    iid_split,
    load_digits_dataset,
    load_state,
    state_arrays,
    train_local,
)
from fedfaas.workloads import ClientUpdate

# The machine is shared: one intra-op thread keeps these tests friendly to it.
torch.set_num_threads(1)

Tensors = dict[str, np.ndarray]
TrainFn = Callable[..., Tensors]
#: Planted groups of the clustering scenarios: disjoint digit classes.
GROUPS = ((0, 1, 2), (3, 4, 5), (6, 7, 8, 9))


@pytest.fixture(scope="session")
def digits() -> Digits:
    return load_digits_dataset(seed=0)


@pytest.fixture(scope="session")
def base_state(digits: Digits) -> Tensors:
    """A weak global model (trained on 100 images): the round's starting point."""
    model = build_model("digits-mlp", seed=0)
    train_local(model, digits.x_train[:100], digits.y_train[:100], epochs=2, lr=0.05, seed=0)
    return state_arrays(model)


@pytest.fixture(scope="session")
def train_client(digits: Digits, base_state: Tensors) -> TrainFn:
    """Train a client from the base model on training rows ``idx``; returns its weights."""

    def train(idx: np.ndarray, seed: int, *, flip_labels: bool = False, epochs: int = 2,
              base: Tensors | None = None) -> Tensors:
        model = load_state(build_model("digits-mlp"), base if base is not None else base_state)
        y = digits.y_train[idx]
        train_local(model, digits.x_train[idx], 9 - y if flip_labels else y, epochs=epochs,
                    lr=0.05, seed=seed)
        return state_arrays(model)

    return train


@pytest.fixture(scope="session")
def honest_round(digits: Digits, train_client: TrainFn) -> list[ClientUpdate]:
    """Six honest clients with IID shards of the training set (rows from 100 on)."""
    rows = np.arange(100, len(digits.y_train))
    parts = iid_split(len(rows), 7, seed=1)
    return [ClientUpdate(f"c{i}", train_client(rows[p], seed=i),
                         {"num_examples": len(p), "party": f"c{i}"}, round=3)
            for i, p in enumerate(parts[:6])]


@pytest.fixture(scope="session")
def spare_rows(digits: Digits) -> np.ndarray:
    """The seventh IID shard, unused by ``honest_round``."""
    rows = np.arange(100, len(digits.y_train))
    return rows[iid_split(len(rows), 7, seed=1)[6]]


@pytest.fixture(scope="session")
def group_round(digits: Digits, train_client: TrainFn) -> list[ClientUpdate]:
    """Nine clients in three planted groups (three per group of digit classes)."""
    rng = np.random.default_rng(0)
    out = []
    for g, classes in enumerate(GROUPS):
        rows = rng.permutation(np.flatnonzero(np.isin(digits.y_train, classes)))
        for j, part in enumerate(np.array_split(rows, 3)):
            out.append(ClientUpdate(f"g{g}c{j}", train_client(part, seed=10 * g + j),
                                    {"num_examples": len(part)}, round=3))
    return out


def flat(tensors: Tensors, base: Tensors | None = None) -> np.ndarray:
    """Reference flattening for the tests: float64 concatenation of every float tensor."""
    return np.concatenate([
        (np.asarray(v, np.float64) - (0.0 if base is None else np.asarray(base[k], np.float64)))
        .reshape(-1) for k, v in tensors.items()])


@pytest.fixture(scope="session")
def flatten() -> Callable[..., np.ndarray]:
    return flat
