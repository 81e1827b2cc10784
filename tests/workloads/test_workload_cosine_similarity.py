"""cosine-similarity: the Gram-matrix result equals scikit-learn's and a manual FedAvg."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads import ClientUpdate, WorkloadInputs, run_workload
from fedfaas.workloads.cosine_similarity import similarity


def test_matrix_matches_sklearn_on_deltas(honest_round, base_state, flatten):
    # Prepare
    X = np.stack([flatten(u.tensors, base_state) for u in honest_round])

    # Execute
    result = run_workload("cosine-similarity",
                          WorkloadInputs(round=3, updates=honest_round, base_model=base_state), {})

    # Assert
    np.testing.assert_allclose(np.array(result["matrix"]), sk_cosine(X), atol=1e-10)
    assert result["clients"] == [u.client for u in honest_round]
    assert result["round"] == 3


def test_similarity_to_fedavg_aggregate(honest_round, base_state, flatten):
    # Prepare: the aggregate weighted by num_examples, computed by hand
    X = np.stack([flatten(u.tensors, base_state) for u in honest_round])
    n = np.array([u.meta["num_examples"] for u in honest_round], dtype=float)
    agg = (n[:, None] * X).sum(axis=0) / n.sum()
    expected = X @ agg / (np.linalg.norm(X, axis=1) * np.linalg.norm(agg))

    # Execute
    result = similarity(honest_round, base=base_state)

    # Assert
    assert result["weighting"] == "num_examples"
    np.testing.assert_allclose([result["to_aggregate"][u.client] for u in honest_round],
                               expected, atol=1e-10)


def test_bfloat16_updates_and_float32_precision():
    # Prepare: three tiny updates, hand-computable
    vecs = [np.array([1.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.0]), np.array([0.0, 0.0, -2.0])]
    updates = [ClientUpdate(f"k{i}", {"w": v.astype(ml_dtypes.bfloat16)}) for i, v in
               enumerate(vecs)]

    # Execute
    result = similarity(updates, precision="float32", weighting="uniform")

    # Assert
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(result["matrix"], [[1, s, 0], [s, 1, 0], [0, 0, 1]], atol=1e-6)
    assert result["weighting"] == "uniform"


def test_zero_update_has_zero_similarity():
    updates = [ClientUpdate("a", {"w": np.zeros(3)}), ClientUpdate("b", {"w": np.ones(3)})]
    result = similarity(updates)
    assert result["matrix"][0] == [0.0, 0.0]
    assert result["to_aggregate"]["a"] == 0.0


def test_bad_inputs(honest_round):
    with pytest.raises(NotFound):
        run_workload("cosine-similarity", WorkloadInputs(), {})
    with pytest.raises(BadRequest, match="precision"):
        run_workload("cosine-similarity", WorkloadInputs(updates=honest_round),
                     {"precision": "float16"})
    mismatched = [honest_round[0], ClientUpdate("odd", {"w": np.zeros(2)})]
    with pytest.raises(BadRequest, match="different tensors"):
        similarity(mismatched)
    with pytest.raises(BadRequest, match="NaN"):
        similarity([ClientUpdate("a", {"w": np.array([np.nan])})])
