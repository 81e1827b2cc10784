"""clustering: three planted client groups come out as three clusters, k chosen by silhouette."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas.errors import BadRequest
from fedfaas.workloads import ClientUpdate, WorkloadInputs, run_workload
from fedfaas.workloads.clustering import choose_clusters, cluster_updates


def _planted(updates: list[ClientUpdate]) -> list[set[str]]:
    return [{u.client for u in updates if u.client.startswith(f"g{g}")} for g in range(3)]


def test_three_planted_groups_are_found(group_round, base_state):
    # Execute
    result = run_workload("clustering",
                          WorkloadInputs(round=3, updates=group_round, base_model=base_state), {})

    # Assert
    assert result["k"] == 3
    assert result["chosen_by"] == "silhouette"
    best = max(result["silhouette"], key=lambda k: result["silhouette"][k] or -1)
    assert best == "3"
    found = [set(c["members"]) for c in result["clusters"]]
    assert sorted(map(sorted, found)) == sorted(map(sorted, _planted(group_round)))


def test_projection_keeps_the_groups(group_round, base_state):
    # Execute: the 6.6k-parameter MLP CountSketched down to 256 columns
    result = cluster_updates(group_round, base=base_state, projection_dim=256, seed=3)

    # Assert
    assert result["projected"] is True
    found = [set(c["members"]) for c in result["clusters"]]
    assert sorted(map(sorted, found)) == sorted(map(sorted, _planted(group_round)))


def test_representative_is_closest_to_centroid(group_round, base_state, flatten):
    # Prepare
    X = np.stack([flatten(u.tensors, base_state) for u in group_round])
    X /= np.linalg.norm(X, axis=1, keepdims=True)

    # Execute: no projection, so the reference sees the same vectors
    result = cluster_updates(group_round, base=base_state, projection_dim=10_000)

    # Assert
    assert result["projected"] is False
    for cluster in result["clusters"]:
        idx = [i for i, u in enumerate(group_round) if u.client in cluster["members"]]
        centroid = X[idx].mean(axis=0)
        dist = np.linalg.norm(X[idx] - centroid, axis=1)
        assert cluster["representative"] == group_round[idx[int(np.argmin(dist))]].client
        for i, d in zip(idx, dist, strict=True):
            assert result["distance_to_centroid"][group_round[i].client] == pytest.approx(d)


def test_labels_are_canonical_and_k_can_be_given():
    # Prepare: two obvious blobs; the first point's cluster is 0
    X = np.array([[10.0, 0], [0, 1], [10.1, 0], [0, 1.1]])

    # Execute
    fit = choose_clusters(X, k=2, seed=1)

    # Assert
    assert fit.labels.tolist() == [0, 1, 0, 1]
    assert fit.silhouettes == {}


def test_identical_updates_form_one_cluster():
    updates = [ClientUpdate(f"c{i}", {"w": np.ones(4)}) for i in range(4)]
    result = cluster_updates(updates)
    assert result["k"] == 1


def test_bad_parameters(group_round):
    with pytest.raises(BadRequest, match="exceeds"):
        cluster_updates(group_round, k=20)
    with pytest.raises(BadRequest, match=">= 3 clients"):
        cluster_updates(group_round[:2])
    with pytest.raises(BadRequest, match="'k_min'"):
        run_workload("clustering", WorkloadInputs(updates=group_round), {"k_min": 1})
    with pytest.raises(BadRequest, match="'seed'"):
        run_workload("clustering", WorkloadInputs(updates=group_round), {"seed": "x"})
