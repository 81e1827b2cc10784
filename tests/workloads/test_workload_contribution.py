"""contribution: Shapley values by hand, GTG against exact, duplicated clients share their value."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas.errors import BadRequest, NotFound
from fedfaas.models import build_model, evaluate, load_state
from fedfaas.workloads import ClientUpdate, WorkloadInputs, run_workload
from fedfaas.workloads.contribution import exact_shapley, gtg_shapley, incentive_split

JOB = {"model": "digits-mlp"}


def _additive(types: list[int], worth: list[float]):
    """v(S) = worth of the distinct types in S: a duplicate adds nothing."""
    return lambda mask: sum(worth[t] for t in {types[i] for i in range(len(types))
                                               if mask >> i & 1})


def test_exact_shapley_by_hand():
    # Prepare: v({}) = 0, v({0}) = 1, v({1}) = 2, v({0, 1}) = 4
    table = {0: 0.0, 1: 1.0, 2: 2.0, 3: 4.0}

    # Execute
    phi = exact_shapley(2, table.__getitem__)

    # Assert: phi_0 = (1 + (4 - 2)) / 2, phi_1 = (2 + (4 - 1)) / 2
    np.testing.assert_allclose(phi, [1.5, 2.5])


def test_gtg_matches_exact_and_halves_a_duplicate_in_an_additive_game():
    # Prepare: clients 0 and 1 are the same type worth 3
    v = _additive([0, 0, 1, 2], [3.0, 1.0, 2.0])

    # Execute
    exact = exact_shapley(4, v)
    est, perms, converged = gtg_shapley(4, v, max_permutations=400, tolerance=0.0,
                                        truncation=0.0, seed=5)

    # Assert
    np.testing.assert_allclose(exact, [1.5, 1.5, 1.0, 2.0])
    np.testing.assert_allclose(est, exact, atol=0.15)
    assert perms == 400 and not converged
    assert est.sum() == pytest.approx(6.0)


def test_incentive_split_by_hand():
    np.testing.assert_allclose(incentive_split(np.array([2.0, -1.0, 1.0]), 30.0), [20, 0, 10])
    np.testing.assert_allclose(incentive_split(np.array([-1.0, 0.0]), 30.0), [0, 0])


@pytest.fixture(scope="module")
def strong_and_weak(digits, train_client):
    """Client A trained on 400 images, client B on 100 (disjoint IID rows)."""
    rows = np.random.default_rng(0).permutation(np.arange(100, len(digits.y_train)))
    a = ClientUpdate("A", train_client(rows[:400], seed=0), {"num_examples": 400}, 3)
    b = ClientUpdate("B", train_client(rows[400:500], seed=1), {"num_examples": 100}, 3)
    return a, b


def _shapley(updates, digits, base, **params):
    inputs = WorkloadInputs(job=JOB, round=3, updates=updates, base_model=base,
                            arrays={"x_val": digits.x_test, "y_val": digits.y_test})
    return run_workload("contribution", inputs, {"metric": "neg_loss", **params})


def test_duplicated_client_gets_about_half_of_the_pair(strong_and_weak, digits, base_state):
    # Prepare: A2 holds exactly A's data, so it sends exactly A's update
    a, b = strong_and_weak
    twin = ClientUpdate("A2", a.tensors, a.meta, 3)

    # Execute
    alone = _shapley([a, b], digits, base_state, method="exact")["shapley"]
    paired = _shapley([a, twin, b], digits, base_state, method="exact")["shapley"]
    sampled = _shapley([a, twin, b], digits, base_state, method="gtg", seed=1)["shapley"]

    # Assert: A carries this round; with its twin present each gets about half
    assert alone["A"] > 5 * abs(alone["B"]) > 0
    assert paired["A"] == pytest.approx(paired["A2"], abs=1e-12)
    pair = paired["A"] + paired["A2"]
    # FedAvg utilities are averages, so the twin's extra weight adds a little (< 4/3).
    assert 0.85 * alone["A"] < pair < 1.3 * alone["A"]
    assert 0.4 * alone["A"] < paired["A"] < 0.65 * alone["A"]
    assert sampled["A"] == pytest.approx(sampled["A2"], abs=0.1 * alone["A"])
    assert sampled["A"] + sampled["A2"] == pytest.approx(pair, rel=0.05)


def test_efficiency_and_leave_one_out_match_a_torch_reference(strong_and_weak, digits,
                                                              base_state):
    # Prepare: v(N \ {A}) is B's model alone; v(N) the num_examples-weighted FedAvg
    a, b = strong_and_weak
    avg = {k: (400 * a.tensors[k] + 100 * b.tensors[k]) / 500 for k in a.tensors}

    def accuracy(state):
        return evaluate(load_state(build_model("digits-mlp"), state), digits.x_test,
                        digits.y_test)[0]

    # Execute
    result = _shapley([a, b], digits, base_state, method="exact", metric="accuracy", budget=10.0)

    # Assert
    v_all, v_empty = accuracy(avg), accuracy(base_state)
    assert result["utility"] == {"empty": v_empty, "all": v_all, "empty_model": "base"}
    assert sum(result["shapley"].values()) == pytest.approx(v_all - v_empty)
    assert result["leave_one_out"]["A"] == pytest.approx(v_all - accuracy(b.tensors))
    assert result["leave_one_out"]["B"] == pytest.approx(v_all - accuracy(a.tensors))
    assert sum(result["payouts"].values()) == pytest.approx(10.0)


def test_uniform_guess_is_the_empty_utility_without_a_base(strong_and_weak, digits):
    inputs = WorkloadInputs(job=JOB, updates=list(strong_and_weak),
                            arrays={"x_val": digits.x_test, "y_val": digits.y_test})
    result = run_workload("contribution", inputs, {"method": "exact"})
    assert result["utility"]["empty"] == pytest.approx(0.1)
    assert result["utility"]["empty_model"] == "uniform"


def test_bad_inputs(strong_and_weak, group_round, digits):
    val = {"x_val": digits.x_test, "y_val": digits.y_test}
    with pytest.raises(NotFound, match="validation set"):
        run_workload("contribution", WorkloadInputs(job=JOB, updates=group_round), {})
    with pytest.raises(BadRequest, match="limited to 8"):
        run_workload("contribution", WorkloadInputs(job=JOB, updates=group_round, arrays=val),
                     {"method": "exact"})
    with pytest.raises(BadRequest, match="names no model"):
        run_workload("contribution", WorkloadInputs(updates=group_round, arrays=val), {})
    bad_x = {"x_val": digits.x_test[:, :10], "y_val": digits.y_test}
    with pytest.raises(BadRequest, match="x_val"):
        run_workload("contribution", WorkloadInputs(job=JOB, updates=group_round, arrays=bad_x),
                     {})
    bad_y = {"x_val": digits.x_test, "y_val": digits.y_test + 10}
    with pytest.raises(BadRequest, match="labels must lie"):
        run_workload("contribution", WorkloadInputs(job=JOB, updates=group_round, arrays=bad_y),
                     {})
    with pytest.raises(BadRequest, match="unknown model"):
        run_workload("contribution", WorkloadInputs(job={"model": "gpt"}, updates=group_round,
                                                    arrays=val), {})
