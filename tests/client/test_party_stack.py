"""The party SDK against the real local stack: gateway, aggregate function, Redis and S3."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from fedfaas.client import AdminClient, JobFinished, Party, RoundFailed
from fedfaas.errors import Conflict, NotFound

pytestmark = pytest.mark.stack

JobFactory = Callable[..., dict[str, Any]]


def _linear(weight: list[float], bias: float) -> dict[str, torch.Tensor]:
    return {"weight": torch.tensor([weight]), "bias": torch.tensor([bias])}


def test_two_parties_push_and_fetch_the_fedavg_model(admin: AdminClient,
                                                     new_job: JobFactory) -> None:
    # Prepare
    job = new_job(quorum=2, rounds=2)
    jid = job["job_id"]
    admin.put_initial_model(jid, _linear([0.0, 0.0], 0.0))
    a = Party.register(admin.base_url, jid, job["enrollment_token"], party_id="a",
                       profile={"mode": "active", "dataset_size": 1})
    b = Party.register(admin.base_url, jid, job["enrollment_token"], party_id="b")
    rnd = admin.start_round(jid)["round"]
    # Execute
    start = a.fetch_model()
    a.push(rnd, _linear([1.0, 2.0], 0.0), num_examples=1)                    # a torch state_dict
    b.push(rnd, {"weight": np.array([[5.0, 6.0]], np.float32),               # plain numpy arrays
                 "bias": np.array([4.0], np.float32)}, num_examples=3)
    status = a.wait_round_closed(rnd, timeout_s=60)
    model = torch.nn.Linear(2, 1)
    loaded_round = b.load_model(model)
    # Assert: (1*[1,2,0] + 3*[5,6,4]) / 4
    assert start.round == 0 and start.arrays()[0].tolist() == [[0.0, 0.0]]
    assert status["state"] == "closed" and status["your_update"]["num_examples"] == 1
    assert loaded_round == rnd
    np.testing.assert_allclose(model.weight.detach().numpy(), [[4.0, 5.0]], rtol=1e-6)
    np.testing.assert_allclose(model.bias.detach().numpy(), [3.0], rtol=1e-6)
    stored = admin.fetch_update(jid, rnd, "b")
    assert stored.meta == {"job": jid, "round": rnd, "party": "b", "num_examples": 3}


def test_a_different_update_for_the_same_round_is_a_409(admin: AdminClient,
                                                        new_job: JobFactory) -> None:
    # Prepare
    job = new_job(quorum=1)
    jid = job["job_id"]
    p = Party.register(admin.base_url, jid, job["enrollment_token"], party_id="p")
    Party.register(admin.base_url, jid, job["enrollment_token"], party_id="q")
    rnd = admin.start_round(jid)["round"]
    update = {"w": np.arange(3, dtype=np.float32)}
    # Execute
    first = p.push(rnd, update, num_examples=2)
    again = p.push(rnd, update, num_examples=2)
    with pytest.raises(Conflict) as caught:
        p.push(rnd, {"w": np.ones(3, np.float32)}, num_examples=2)
    # Assert
    assert "duplicate" not in first and again["duplicate"] is True
    assert caught.value.code == "update_exists" and caught.value.status == 409


def test_measured_training_time_and_bandwidth_reach_the_profile(admin: AdminClient,
                                                                new_job: JobFactory) -> None:
    # Prepare: a model above the 64 KiB bandwidth sampling threshold
    job = new_job(quorum=1, rounds=1)
    jid = job["job_id"]
    initial = {"w": np.zeros((64, 512), np.float32), "b": np.zeros(512, np.float32)}
    admin.put_initial_model(jid, initial)
    party = Party.register(admin.base_url, jid, job["enrollment_token"], party_id="m")
    rnd = admin.start_round(jid)["round"]
    # Execute
    weights = party.fetch_arrays()
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(0))
    with party.measure_training(epochs=2, minibatches=4) as timer:
        w = torch.from_numpy(weights[0]).requires_grad_()
        for _ in range(4):
            (x @ w).square().mean().backward()
    record = party.push(rnd, {"w": weights[0] + 1, "b": weights[1]}, num_examples=32)
    profile = admin.get_party(jid, "m")
    # Assert
    assert timer.elapsed_s is not None
    assert record["train_time_s"] == pytest.approx(timer.elapsed_s)
    assert party.up.bps is not None and party.down.bps is not None
    assert profile["bandwidth_up_bps"] == pytest.approx(party.up.bps)
    assert profile["bandwidth_down_bps"] == pytest.approx(party.down.bps)
    assert profile["epoch_time_s"] == pytest.approx(timer.elapsed_s / 2)
    assert profile["minibatch_time_s"] == pytest.approx(timer.elapsed_s / 4)


def test_parties_wait_for_rounds_and_learn_when_the_job_is_over(admin: AdminClient,
                                                                new_job: JobFactory) -> None:
    # Prepare
    job = new_job(quorum=1, rounds=1)
    jid = job["job_id"]
    party = Party.register(admin.base_url, jid, job["enrollment_token"], party_id="w")
    admin.start_round(jid)
    # Execute
    opened = party.wait_next_round(after=0, timeout_s=30)
    party.push(opened, [np.ones(2, np.float32)], num_examples=1)
    closed = admin.wait_round_closed(jid, opened, timeout_s=60)
    # Assert
    assert opened == 1 and closed["arrived_parties"] == ["w"]
    with pytest.raises(JobFinished):
        party.wait_next_round(after=1, timeout_s=30)


def test_a_failed_round_raises_round_failed(admin: AdminClient, new_job: JobFactory) -> None:
    # Prepare: two parties, quorum two, only one update before t_wait
    job = new_job(quorum=2, t_wait_s=1.0)
    jid = job["job_id"]
    one = Party.register(admin.base_url, jid, job["enrollment_token"], party_id="one")
    Party.register(admin.base_url, jid, job["enrollment_token"], party_id="two")
    rnd = admin.start_round(jid)["round"]
    one.push(rnd, [np.ones(2, np.float32)], num_examples=1)
    # Execute / Assert
    with pytest.raises(RoundFailed, match="quorum"):
        one.wait_round_closed(rnd, timeout_s=60)
    with pytest.raises(NotFound):
        one.fetch_model(rnd)
