"""How the coordinator reads a closed round's status into per-round results."""

from __future__ import annotations

from fedfaas.devstack.demo.coordinator import JobDriver


def _status(arrived: int, closed_at: float, last: float) -> dict:
    return {"state": "closed", "started_at": 100.0, "deadline_at": 106.0, "closed_at": closed_at,
            "arrived": arrived, "expected": 4, "parties_included": ["a", "b", "c", "d"][:arrived],
            "aggregation_latency_s": closed_at - last, "last_arrival_at": last}


def test_round_with_every_update_could_close_at_the_last_arrival() -> None:
    # Execute
    result = JobDriver._result(2, _status(4, closed_at=104.5, last=103.0), [], [])
    # Assert
    assert result.close_latency_s == 1.5 and result.aggregation_latency_s == 1.5
    assert result.duration_s == 4.5 and result.included == 4


def test_round_missing_an_update_could_close_only_at_t_wait() -> None:
    # Execute
    result = JobDriver._result(3, _status(3, closed_at=106.75, last=102.0), ["d"], [])
    # Assert: the gateway counts from the last arrival, the close latency from t_wait
    assert result.aggregation_latency_s == 4.75
    assert result.close_latency_s == 0.75
    assert result.skipped == ["d"] and result.included == 3


def test_failed_round_has_no_latencies() -> None:
    # Prepare
    status = {"state": "failed", "started_at": 1.0, "deadline_at": 2.0, "closed_at": 2.5,
              "arrived": 1, "expected": 4, "reason": "quorum not met"}
    # Execute
    result = JobDriver._result(1, status, [], [])
    # Assert
    assert result.state == "failed" and result.reason == "quorum not met"
    assert result.close_latency_s is None and result.aggregation_latency_s is None
