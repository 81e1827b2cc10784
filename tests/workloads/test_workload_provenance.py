"""provenance: a client's lineage against numpy; hyperparameter changes by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads import ClientUpdate, WorkloadInputs, run_workload

GLOBALS = {0: {"w": np.array([0.0, 0.0]), "n": np.array(0)},
           1: {"w": np.array([1.0, 0.0]), "n": np.array(1)},
           2: {"w": np.array([1.0, 1.0]), "n": np.array(2)}}
UPDATES = [ClientUpdate("ann", {"w": np.array([3.0, 4.0]), "n": np.array(9)},
                        {"loss": 0.5, "sig": b"\x01"}, 2),
           ClientUpdate("ann", {"w": np.array([1.0, 0.0]), "n": np.array(9)}, {}, 1)]
RECORDS = [{"round": 1, "included": ["ann", "bob"], "clients": {"ann": {"train_time_s": 3.0}}},
           {"round": 2, "included": ["bob"], "hyperparameters": {"lr": 0.05}},
           {"round": 3, "hyperparameters": {"lr": 0.05, "local_epochs": 2}}]


def test_client_lineage():
    # Execute
    result = run_workload("provenance", WorkloadInputs(client="ann", updates=UPDATES,
                                                       global_models=GLOBALS, metadata=RECORDS),
                          {})

    # Assert
    assert result["rounds"] == [1, 2]
    assert result["rounds_included"] == [1]
    first, second = result["history"]
    assert first["distance_to_global"] == {"0": 1.0, "1": 0.0, "2": 1.0}
    assert first["update_norm"] == pytest.approx(1.0)
    assert first["metadata"] == {"train_time_s": 3.0}
    assert second["norm"] == pytest.approx(5.0)
    assert second["update_norm"] == pytest.approx(np.hypot(2, 4))
    assert second["drift_from_previous"] == pytest.approx(np.hypot(2, 4))
    assert second["cosine_to_global"]["2"] == pytest.approx(7 / (5 * np.sqrt(2)))
    assert second["closest_global_round"] == 2
    assert second["included"] is False
    assert second["metadata"] == {"loss": 0.5, "sig": None}  # bytes cannot go into JSON


def test_hyperparameter_tracking():
    # Execute
    job = {"hyperparameters": {"lr": 0.1, "local_epochs": 1}}
    result = run_workload("provenance", WorkloadInputs(job=job, metadata=RECORDS),
                          {"mode": "hyperparameters", "last_k": 2})

    # Assert
    assert [r["round"] for r in result["rounds"]] == [2, 3]
    assert result["rounds"][1]["hyperparameters"] == {"lr": 0.05, "local_epochs": 2}
    assert result["changes"] == [{"round": 3, "name": "local_epochs", "from": 1, "to": 2}]
    assert result["job_hyperparameters"] == {"lr": 0.1, "local_epochs": 1}


def test_bad_inputs():
    with pytest.raises(NotFound, match="updates of the client"):
        run_workload("provenance", WorkloadInputs(client="ann"), {})
    with pytest.raises(BadRequest, match="name the client"):
        run_workload("provenance", WorkloadInputs(updates=UPDATES), {})
    with pytest.raises(BadRequest, match="while tracing 'bob'"):
        run_workload("provenance", WorkloadInputs(updates=UPDATES), {"client": "bob"})
    with pytest.raises(BadRequest, match="same round"):
        run_workload("provenance", WorkloadInputs(client="ann", updates=[UPDATES[0]] * 2), {})
    with pytest.raises(BadRequest, match="does not match"):
        run_workload("provenance", WorkloadInputs(client="ann", updates=UPDATES,
                                                  global_models={0: {"w": np.zeros(3)}}), {})
    with pytest.raises(NotFound, match="metadata"):
        run_workload("provenance", WorkloadInputs(), {"mode": "hyperparameters"})
