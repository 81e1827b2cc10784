"""inference: predictions equal a direct torch forward pass; batches are validated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedfaas.errors import BadRequest, NotFound
from fedfaas.models import build_model, load_state, state_arrays
from fedfaas.workloads import WorkloadInputs, run_workload

JOB = {"model": "digits-mlp"}


def test_probabilities_match_torch(honest_round, digits):
    # Prepare
    weights = honest_round[0].tensors
    model = load_state(build_model("digits-mlp"), weights)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(digits.x_test[:20])).double(), 1).numpy()

    # Execute
    result = run_workload("inference", WorkloadInputs(job=JOB, round=4, global_models={4: weights},
                                                      arrays={"x": digits.x_test[:20]}), {})

    # Assert
    np.testing.assert_allclose(result["probabilities"], expected, atol=1e-6)
    assert result["labels"] == expected.argmax(axis=1).tolist()
    assert result["round"] == 4 and result["num_classes"] == 10


def test_cnn_takes_flat_or_image_batches_and_json_inputs(digits):
    # Prepare
    weights = state_arrays(build_model("digits-cnn", seed=3))
    job = {"model": {"name": "digits-cnn", "kwargs": {}}}
    x = digits.x_test[:5]

    # Execute
    flat = run_workload("inference", WorkloadInputs(job=job, global_models={1: weights},
                                                    arrays={"x": x}), {})
    image = run_workload("inference", WorkloadInputs(job=job, global_models={1: weights},
                                                     arrays={"x": x.reshape(5, 1, 8, 8)}), {})
    listed = run_workload("inference", WorkloadInputs(job=job, global_models={1: weights}),
                          {"inputs": x.tolist(), "probabilities": False})

    # Assert
    np.testing.assert_allclose(flat["probabilities"], image["probabilities"])
    assert listed["labels"] == flat["labels"] and listed["probabilities"] is None


def test_one_clients_model(honest_round, digits):
    inputs = WorkloadInputs(job=JOB, round=3, client="c1", updates=honest_round,
                            arrays={"x": digits.x_test[:3]})
    result = run_workload("inference", inputs, {"source": "client"})
    model = load_state(build_model("digits-mlp"), honest_round[1].tensors)
    with torch.no_grad():
        expected = model(torch.from_numpy(digits.x_test[:3])).argmax(1).tolist()
    assert result["labels"] == expected


def test_bad_inputs(honest_round, digits):
    weights = {3: honest_round[0].tensors}
    with pytest.raises(NotFound, match="global model"):
        run_workload("inference", WorkloadInputs(job=JOB, arrays={"x": digits.x_test}), {})
    with pytest.raises(NotFound, match="round 5"):
        run_workload("inference", WorkloadInputs(job=JOB, round=5, global_models=weights,
                                                 arrays={"x": digits.x_test}), {})
    with pytest.raises(BadRequest, match=r"expects \(N, 64\)"):
        run_workload("inference", WorkloadInputs(job=JOB, global_models=weights,
                                                 arrays={"x": np.zeros((2, 63))}), {})
    with pytest.raises(BadRequest, match="limit is 2"):
        run_workload("inference", WorkloadInputs(job=JOB, global_models=weights,
                                                 arrays={"x": digits.x_test[:3]}), {"max_rows": 2})
    with pytest.raises(BadRequest, match="not both"):
        run_workload("inference", WorkloadInputs(job=JOB, global_models=weights,
                                                 arrays={"x": digits.x_test[:3]}),
                     {"inputs": [[0.0] * 64]})
    with pytest.raises(BadRequest, match="numeric"):
        run_workload("inference", WorkloadInputs(job=JOB, global_models=weights),
                     {"inputs": [["a"] * 64]})
    with pytest.raises(BadRequest, match="NaN"):
        run_workload("inference", WorkloadInputs(job=JOB, global_models=weights),
                     {"inputs": [[float("nan")] * 64]})
    with pytest.raises(NotFound, match="client 'zed'"):
        run_workload("inference", WorkloadInputs(job=JOB, client="zed", updates=honest_round,
                                                 arrays={"x": digits.x_test[:3]}),
                     {"source": "client"})
