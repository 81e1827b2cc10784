"""Redis SIGKILLed and restarted mid-round: 503 while it is gone, every record back afterwards.

The local stack runs Redis with its append-only file on, and Redis writes each
command to that file before it replies, so a crashed Redis process loses
nothing the gateway was told had succeeded.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests

from fedfaas import codec
from fedfaas.devstack.localstack.faults import crash
from fedfaas.store import ObjectStore
from tests.reliability.conftest import FaultStack
from tests.reliability.faults import (
    Ledger,
    call,
    decode_model,
    log_text,
    lost_updates,
    make_job,
    upload,
    wait_round,
)

pytestmark = pytest.mark.stack

PARTIES = 4


def test_redis_crash_answers_503_and_recovers_jobs_rounds_and_updates(fs: FaultStack) -> None:
    # Prepare
    jid, tokens = make_job(fs.session, fs.base, fs.admin, PARTIES, {"name": "lazy"})
    url = f"/v1/jobs/{jid}/rounds/1/updates"
    bodies = {f"p{p}": codec.encode({"w": np.full(8, float(p), np.float32)}, {"num_examples": 1})
              for p in range(PARTIES)}
    ledger = Ledger()
    for p in range(2):
        assert upload(fs.session, fs.base, url, tokens[p], bodies[f"p{p}"], f"p{p}", ledger) == 201
    job_before = call(fs.session, "GET", f"{fs.base}/v1/jobs/{jid}", fs.admin).json()
    round_before = call(fs.session, "GET", f"{fs.base}/v1/jobs/{jid}/rounds/1", fs.admin).json()
    # Execute
    crash(fs.stack, "redis")
    fresh = requests.Session()
    during = fresh.post(fs.base + url, data=bodies["p2"], timeout=60,
                        headers={"Authorization": f"Bearer {tokens[2]}"})
    status_during = fresh.get(f"{fs.base}/v1/jobs/{jid}/rounds/1", timeout=60,
                              headers={"Authorization": f"Bearer {fs.admin}"})
    fs.stack.restart("redis")
    job_after = call(fs.session, "GET", f"{fs.base}/v1/jobs/{jid}", fs.admin).json()
    round_after = call(fs.session, "GET", f"{fs.base}/v1/jobs/{jid}/rounds/1", fs.admin).json()
    for p in range(2, PARTIES):
        upload(fs.session, fs.base, url, tokens[p], bodies[f"p{p}"], f"p{p}", ledger)
    closed = wait_round(fs.session, fs.base, jid, 1, fs.admin)
    # Assert
    for resp in (during, status_during):
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"] == "unavailable" and resp.headers["Retry-After"]
    assert job_after == job_before
    assert round_after["state"] == "open" and round_after["arrived_parties"] == ["p0", "p1"]
    assert round_after["deadline_at"] == round_before["deadline_at"]
    assert sorted(ledger.acked) == sorted(bodies)
    assert lost_updates(ObjectStore(fs.stack.settings()), ledger, bodies) == []
    assert closed["state"] == "closed" and closed["parties_included"] == sorted(bodies)
    model = decode_model(call(fs.session, "GET", f"{fs.base}/v1/jobs/{jid}/model", tokens[0]).content)
    np.testing.assert_allclose(model["w"], np.full(8, 1.5, np.float32))
    assert "Exception in thread" not in log_text(fs.stack, "gateway")
