"""scheduling: the documented score by hand, top-k, exploration and cluster round-robin."""

from __future__ import annotations

import pytest

from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads import WorkloadInputs, get_workload, run_workload
from fedfaas.workloads.scheduling import performance_scores, select_by_clusters

RECORDS = [
    {"round": 1, "clients": {
        "a": {"train_time_s": 10.0, "available": True, "on_time": True},
        "b": {"train_time_s": 20.0, "on_time": False},
        "c": {"train_time_s": 40.0, "available": False}}},
    {"round": 2, "clients": {
        "a": {"train_time_s": 10.0, "on_time": True},
        "b": {"train_time_s": 20.0, "on_time": True}}},
]


def test_performance_scores_by_hand():
    # Execute: T_ref = median(10, 20, 40) = 20
    scores = performance_scores(RECORDS, ["a", "b", "c"])

    # Assert: 0.4 speed + 0.3 availability + 0.3 on-time, Laplace-smoothed rates
    assert scores["a"]["score"] == pytest.approx(0.4 * 1 + 0.3 * 2 / 3 + 0.3 * 3 / 4)
    assert scores["b"]["score"] == pytest.approx(0.4 * 1 + 0.3 * 1 / 2 + 0.3 * 2 / 4)
    assert scores["c"]["score"] == pytest.approx(0.4 * 0.5 + 0.3 * 1 / 3 + 0.3 * 1 / 2)
    assert scores["c"]["train_time_s"] == 40.0


def test_top_clients_by_performance():
    # Execute
    result = run_workload("scheduling", WorkloadInputs(metadata=RECORDS), {"num_clients": 2})

    # Assert
    assert result["selected"] == ["a", "b"]
    assert result["rounds_scored"] == [1, 2]


def test_exploration_draws_from_the_rest_reproducibly():
    # Prepare
    params = {"num_clients": 2, "explore": 0.5, "seed": 7}

    # Execute
    first = run_workload("scheduling", WorkloadInputs(metadata=RECORDS), params)
    again = run_workload("scheduling", WorkloadInputs(metadata=RECORDS), params)

    # Assert
    assert first["selected"][0] == "a"
    assert first["explored"] == first["selected"][1:] and first["explored"][0] in ("b", "c")
    assert first == again


def test_cluster_round_robin_prefers_diversity():
    # Prepare: a and b share a cluster, c is alone
    scores = {"a": 0.9, "b": 0.8, "c": 0.1}

    # Execute
    picked = select_by_clusters(scores, {"a": 0, "b": 0, "c": 1}, 2)

    # Assert
    assert picked == ["a", "c"]


def test_clusters_from_the_round_updates(group_round, base_state):
    # Execute
    result = run_workload("scheduling",
                          WorkloadInputs(round=3, updates=group_round, base_model=base_state),
                          {"mode": "clusters", "num_clients": 3})

    # Assert: one client from each planted group
    assert sorted(c[:2] for c in result["selected"]) == ["g0", "g1", "g2"]


def test_needs_depend_on_mode_and_bad_input_is_rejected():
    spec_needs = get_workload("scheduling").data_needs
    assert spec_needs({"mode": "clusters"}) == {"round_updates"}
    assert spec_needs({"mode": "clusters", "clusters": {"a": 1}}) == frozenset()
    with pytest.raises(NotFound, match="metadata"):
        run_workload("scheduling", WorkloadInputs(), {})
    with pytest.raises(BadRequest, match="'num_clients'"):
        run_workload("scheduling", WorkloadInputs(metadata=RECORDS), {"num_clients": 0})
    with pytest.raises(BadRequest, match="have no cluster"):
        run_workload("scheduling", WorkloadInputs(metadata=RECORDS),
                     {"mode": "clusters", "clusters": {"a": 0}, "candidates": ["a", "b"]})
    with pytest.raises(BadRequest, match="integer 'round'"):
        run_workload("scheduling", WorkloadInputs(metadata=[{"clients": {}}]), {})
