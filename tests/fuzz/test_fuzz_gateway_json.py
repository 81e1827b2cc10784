"""Property tests of every JSON body of the live gateway: 4xx JSON or accepted correctly, never 5xx."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedfaas.spec import PartyProfile
from tests.conftest import Api
from tests.fuzz.fuzzkit import LIVE, assert_clean, fresh_job, json_values

JSON = {"Content-Type": "application/json"}
pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

VALID_SPEC: dict[str, Any] = {
    "model": {"name": "m", "size_bytes": 100}, "quorum": 2, "rounds": 3, "t_wait_s": 30,
    "algorithm": {"name": "fedavg", "params": {}}, "strategy": {"name": "lazy", "batch_size": 4},
    "sync": {"unit": "epoch", "every": 1}, "nonfinite": "reject", "hyperparameters": {"lr": 0.1},
}
VALID_PROFILE: dict[str, Any] = {
    "mode": "active", "epoch_time_s": 3.5, "dataset_size": 100, "batch_size": 10,
    "hardware": {"cpus": 2, "gpus": 0}, "bandwidth_up_bps": 1e6,
}


def _mutations(valid: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The valid body, with one field replaced, dropped or added; or any JSON value at all."""
    keys = st.sampled_from(sorted(valid)) | st.text(max_size=12)
    replaced = st.tuples(keys, json_values).map(lambda kv: {**valid, kv[0]: kv[1]})
    dropped = st.sampled_from(sorted(valid)).map(lambda k: {x: v for x, v in valid.items() if x != k})
    maps = [k for k, v in valid.items() if isinstance(v, dict)]
    if not maps:
        return replaced | dropped | json_values
    nested = st.tuples(st.sampled_from(maps), st.text(max_size=10), json_values).map(
        lambda t: {**valid, t[0]: {**valid[t[0]], t[1]: t[2]}})
    return replaced | nested | dropped | json_values


@LIVE
@given(_mutations(VALID_SPEC))
def test_job_specs(api: Api, body: Any) -> None:
    # Prepare
    if isinstance(body, dict) and "job_id" not in body:
        body = {**body, "job_id": f"fz-{uuid.uuid4().hex[:10]}"}
    # Execute
    resp = api.call("POST", "/v1/jobs", api.admin_token, data=json.dumps(body), headers=JSON)
    # Assert
    assert_clean(resp, 201)
    if resp.status_code == 201:
        created = resp.json()
        stored = api.call("GET", f"/v1/jobs/{created['job_id']}", api.admin_token).json()
        assert stored["spec"] == created["spec"]
        assert created["job_id"] == body["job_id"]


@pytest.fixture(scope="module")
def job(api: Api) -> tuple[dict[str, Any], list[str]]:
    """A job with two parties and round 1 open."""
    return fresh_job(api, 2)


@LIVE
@given(_mutations(VALID_PROFILE))
def test_party_profiles(api: Api, job: tuple[dict[str, Any], list[str]], body: Any) -> None:
    # Prepare
    info, _ = job
    # Execute
    resp = api.call("POST", f"/v1/jobs/{info['job_id']}/parties", info["enrollment_token"],
                    data=json.dumps(body), headers=JSON)
    # Assert
    assert_clean(resp, 201)
    if resp.status_code == 201:
        party = resp.json()["party_id"]
        stored = api.call("GET", f"/v1/jobs/{info['job_id']}/parties/{party}", api.admin_token).json()
        expected = PartyProfile.model_validate(body).model_dump()
        assert {k: stored[k] for k in expected if k != "party_id"} == \
            {k: v for k, v in expected.items() if k != "party_id"}


@LIVE
@given(_mutations({"epoch_time_s": 2.0, "bandwidth_up_bps": 5e5}))
def test_party_reports(api: Api, job: tuple[dict[str, Any], list[str]], body: Any) -> None:
    # Prepare
    info, tokens = job
    url = f"/v1/jobs/{info['job_id']}/parties/p0"
    # Execute
    resp = api.call("PATCH", url, tokens[0], data=json.dumps(body), headers=JSON)
    # Assert
    assert_clean(resp, 200)
    profile = api.call("GET", url, tokens[0]).json()
    assert profile["party_id"] == "p0"
    if resp.status_code == 200 and isinstance(body, dict):
        changes = {k: v for k, v in body.items() if k != "party_id"}
        expected = PartyProfile.model_validate(changes).model_dump()
        assert all(profile[k] == expected[k] for k in changes)


@LIVE
@given(_mutations({"tenant": "acme"}))
def test_tenants(api: Api, body: Any) -> None:
    # Execute
    resp = api.call("POST", "/v1/tenants", api.admin_token, data=json.dumps(body), headers=JSON)
    # Assert
    assert_clean(resp, 201)
    if resp.status_code == 201:
        assert resp.json()["tenant"] == body["tenant"] and len(resp.json()["admin_token"]) >= 32


@LIVE
@given(_mutations({"workload": "clustering", "round": 1, "params": {"k": 2}}))
def test_queries(api: Api, job: tuple[dict[str, Any], list[str]], body: Any) -> None:
    # Execute
    resp = api.call("POST", f"/v1/jobs/{job[0]['job_id']}/queries?wait=0", api.admin_token,
                    data=json.dumps(body), headers=JSON)
    # Assert
    assert_clean(resp, 202)


@LIVE
@given(st.binary(max_size=200), st.sampled_from(["/v1/jobs", "/v1/tenants", "JOB/parties", "JOB/queries"]))
def test_bodies_that_are_not_json(api: Api, job: tuple[dict[str, Any], list[str]], raw: bytes,
                                  path: str) -> None:
    # Execute
    resp = api.call("POST", path.replace("JOB", f"/v1/jobs/{job[0]['job_id']}"), api.admin_token, data=raw,
                    headers={"Content-Type": "application/json"})
    # Assert
    assert_clean(resp, 201, 202)


@pytest.mark.parametrize("field", ["job_id", "tenant", "party_id"])
@pytest.mark.parametrize("value", ["abc\n", "a:b", "../a", "a/b", "ff:token:x", "A", "a" * 64])
def test_ids_that_could_inject_into_keys_are_refused(api: Api, job: tuple[dict[str, Any], list[str]],
                                                     field: str, value: str) -> None:
    # Prepare
    info, _ = job
    where = {"job_id": ("/v1/jobs", {**VALID_SPEC, "job_id": value}),
             "tenant": ("/v1/tenants", {"tenant": value}),
             "party_id": (f"/v1/jobs/{info['job_id']}/parties", {"party_id": value})}[field]
    # Execute
    resp = api.call("POST", where[0], api.admin_token, json=where[1])
    # Assert
    assert resp.status_code == 400, resp.text
    assert_clean(resp)
