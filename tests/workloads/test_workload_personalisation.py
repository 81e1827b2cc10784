"""personalisation: each cluster's model is the FedAvg of exactly its planted members."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads import TENSORS_KEY, WorkloadInputs, get_workload, run_workload


def test_cluster_model_is_manual_fedavg_of_the_group(group_round, base_state):
    # Prepare: the planted group of g1c0, averaged by num_examples by hand
    group = [u for u in group_round if u.client.startswith("g1")]
    n = np.array([u.meta["num_examples"] for u in group], dtype=float)
    expected = {k: sum(w * u.tensors[k].astype(np.float64) for w, u in zip(n / n.sum(), group,
                                                                         strict=True))
                for k in group[0].tensors}

    # Execute
    result = run_workload("personalisation",
                          WorkloadInputs(round=3, client="g1c0", updates=group_round,
                                         base_model=base_state), {})

    # Assert
    assert sorted(result["members"]) == ["g1c0", "g1c1", "g1c2"]
    assert result["k"] == 3
    model = result[TENSORS_KEY]
    assert list(model) == list(group[0].tensors)
    for k, arr in expected.items():
        assert model[k].dtype == np.float32
        np.testing.assert_allclose(model[k], arr, rtol=1e-5, atol=1e-7)
    assert result["distance_to_global"] > 0
    assert get_workload("personalisation").returns_tensors


def test_cluster_by_id_without_model(group_round, base_state):
    # Execute
    result = run_workload("personalisation",
                          WorkloadInputs(updates=group_round, base_model=base_state),
                          {"cluster": 0, "return_model": False})

    # Assert: cluster 0 holds the first client, g0c0
    assert sorted(result["members"]) == ["g0c0", "g0c1", "g0c2"]
    assert TENSORS_KEY not in result


def test_bad_inputs(group_round):
    with pytest.raises(NotFound, match="has no update"):
        run_workload("personalisation", WorkloadInputs(client="nobody", updates=group_round), {})
    with pytest.raises(BadRequest, match="exactly one"):
        run_workload("personalisation", WorkloadInputs(updates=group_round), {})
    with pytest.raises(BadRequest, match="exactly one"):
        run_workload("personalisation", WorkloadInputs(updates=group_round),
                     {"client": "g0c0", "cluster": 1})
    with pytest.raises(NotFound, match="cluster 7"):
        run_workload("personalisation", WorkloadInputs(updates=group_round), {"cluster": 7})
