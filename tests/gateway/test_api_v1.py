"""Gateway API v1 end to end over real HTTP, Redis and S3."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from fedfaas import codec
from fedfaas.store import ObjectStore
from tests.conftest import Api


def _job(api: Api, **overrides: object) -> dict:
    spec = {"job_id": f"j-{uuid.uuid4().hex[:8]}", "model": {"name": "digits-mlp", "size_bytes": 4096},
            "t_wait_s": 60, "quorum": 2, "rounds": 3, **overrides}
    resp = api.call("POST", "/v1/jobs", api.admin_token, json=spec)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _party(api: Api, job: dict, name: str) -> str:
    resp = api.call("POST", f"/v1/jobs/{job['job_id']}/parties", job["enrollment_token"],
                    json={"party_id": name, "mode": "active", "epoch_time_s": 2.0})
    assert resp.status_code == 201, resp.text
    return resp.json()["token"]


def _update(job_id: str, rnd: int, party: str, value: float = 1.0) -> bytes:
    tensors = {"w": np.full((4, 4), value, np.float32), "b": np.zeros(4, np.float32)}
    return codec.encode(tensors, {"job": job_id, "round": rnd, "party": party, "num_examples": 10})


def test_update_is_in_s3_before_the_ack_and_resend_is_idempotent(api: Api, api_stack) -> None:  # type: ignore[no-untyped-def]
    # Prepare
    job = _job(api)
    jid = job["job_id"]
    token = _party(api, job, "alice")
    _party(api, job, "bob")
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 201
    body = _update(jid, 1, "alice")
    # Execute
    first = api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", token, data=body)
    again = api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", token, data=body)
    other = api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", token, data=_update(jid, 1, "alice", 2.0))
    # Assert
    assert first.status_code == 201, first.text
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert other.status_code == 409 and other.json()["error"] == "update_exists"
    store = ObjectStore(api_stack.settings())
    assert store.get(first.json()["key"]) == body
    status = api.call("GET", f"/v1/jobs/{jid}/rounds/1", api.admin_token).json()
    assert status["arrived"] == 1 and status["arrived_parties"] == ["alice"]


def test_bad_updates_get_clear_4xx(api: Api) -> None:
    # Prepare
    job = _job(api)
    jid = job["job_id"]
    token = _party(api, job, "alice")
    api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token)
    url = f"/v1/jobs/{jid}/rounds/1/updates"
    nan = codec.encode({"w": np.array([np.nan], np.float32)}, {"num_examples": 1})
    # Execute / Assert
    cases = {
        "truncated": (api.call("POST", url, token, data=_update(jid, 1, "alice")[:-7]), 400),
        "garbage": (api.call("POST", url, token, data=b"\x00" * 100), 400),
        "empty": (api.call("POST", url, token, data=b""), 400),
        "nan": (api.call("POST", url, token, data=nan), 400),
        "wrong party meta": (api.call("POST", url, token, data=_update(jid, 1, "mallory")), 400),
        "no token": (api.call("POST", url, None, data=_update(jid, 1, "alice")), 401),
        "bad token": (api.call("POST", url, "nope", data=_update(jid, 1, "alice")), 401),
        "admin cannot upload": (api.call("POST", url, api.admin_token, data=_update(jid, 1, "alice")), 403),
        "round not started": (api.call("POST", f"/v1/jobs/{jid}/rounds/2/updates", token,
                                       data=_update(jid, 2, "alice")), 404),
        "bad round": (api.call("POST", f"/v1/jobs/{jid}/rounds/x/updates", token, data=b"1"), 400),
    }
    for name, (resp, status) in cases.items():
        assert resp.status_code == status, (name, resp.status_code, resp.text)
        assert resp.headers["Content-Type"].startswith("application/json"), name
        assert resp.json()["message"], name


def test_update_after_t_wait_is_refused_and_counted(api: Api) -> None:
    # Prepare
    import time

    job = _job(api, t_wait_s=0.5)
    jid = job["job_id"]
    token = _party(api, job, "alice")
    api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token)
    time.sleep(0.8)
    # Execute
    resp = api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", token, data=_update(jid, 1, "alice"))
    # Assert
    assert resp.status_code == 409 and resp.json()["error"] == "round_closed"
    assert api.call("GET", f"/v1/jobs/{jid}", api.admin_token).json()["rejections"] == {"round_closed": 1}


def test_parties_cannot_read_each_other_or_admin_things(api: Api) -> None:
    # Prepare
    job = _job(api)
    jid = job["job_id"]
    alice = _party(api, job, "alice")
    bob = _party(api, job, "bob")
    api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token)
    api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", alice, data=_update(jid, 1, "alice"))
    # Execute / Assert
    assert api.call("GET", f"/v1/jobs/{jid}/rounds/1/updates/alice", bob).status_code == 404
    assert api.call("GET", f"/v1/jobs/{jid}/rounds/1/updates/alice", alice).status_code == 200
    assert api.call("GET", f"/v1/jobs/{jid}/rounds/1/updates/alice", api.admin_token).status_code == 200
    assert api.call("GET", f"/v1/jobs/{jid}/parties", bob).status_code == 404
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", bob).status_code == 404
    spec = {"model": {"name": "m", "size_bytes": 1}}
    assert api.call("POST", "/v1/jobs", bob, json=spec).status_code == 403


def test_tenants_are_isolated(api: Api) -> None:
    # Prepare
    t1 = api.call("POST", "/v1/tenants", api.admin_token, json={"tenant": f"t{uuid.uuid4().hex[:6]}"}).json()
    t2 = api.call("POST", "/v1/tenants", api.admin_token, json={"tenant": f"t{uuid.uuid4().hex[:6]}"}).json()
    spec = {"model": {"name": "m", "size_bytes": 10}}
    job = api.call("POST", "/v1/jobs", t1["admin_token"], json=spec).json()
    # Execute / Assert
    assert job["tenant"] == t1["tenant"]
    assert api.call("GET", f"/v1/jobs/{job['job_id']}", t2["admin_token"]).status_code == 404
    assert api.call("GET", f"/v1/jobs/{job['job_id']}", t1["admin_token"]).status_code == 200
    assert api.call("POST", "/v1/tenants", t1["admin_token"], json={"tenant": "x"}).status_code == 403


def test_invalid_job_specs_name_the_field(api: Api) -> None:
    resp = api.call("POST", "/v1/jobs", api.admin_token, json={"model": {"name": "m", "size_bytes": -1},
                                                                "t_wait_s": 0, "bogus": 1})
    assert resp.status_code == 400
    text = resp.json()["message"]
    assert "model.size_bytes" in text and "t_wait_s" in text and "bogus" in text
    assert api.call("POST", "/v1/jobs", api.admin_token, data=b"{not json").status_code == 400


def test_global_model_round_trip(api: Api) -> None:
    job = _job(api)
    jid = job["job_id"]
    token = _party(api, job, "alice")
    assert api.call("GET", f"/v1/jobs/{jid}/model", token).status_code == 404
    initial = codec.encode({"w": np.arange(3, dtype=np.float32)})
    assert api.call("PUT", f"/v1/jobs/{jid}/model", api.admin_token, data=initial).status_code == 201
    got = api.call("GET", f"/v1/jobs/{jid}/model", token)
    assert got.status_code == 200 and got.content == initial and got.headers["X-Fedfaas-Round"] == "0"


def test_round_lifecycle_rules(api: Api) -> None:
    job = _job(api)
    jid = job["job_id"]
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 409  # no parties
    _party(api, job, "alice")
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 201
    again = api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token)
    assert again.status_code == 409 and "still open" in again.json()["message"]
    assert api.call("GET", "/v1/nope", api.admin_token).status_code == 404


def test_round_can_select_a_subset_of_parties(api: Api) -> None:
    job = _job(api, quorum=1)
    jid = job["job_id"]
    alice = _party(api, job, "alice")
    bob = _party(api, job, "bob")
    bad = api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token, json={"parties": ["carol"]})
    assert bad.status_code == 400 and "carol" in bad.json()["message"]
    started = api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token, json={"parties": ["alice"]})
    assert started.status_code == 201 and started.json()["expected"] == 1
    refused = api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", bob, data=_update(jid, 1, "bob"))
    assert refused.status_code == 409
    assert api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", alice,
                    data=_update(jid, 1, "alice")).status_code == 201


def test_round_start_reports_the_jit_latency_target(api: Api) -> None:
    # A JIT job with a 12.5 s latency target: the round's estimate says so (plus the
    # model write); with "fastest" there is no target.
    for target, expected in ((12.5, 12.5), ("fastest", None)):
        job = _job(api, strategy={"name": "jit", "latency_target": target})
        _party(api, job, "alice")
        _party(api, job, "bob")
        resp = api.call("POST", f"/v1/jobs/{job['job_id']}/rounds", api.admin_token)
        assert resp.status_code == 201, resp.text
        got = resp.json()["estimate"]["target_latency_s"]
        assert got == (None if expected is None else pytest.approx(expected, abs=0.01))
    bad = api.call("POST", "/v1/jobs", api.admin_token,
                   json={"model": {"name": "m", "size_bytes": 8},
                         "strategy": {"name": "jit", "latency_target": "soon"}})
    assert bad.status_code == 400 and "latency_target" in bad.text


def test_a_round_for_fewer_parties_than_the_quorum_is_still_estimated(api: Api) -> None:
    # The job wants 2 updates; a round opened for alice alone needs just hers.
    job = _job(api, strategy={"name": "jit"})
    _party(api, job, "alice")
    _party(api, job, "bob")
    resp = api.call("POST", f"/v1/jobs/{job['job_id']}/rounds", api.admin_token,
                    json={"parties": ["alice"]})
    assert resp.status_code == 201, resp.text
    assert "estimate_error" not in resp.json(), resp.json()
    assert resp.json()["estimate"]["t_rnd_s"] > 0


def test_round_gate_checks_membership_without_the_expected_list(api: Api, api_stack) -> None:  # type: ignore[no-untyped-def]
    import redis

    from fedfaas import keys
    from fedfaas.errors import NotFound
    from gateway.registry import Registry

    job = _job(api, quorum=1)
    jid = job["job_id"]
    _party(api, job, "alice")
    _party(api, job, "bob")
    api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token, json={"parties": ["alice"]})
    client = redis.Redis.from_url(api_stack.env()["FEDFAAS_REDIS_URL"], socket_timeout=10)
    registry = Registry(client, ObjectStore(api_stack.settings()))
    gate = registry.round_gate(jid, 1, "alice")
    assert gate.expected and gate.state == "open" and gate.deadline_at > 0
    assert not registry.round_gate(jid, 1, "bob").expected
    # A round stored before the set existed: membership from its JSON list.
    client.delete(keys.round_expected(jid, 1))
    assert registry.round_gate(jid, 1, "alice").expected
    assert not registry.round_gate(jid, 1, "bob").expected
    with pytest.raises(NotFound):
        registry.round_gate(jid, 7, "alice")
