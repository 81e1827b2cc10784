"""FLStore end to end: queries routed to cache functions, failover with killed instances, isolation."""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import pytest

from fedfaas import codec
from tests.conftest import Api

pytestmark = pytest.mark.stack


def _closed_round(api: Api, parties: int = 5, tenant_token: str | None = None) -> tuple[str, str]:
    token = tenant_token or api.admin_token
    job = api.call("POST", "/v1/jobs", token, json={
        "job_id": f"fl-{uuid.uuid4().hex[:8]}", "model": {"name": "digits-mlp", "size_bytes": 4000},
        "t_wait_s": 60, "quorum": parties, "rounds": 3, "strategy": {"name": "lazy"}}).json()
    jid = job["job_id"]
    tokens = [api.call("POST", f"/v1/jobs/{jid}/parties", job["enrollment_token"],
                       json={"party_id": f"c{i}"}).json()["token"] for i in range(parties)]
    api.call("POST", f"/v1/jobs/{jid}/rounds", token)
    rng = np.random.default_rng(1)
    centre = rng.standard_normal(2000).astype(np.float32)
    for i, tok in enumerate(tokens):
        w = centre + 0.05 * rng.standard_normal(2000).astype(np.float32)
        if i == parties - 1:
            w = -10 * w  # sign-flipped and scaled: the planted malicious client
        api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", tok,
                 data=codec.encode({"fc.weight": w}, {"num_examples": 20}))
    deadline = time.monotonic() + 60
    while api.call("GET", f"/v1/jobs/{jid}/rounds/1", token).json()["state"] != "closed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return jid, token


def _reclaim(faas: Any, function: str) -> None:
    import contextlib

    from fedfaas.errors import NotFound

    # NotFound: the instance is being replaced already.
    with contextlib.suppress(NotFound):
        faas.kill(function)


def _query(api: Api, jid: str, token: str, **body: Any) -> Any:
    return api.call("POST", f"/v1/jobs/{jid}/queries", token, json=body)


def test_query_runs_on_a_cache_function_and_finds_the_planted_client(stack_api: Api) -> None:
    jid, token = _closed_round(stack_api)
    resp = _query(stack_api, jid, token, workload="malicious-filter", round=1)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert answer["status"] == "done" and answer["function"].startswith("cache-")
    assert answer["result"]["flagged"] == ["c4"]
    again = _query(stack_api, jid, token, workload="cosine-similarity", round=1).json()
    assert again["hits"] >= 5 and again["misses"] == 0
    matrix = np.array(again["result"]["matrix"])
    assert matrix.shape == (5, 5) and matrix[4, 0] < -0.9


def test_async_query_can_be_polled(stack_api: Api) -> None:
    jid, token = _closed_round(stack_api)
    resp = stack_api.call("POST", f"/v1/jobs/{jid}/queries?wait=0", token,
                          json={"workload": "clustering", "round": 1, "params": {"seed": 0}})
    assert resp.status_code == 202
    request_id = resp.json()["request_id"]
    deadline = time.monotonic() + 60
    while True:
        status = stack_api.call("GET", f"/v1/queries/{request_id}", token).json()
        if status["status"] in ("done", "failed"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status["status"] == "done", status
    assert len(status["result"]["assignments"]) == 5


def test_queries_survive_killed_cache_functions(stack_api: Api, faas: Any) -> None:
    jid, token = _closed_round(stack_api)
    served = _query(stack_api, jid, token, workload="malicious-filter", round=1).json()["function"]
    failures = 0
    for attempt in range(4):
        _reclaim(faas, served)
        resp = _query(stack_api, jid, token, workload="malicious-filter", round=1)
        if resp.status_code != 200 or resp.json()["result"]["flagged"] != ["c4"]:
            failures += 1
        served = resp.json().get("function", served)
        if attempt == 2:
            for i in range(4):  # every copy gone: the workload function reads S3
                _reclaim(faas, f"cache-{i}")
    assert failures == 0


def test_bad_queries_get_clear_4xx(stack_api: Api) -> None:
    jid, token = _closed_round(stack_api)
    cases = [
        ({"workload": "nope"}, 404),
        ({"workload": "malicious-filter", "round": 9}, 404),
        ({"workload": "malicious-filter", "round": "x"}, 400),
        ({"workload": "clustering", "params": {"k": "many"}}, 400),
        ({"round": 1}, 400),
        ({"workload": "provenance"}, 400),
    ]
    for body, status in cases:
        resp = _query(stack_api, jid, token, **body)
        assert resp.status_code == status, (body, resp.status_code, resp.text)
        assert resp.json()["message"]
    assert _query(stack_api, "no-such-job", token, workload="clustering").status_code == 404


def test_tenants_cannot_query_each_other(stack_api: Api) -> None:
    t1 = stack_api.call("POST", "/v1/tenants", stack_api.admin_token,
                        json={"tenant": f"a{uuid.uuid4().hex[:6]}"}).json()["admin_token"]
    t2 = stack_api.call("POST", "/v1/tenants", stack_api.admin_token,
                        json={"tenant": f"b{uuid.uuid4().hex[:6]}"}).json()["admin_token"]
    jid, _ = _closed_round(stack_api, tenant_token=t1)
    assert _query(stack_api, jid, t2, workload="malicious-filter", round=1).status_code == 404
    ok = _query(stack_api, jid, t1, workload="malicious-filter", round=1)
    assert ok.status_code == 200
    request_id = ok.json()["request_id"]
    assert stack_api.call("GET", f"/v1/queries/{request_id}", t2).status_code == 404
