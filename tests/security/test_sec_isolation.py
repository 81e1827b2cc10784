"""Parties and tenants are isolated: nobody uploads as, reads or manages someone else."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

from fedfaas import codec, keys
from fedfaas.devstack.localstack.stack import LocalStack
from fedfaas.store import ObjectStore
from tests.conftest import Api

pytestmark = pytest.mark.stack


def _tenant(api: Api) -> tuple[str, str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    resp = api.call("POST", "/v1/tenants", api.admin_token, json={"tenant": name})
    assert resp.status_code == 201, resp.text
    return name, resp.json()["admin_token"]


def _job(api: Api, admin: str, parties: tuple[str, ...] = ("alice", "bob")
         ) -> tuple[dict[str, Any], dict[str, str]]:
    resp = api.call("POST", "/v1/jobs", admin, json={
        "model": {"name": "m", "size_bytes": 64}, "quorum": len(parties), "rounds": 2, "t_wait_s": 600,
        "strategy": {"name": "lazy"}})
    assert resp.status_code == 201, resp.text
    job = resp.json()
    tokens = {p: api.call("POST", f"/v1/jobs/{job['job_id']}/parties", job["enrollment_token"],
                          json={"party_id": p}).json()["token"] for p in parties}
    assert api.call("POST", f"/v1/jobs/{job['job_id']}/rounds", admin).status_code == 201
    return job, tokens


def _body(party: str, value: float = 1.0) -> bytes:
    return codec.encode({"w": np.full(4, value, np.float32)}, {"party": party, "num_examples": 3})


def test_a_party_cannot_upload_as_another_party(api: Api, api_stack: LocalStack) -> None:
    # Prepare
    _, admin = _tenant(api)
    job, tokens = _job(api, admin)
    jid = job["job_id"]
    url = f"/v1/jobs/{jid}/rounds/1/updates"
    store = ObjectStore(api_stack.settings())
    # Execute
    as_bob = api.call("POST", url, tokens["alice"], data=_body("bob"))
    own = api.call("POST", url, tokens["alice"], data=_body("alice"))
    # Assert
    assert as_bob.status_code == 400 and "party" in as_bob.json()["message"]
    assert own.status_code == 201 and own.json()["party"] == "alice"
    status = api.call("GET", f"/v1/jobs/{jid}/rounds/1", admin).json()
    assert status["arrived_parties"] == ["alice"]
    assert not list(store.list(keys.s3_party_updates(job["tenant"], jid, 1, "bob")))


def test_a_party_cannot_read_another_partys_update_or_profile(api: Api) -> None:
    # Prepare
    _, admin = _tenant(api)
    job, tokens = _job(api, admin)
    jid = job["job_id"]
    body = _body("bob", 7.0)
    assert api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", tokens["bob"], data=body).status_code == 201
    bob_update = f"/v1/jobs/{jid}/rounds/1/updates/bob"
    # Execute
    by_alice = api.call("GET", bob_update, tokens["alice"])
    by_bob = api.call("GET", bob_update, tokens["bob"])
    by_admin = api.call("GET", bob_update, admin)
    round_for_alice = api.call("GET", f"/v1/jobs/{jid}/rounds/1", tokens["alice"]).json()
    # Assert
    assert by_alice.status_code == 404 and by_alice.json()["error"] == "not_found"
    assert by_bob.content == body and by_admin.content == body
    assert "arrived_parties" not in round_for_alice and round_for_alice["your_update"] is None
    assert api.call("GET", f"/v1/jobs/{jid}/parties/bob", tokens["alice"]).status_code == 404
    assert api.call("PATCH", f"/v1/jobs/{jid}/parties/bob", tokens["alice"],
                    json={"epoch_time_s": 1.0}).status_code == 404
    assert api.call("GET", f"/v1/jobs/{jid}/parties", tokens["alice"]).status_code == 404


def test_a_tenant_cannot_see_or_drive_another_tenants_job(api: Api) -> None:
    # Prepare
    tenant_a, admin_a = _tenant(api)
    _, admin_b = _tenant(api)
    job, tokens = _job(api, admin_a)
    other_job, other_tokens = _job(api, admin_b)
    jid = job["job_id"]
    # Execute
    answers = {
        "get job": api.call("GET", f"/v1/jobs/{jid}", admin_b),
        "list parties": api.call("GET", f"/v1/jobs/{jid}/parties", admin_b),
        "round status": api.call("GET", f"/v1/jobs/{jid}/rounds/1", admin_b),
        "start round": api.call("POST", f"/v1/jobs/{jid}/rounds", admin_b),
        "model": api.call("GET", f"/v1/jobs/{jid}/model", admin_b),
        "query": api.call("POST", f"/v1/jobs/{jid}/queries", admin_b, json={"workload": "clustering"}),
        "register party": api.call("POST", f"/v1/jobs/{jid}/parties", admin_b, json={"party_id": "eve"}),
        "other job's party": api.call("GET", f"/v1/jobs/{jid}/rounds/1", other_tokens["alice"]),
        "other job's party uploads": api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates",
                                              other_tokens["alice"], data=_body("alice")),
        "other job's enrollment": api.call("POST", f"/v1/jobs/{jid}/parties",
                                           other_job["enrollment_token"], json={"party_id": "eve"}),
    }
    listing = api.call("GET", f"/v1/jobs?tenant={tenant_a}", admin_b)
    # Assert
    for what, resp in answers.items():
        assert resp.status_code == 404, (what, resp.status_code, resp.text)
        assert resp.json()["error"] == "not_found", what
    assert listing.status_code == 403
    assert api.call("GET", f"/v1/jobs/{jid}", admin_a).status_code == 200
    assert api.call("GET", f"/v1/jobs/{jid}/rounds/1", tokens["alice"]).status_code == 200


def test_parties_and_enrollment_tokens_have_no_admin_rights(api: Api) -> None:
    # Prepare
    _, admin = _tenant(api)
    job, tokens = _job(api, admin)
    jid = job["job_id"]
    enroll = job["enrollment_token"]
    # Execute
    answers = {
        "party creates tenant": (api.call("POST", "/v1/tenants", tokens["alice"],
                                          json={"tenant": "x1"}), 403),
        "party creates job": (api.call("POST", "/v1/jobs", tokens["alice"],
                                       json={"model": {"name": "m", "size_bytes": 1}}), 403),
        "party starts round": (api.call("POST", f"/v1/jobs/{jid}/rounds", tokens["alice"]), 404),
        "party uploads model": (api.call("PUT", f"/v1/jobs/{jid}/model", tokens["alice"],
                                         data=_body("a")), 404),
        "party registers party": (api.call("POST", f"/v1/jobs/{jid}/parties", tokens["alice"],
                                           json={"party_id": "sybil"}), 403),
        "enrollment uploads": (api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", enroll,
                                        data=_body("alice")), 403),
        "tenant admin creates tenant": (api.call("POST", "/v1/tenants", admin, json={"tenant": "x2"}), 403),
    }
    # Assert
    for what, (resp, expected) in answers.items():
        assert resp.status_code == expected, (what, resp.status_code, resp.text)
        assert resp.headers["Content-Type"].startswith("application/json"), what
