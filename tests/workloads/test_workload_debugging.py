"""debugging: FedDebug names a label-flipping client; round diffs by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas.errors import BadRequest, NotFound
from fedfaas.models import build_model, iid_split, state_arrays, train_local
from fedfaas.workloads import ClientUpdate, WorkloadInputs, run_workload
from fedfaas.workloads.debugging import diff_models, localise

JOB = {"model": "digits-mlp"}


@pytest.fixture(scope="module")
def warm_round(digits, spare_rows, train_client):
    """A mid-training round: the global model is already good (~88 % accuracy)."""
    model = build_model("digits-mlp", seed=0)
    train_local(model, digits.x_train[:300], digits.y_train[:300], epochs=10, lr=0.05, seed=0)
    base = state_arrays(model)
    rows = np.arange(100, len(digits.y_train))
    honest = [ClientUpdate(f"c{i}", train_client(rows[p], seed=i, base=base), {}, 3)
              for i, p in enumerate(iid_split(len(rows), 7, seed=1)[:4])]
    faulty = ClientUpdate("mallory", train_client(spare_rows, seed=99, flip_labels=True,
                                                  base=base), {}, 3)
    return honest, faulty


def test_label_flipping_client_is_named(warm_round):
    # Prepare: four honest clients and one trained on labels 9 - y
    honest, faulty = warm_round
    updates = [*honest[:2], faulty, *honest[2:]]

    # Execute
    result = run_workload("debugging", WorkloadInputs(job=JOB, round=3, updates=updates),
                          {"num_inputs": 16, "seed": 4})

    # Assert
    assert result["faulty"] == ["mallory"]
    assert result["confidence"] > 0.8
    assert result["deviation_ratio"] > 3
    assert sum(result["votes"].values()) == pytest.approx(16)


def test_all_honest_round_names_no_one_clearly(warm_round):
    # Prepare
    honest, _ = warm_round

    # Execute
    result = run_workload("debugging", WorkloadInputs(job=JOB, updates=honest),
                          {"num_inputs": 16, "seed": 4})

    # Assert: FedDebug always names someone, but without a clear majority or outlier
    assert result["confidence"] < 0.6
    assert result["deviation_ratio"] < 2


def test_localise_by_hand():
    # Prepare: one input; clients 0-2 share neurons {0, 1, 2}, client 3 fires {2, 3, 4}
    same = [True, True, True, False, False]
    odd = [False, False, True, True, True]
    profiles = np.array([[same], [same], [same], [odd]])

    # Execute
    votes, deviation = localise(profiles)

    # Assert
    np.testing.assert_allclose(votes, [0, 0, 0, 1])
    np.testing.assert_allclose(deviation, [0, 0, 0, 4 / 5])


def test_two_faulty_clients():
    same = [True, True, False, False]
    profiles = np.array([[same], [same], [same], [[False, True, True, False]],
                         [[False, False, True, True]]])
    votes, _ = localise(profiles, num_faulty=2)
    np.testing.assert_allclose(votes, [0, 0, 0, 1, 1])


def test_diff_by_hand():
    # Prepare
    before = {"w": np.array([3.0, 4.0]), "b": np.array([1.0]), "n": np.array(5)}
    after = {"w": np.array([3.0, 4.0]), "b": np.array([2.0]), "n": np.array(6)}

    # Execute
    result = diff_models(before, after, top_k=1)

    # Assert
    assert result["top_changed"] == ["b"]
    assert result["relative_change"] == pytest.approx(np.sqrt(1 / 26))
    assert [r["tensor"] for r in result["layers"]] == ["w", "b"]
    assert result["layers"][1]["relative_change"] == pytest.approx(1.0)


def test_diff_mode_reads_the_cached_global_models(base_state, honest_round):
    inputs = WorkloadInputs(job=JOB, round=3,
                            global_models={2: base_state, 3: honest_round[0].tensors})
    result = run_workload("debugging", inputs, {"mode": "diff"})
    assert (result["round_a"], result["round_b"]) == (2, 3)
    assert result["change_norm"] > 0
    with pytest.raises(NotFound, match="round 1"):
        run_workload("debugging", inputs, {"mode": "diff", "round_a": 1})


def test_bad_inputs(honest_round):
    with pytest.raises(NotFound, match="client updates"):
        run_workload("debugging", WorkloadInputs(job=JOB), {})
    with pytest.raises(NotFound, match="global model"):
        run_workload("debugging", WorkloadInputs(job=JOB, updates=honest_round),
                     {"mode": "diff"})
    with pytest.raises(BadRequest, match="num_faulty"):
        run_workload("debugging", WorkloadInputs(job=JOB, updates=honest_round[:3]),
                     {"num_faulty": 2})
    with pytest.raises(BadRequest, match="input_high"):
        run_workload("debugging", WorkloadInputs(job=JOB, updates=honest_round),
                     {"input_low": 1.0, "input_high": 0.0})
    with pytest.raises(BadRequest, match="do not fit DigitsCNN"):
        run_workload("debugging", WorkloadInputs(job={"model": "digits-cnn"},
                                                 updates=honest_round), {})
