"""Ingest is linearizable per (job, round, party): concurrent different bodies, one winner.

Every race sends several different valid bodies for one party and round at
once, while other races load the gateway.  Exactly one is acknowledged (201);
its bytes are what S3 holds, what the update record's digest names, what
``GET`` returns and what aggregation fuses; every other body is refused (409)
and leaves no object behind.  Real gateway, Redis, S3 and aggregate function.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import redis
import requests

from fedfaas import codec, keys
from fedfaas.devstack.localstack.stack import LocalStack
from fedfaas.store import ObjectStore, digest
from tests.conftest import Api

pytestmark = pytest.mark.stack

RACES = 240
"""Parties in the round: one race each."""
BODIES_PER_RACE = 5
RACES_AT_ONCE = 8
"""Races run concurrently, so up to 40 uploads compete for the gateway's threads."""


def _body(party_index: int, attempt: int) -> bytes:
    value = float(party_index * 10 + attempt)
    return codec.encode({"w": np.full(64, value, np.float32)}, {"num_examples": attempt + 1})


def _race(base: str, jid: str, party_index: int, token: str) -> list[tuple[int, int, dict[str, Any]]]:
    """Send every body of one party at once; (attempt, status, answer) of each."""
    start = threading.Barrier(BODIES_PER_RACE)
    url = f"{base}/v1/jobs/{jid}/rounds/1/updates"

    def send(attempt: int) -> tuple[int, int, dict[str, Any]]:
        with requests.Session() as session:
            start.wait(timeout=30)
            resp = session.post(url, data=_body(party_index, attempt), timeout=120,
                                headers={"Authorization": f"Bearer {token}"})
            return attempt, resp.status_code, resp.json()

    with ThreadPoolExecutor(BODIES_PER_RACE) as pool:
        return list(pool.map(send, range(BODIES_PER_RACE)))


def test_concurrent_different_bodies_have_exactly_one_winner_whose_bytes_are_stored_and_fused(
        stack_api: Api, local_stack: LocalStack) -> None:
    # Prepare: one round with a party per race.
    api = stack_api
    job = api.call("POST", "/v1/jobs", api.admin_token, json={
        "job_id": f"race-{uuid.uuid4().hex[:8]}", "model": {"name": "mlp", "size_bytes": 256},
        "t_wait_s": 600, "quorum": RACES, "rounds": 1, "strategy": {"name": "lazy"}}).json()
    jid = job["job_id"]
    tokens = [api.call("POST", f"/v1/jobs/{jid}/parties", job["enrollment_token"],
                       json={"party_id": f"p{i:03d}"}).json()["token"] for i in range(RACES)]
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 201
    # Execute
    with ThreadPoolExecutor(RACES_AT_ONCE) as pool:
        outcomes = list(pool.map(lambda i: _race(api.base, jid, i, tokens[i]), range(RACES)))
    # Assert: per race, one 201 and 409 update_exists for the others.
    store = ObjectStore(local_stack.settings())
    client = redis.Redis.from_url(local_stack.env()["FEDFAAS_REDIS_URL"], socket_timeout=10)
    winners: dict[str, int] = {}
    for i, results in enumerate(outcomes):
        party = f"p{i:03d}"
        created = [a for a, status, _ in results if status == 201]
        refused = [(status, answer.get("error")) for a, status, answer in results if status != 201]
        assert len(created) == 1, (party, results)
        assert refused == [(409, "update_exists")] * (BODIES_PER_RACE - 1), (party, results)
        winner = created[0]
        winners[party] = winner
        body = _body(i, winner)
        objects = list(store.list(keys.s3_party_updates(job["tenant"], jid, 1, party)))
        assert objects == [keys.s3_update(job["tenant"], jid, 1, party, digest(body))], (party, objects)
        assert store.get(objects[0]) == body
        raw = client.hget(keys.round_updates(jid, 1), party)
        assert raw is not None and json.loads(raw)["digest"] == digest(body)
        served = api.call("GET", f"/v1/jobs/{jid}/rounds/1/updates/{party}", tokens[i])
        assert served.status_code == 200 and served.content == body
    # And aggregation fuses exactly the winners' bytes.
    status = _wait_closed(api, jid)
    assert status["state"] == "closed" and len(status["parties_included"]) == RACES, status
    model = codec.decode(api.call("GET", f"/v1/jobs/{jid}/model", api.admin_token).content).tensors["w"]
    weights = np.array([winners[f"p{i:03d}"] + 1 for i in range(RACES)], np.float64)
    values = np.array([i * 10 + winners[f"p{i:03d}"] for i in range(RACES)], np.float64)
    np.testing.assert_allclose(model, np.full(64, (weights * values).sum() / weights.sum()), rtol=1e-5)


def _wait_closed(api: Api, jid: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = api.call("GET", f"/v1/jobs/{jid}/rounds/1", api.admin_token).json()
        if status["state"] in ("closed", "failed"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"round 1 did not close: {status}")
