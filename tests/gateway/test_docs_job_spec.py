"""A job spec names a fusion algorithm and its parameters; a bad one is a 400 at job creation."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import Api


def _spec(algorithm: dict) -> dict:
    return {"job_id": f"j-{uuid.uuid4().hex[:8]}", "model": {"name": "digits-mlp", "size_bytes": 4096},
            "algorithm": algorithm, "quorum": 1, "rounds": 1}


@pytest.mark.parametrize("algorithm", [
    {"name": "no-such-algorithm"},
    {"name": "fedprox", "params": {"bogus": 1}},
    {"name": "fedprox", "params": {"mu": -1}},
])
def test_a_job_with_an_algorithm_no_aggregation_could_run_is_refused(api: Api, algorithm: dict) -> None:
    # Prepare
    spec = _spec(algorithm)
    # Execute
    resp = api.call("POST", "/v1/jobs", api.admin_token, json=spec)
    # Assert
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "bad_request"
    assert api.call("GET", f"/v1/jobs/{spec['job_id']}", api.admin_token).status_code == 404


@pytest.mark.parametrize("algorithm", [
    {"name": "fedavg"},
    {"name": "fedprox", "params": {"mu": 0.01}},
    {"name": "trimmed-mean"},
])
def test_documented_algorithms_are_accepted(api: Api, algorithm: dict) -> None:
    # Execute
    resp = api.call("POST", "/v1/jobs", api.admin_token, json=_spec(algorithm))
    # Assert
    assert resp.status_code == 201, resp.text
