"""reputation: the documented decayed beta reputation, computed by hand."""

from __future__ import annotations

import pytest

from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads import WorkloadInputs, run_workload

RECORDS = [
    {"round": 2, "clients": {"a": {"on_time": True, "contribution": 0.1},
                             "b": {"on_time": True, "contribution": 0.05, "flagged": True}}},
    {"round": 1, "clients": {"a": {"on_time": True, "contribution": 0.2, "flagged": False},
                             "b": {"on_time": False, "contribution": -0.1}}},
]


def test_reputation_by_hand():
    # Execute
    result = run_workload("reputation", WorkloadInputs(metadata=RECORDS), {"decay": 0.5})

    # Assert: a: alpha = 0.5*2 + 2 = 3, beta = 0; b: alpha = 1.5, beta = 0.5*1.5 + 2 = 2.75
    a, b = result["scores"]["a"], result["scores"]["b"]
    assert a["reputation"] == pytest.approx(4 / 5)
    assert a["uncertainty"] == pytest.approx(2 / 5)
    assert b["reputation"] == pytest.approx(2.5 / 6.25)
    assert b["beta"] == pytest.approx(2.75)
    assert result["ranking"] == ["a", "b"]
    assert result["untrusted"] == ["b"]
    assert result["rounds"] == [1, 2]


def test_as_of_round_and_unknown_clients():
    # Execute
    result = run_workload("reputation", WorkloadInputs(metadata=RECORDS),
                          {"as_of_round": 1, "clients": ["a", "b", "newcomer"]})

    # Assert
    assert result["scores"]["a"]["reputation"] == pytest.approx(3 / 4)
    assert result["scores"]["b"]["reputation"] == pytest.approx(1 / 3.5)
    assert result["scores"]["newcomer"] == pytest.approx(
        {"reputation": 0.5, "uncertainty": 1.0, "alpha": 0.0, "beta": 0.0, "rounds": 0.0})


def test_bad_input():
    with pytest.raises(NotFound, match="metadata"):
        run_workload("reputation", WorkloadInputs(), {})
    with pytest.raises(BadRequest, match="'decay'"):
        run_workload("reputation", WorkloadInputs(metadata=RECORDS), {"decay": 0})
    with pytest.raises(BadRequest, match="at or before round 0"):
        run_workload("reputation", WorkloadInputs(metadata=RECORDS), {"as_of_round": 0})
