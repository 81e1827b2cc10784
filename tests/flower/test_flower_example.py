"""The Flower example end to end: a real Flower job whose updates land in the real local stack."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from fedfaas.client import AdminClient
from fedfaas.codec import ModelUpdate
from fedfaas.models import build_model, load_digits_dataset

pytestmark = pytest.mark.stack

STATE_NAMES = list(build_model("digits-mlp").state_dict())


def _fedavg(updates: list[ModelUpdate]) -> dict[str, np.ndarray]:
    weights = np.array([u.meta["num_examples"] for u in updates], np.float64)
    weights /= weights.sum()
    return {name: sum(w * u.tensors[name].astype(np.float64) for w, u in zip(weights, updates,
                                                                            strict=True))
            for name in updates[0].tensors}


def test_flower_run_with_upload_mod_is_recorded_in_fedfaas(admin: AdminClient,
                                                           example: ModuleType) -> None:
    # Execute: Flower's FedAvg aggregates; clients upload through the mod
    outcome = example.run(admin, clients=3, rounds=2, upload_mod=True, seed=0)
    # Assert: every Flower round is a closed fedfaas round with every client's update
    job = outcome["job_id"]
    parties = outcome["parties"]
    assert outcome["rounds"] == {1: 1, 2: 2} and len(parties) == 3
    for rnd in (1, 2):
        status = admin.round_status(job, rnd)
        assert status["state"] == "closed" and status["arrived_parties"] == parties
    updates = [admin.fetch_update(job, 2, p) for p in parties]
    assert sum(u.meta["num_examples"] for u in updates) == len(load_digits_dataset(seed=0).y_train)
    for update in updates:
        assert list(update.tensors) == STATE_NAMES  # Flower's ArrayRecord keys, kept
        assert update.meta["source"] == "flwr" and update.meta["flwr_record"] == "arrays"
        assert update.meta["train_time_s"] > 0  # timed by the client mod
        assert "train_loss" in update.meta["flwr_metrics"]
    # Flower's model is the FedAvg of what fedfaas stored, and fedfaas's own model agrees
    expected = _fedavg(updates)
    fedfaas_model = admin.fetch_model(job, 2).tensors
    for name in STATE_NAMES:
        np.testing.assert_allclose(outcome["final_arrays"][name], expected[name], rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(fedfaas_model[name], expected[name], rtol=1e-5, atol=1e-6)
    assert outcome["accuracy"][2] > outcome["accuracy"][0]
    # The mod reported the measured epoch time to JIT's estimator
    assert all(admin.get_party(job, p)["epoch_time_s"] > 0 for p in parties)


def test_flower_run_aggregated_by_fedfaas_returns_its_global_model(admin: AdminClient,
                                                                   example: ModuleType) -> None:
    # Execute: updates travel through Flower, the strategy stores them, fedfaas aggregates
    outcome = example.run(admin, clients=2, rounds=2, aggregate_in_fedfaas=True,
                          upload_mod=False, seed=1)
    # Assert
    job = outcome["job_id"]
    model = admin.fetch_model(job, 2)
    assert model.round == 2 and list(model.tensors) == STATE_NAMES
    for name in STATE_NAMES:
        np.testing.assert_array_equal(outcome["final_arrays"][name], model.tensors[name])
    updates = [admin.fetch_update(job, 2, p) for p in outcome["parties"]]
    assert all("flwr_node_id" in u.meta and "train_time_s" not in u.meta for u in updates)
    expected = _fedavg(updates)
    for name in STATE_NAMES:
        np.testing.assert_allclose(model.tensors[name], expected[name], rtol=1e-5, atol=1e-6)


def test_sampled_flower_rounds_expect_only_the_sampled_nodes(admin: AdminClient,
                                                             example: ModuleType) -> None:
    # Execute: Flower samples 2 of 3 nodes per round; the job's t_wait is 600 s, so a
    # round expecting every registered node would not close within the run's timeout.
    outcome = example.run(admin, clients=3, rounds=2, upload_mod=True, seed=2, train_nodes=2)
    # Assert: each fedfaas round expected and got exactly its two sampled nodes
    job = outcome["job_id"]
    for rnd in (1, 2):
        status = admin.round_status(job, rnd)
        assert status["state"] == "closed" and status["expected"] == 2
        assert len(status["arrived_parties"]) == 2
