"""The enrollment token registers parties of its job and does nothing else.

Every party of a federation shares it (and it is not rate limited), so it may
read no job, round or model: the enrollment flow (``Party.register``) only
calls ``POST /v1/jobs/{job}/parties`` with it.  Real HTTP against real Redis,
S3 and gateway processes.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from fedfaas import codec
from tests.conftest import Api

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def job(api: Api) -> dict[str, Any]:
    """A job with an initial model, party ``p1`` registered, round 1 open and p1's update stored."""
    jid = f"en-{uuid.uuid4().hex[:10]}"
    created = api.call("POST", "/v1/jobs", api.admin_token, json={
        "job_id": jid, "model": {"name": "m", "size_bytes": 64}, "quorum": 1, "rounds": 2,
        "t_wait_s": 3600, "strategy": {"name": "lazy"}})
    assert created.status_code == 201, created.text
    model = codec.encode({"w": np.zeros(4, np.float32)}, {})
    assert api.call("PUT", f"/v1/jobs/{jid}/model", api.admin_token, data=model).status_code == 201
    reg = api.call("POST", f"/v1/jobs/{jid}/parties", created.json()["enrollment_token"],
                   json={"party_id": "p1"})
    assert reg.status_code == 201, reg.text
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 201
    update = codec.encode({"w": np.ones(4, np.float32)}, {"num_examples": 3})
    assert api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", reg.json()["token"],
                    data=update).status_code == 201
    return {"job_id": jid, "enroll": created.json()["enrollment_token"], "party": reg.json()["token"]}


#: Every route of a job, and what the enrollment token gets there: 403 where a party of
#: the job is let in (the token is known but may not do this), 404 where only admins
#: are (as for a party: the job is hidden).
ROUTES = [
    ("GET", "/v1/jobs/{job}", 403),
    ("GET", "/v1/jobs/{job}/model", 403),
    ("GET", "/v1/jobs/{job}/model?round=0", 403),
    ("GET", "/v1/jobs/{job}/rounds/0/model", 403),
    ("GET", "/v1/jobs/{job}/rounds/1", 403),
    ("GET", "/v1/jobs/{job}/parties/p1", 403),
    ("PATCH", "/v1/jobs/{job}/parties/p1", 403),
    ("POST", "/v1/jobs/{job}/rounds/1/updates", 403),
    ("GET", "/v1/jobs/{job}/rounds/1/updates/p1", 403),
    ("GET", "/v1/jobs/{job}/parties", 404),
    ("POST", "/v1/jobs/{job}/rounds", 404),
    ("PUT", "/v1/jobs/{job}/model", 404),
    ("PUT", "/v1/jobs/{job}/validation", 404),
    ("GET", "/v1/jobs/{job}/estimates", 404),
    ("POST", "/v1/jobs/{job}/queries", 404),
]


@pytest.mark.parametrize("method, path, expected", ROUTES)
def test_the_enrollment_token_is_refused_everywhere_but_registration(
        api: Api, job: dict[str, Any], method: str, path: str, expected: int) -> None:
    # Prepare
    url = path.format(job=job["job_id"])
    body = {"json": {"epoch_time_s": 1.0}} if method == "PATCH" else \
        {"data": codec.encode({"w": np.ones(4, np.float32)}, {"num_examples": 3})} \
        if method in ("POST", "PUT") and ("updates" in path or "model" in path) else {"json": {}}
    # Execute
    resp = api.call(method, url, job["enroll"], **body)
    # Assert
    assert resp.status_code == expected, (method, path, resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/json")
    if expected == 403:
        assert resp.json()["error"] == "forbidden"
        assert "enrollment token" in resp.json()["message"]


@pytest.mark.parametrize("path", ["/v1/jobs/{job}/model", "/v1/jobs/{job}/rounds/0/model",
                                  "/v1/jobs/{job}/rounds/1", "/v1/jobs/{job}"])
def test_what_the_enrollment_token_is_refused_a_party_and_the_admin_may_read(
        api: Api, job: dict[str, Any], path: str) -> None:
    # Prepare
    url = path.format(job=job["job_id"])
    # Execute
    by_party, by_admin = api.call("GET", url, job["party"]), api.call("GET", url, api.admin_token)
    # Assert: the 403s above are the token's scope, not a missing resource
    assert by_party.status_code == 200, by_party.text
    assert by_admin.status_code == 200, by_admin.text


def test_the_enrollment_token_registers_parties_of_its_own_job_only(api: Api, job: dict[str, Any]) -> None:
    # Prepare
    other = api.call("POST", "/v1/jobs", api.admin_token, json={
        "model": {"name": "m", "size_bytes": 64}, "quorum": 1, "rounds": 1}).json()
    # Execute
    own = api.call("POST", f"/v1/jobs/{job['job_id']}/parties", job["enroll"], json={"party_id": "p2"})
    foreign = api.call("POST", f"/v1/jobs/{other['job_id']}/parties", job["enroll"],
                       json={"party_id": "p2"})
    # Assert
    assert own.status_code == 201 and own.json()["party_id"] == "p2"
    assert len(own.json()["token"]) >= 32
    assert foreign.status_code == 404 and foreign.json()["error"] == "not_found"


def test_the_enrollment_token_has_no_operator_or_tenant_rights(api: Api, job: dict[str, Any]) -> None:
    # Execute
    answers = {
        "create tenant": api.call("POST", "/v1/tenants", job["enroll"], json={"tenant": "enr"}),
        "create job": api.call("POST", "/v1/jobs", job["enroll"],
                               json={"model": {"name": "m", "size_bytes": 64}}),
        "list jobs": api.call("GET", "/v1/jobs", job["enroll"]),
        "read a query": api.call("GET", "/v1/queries/0123456789abcdef0123", job["enroll"]),
    }
    # Assert
    for what, resp in answers.items():
        assert resp.status_code == 403, (what, resp.status_code, resp.text)
