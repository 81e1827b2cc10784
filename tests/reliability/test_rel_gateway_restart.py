"""The gateway SIGKILLed in the middle of a round, while it aggregates and takes uploads.

All the gateway's state is in Redis and S3: after a restart no acknowledged
update is lost, the round driver resumes where the dead one stopped, and the
round completes with the right model.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import redis
import requests

from fedfaas import codec, keys
from fedfaas.devstack.localstack.faults import crash, freeze
from fedfaas.store import ObjectStore, digest
from gateway.registry import Registry
from tests.reliability.conftest import FaultStack
from tests.reliability.faults import (
    Ledger,
    call,
    decode_model,
    lost_updates,
    make_job,
    max_abs_diff,
    upload,
    wait_round,
    weighted_mean,
)

pytestmark = pytest.mark.stack

PARTIES = 8


def _wait_step_in_flight(fs: FaultStack, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(i["inflight"] > 0 for i in fs.faas.instances().get("aggregate", [])):
            return True
        time.sleep(0.005)
    return False


def test_gateway_killed_mid_round_loses_no_acknowledged_update(fs: FaultStack) -> None:
    # Prepare
    rng = np.random.default_rng(5)
    # 8 MB updates: the one step the first batch starts must last long enough to be
    # seen in flight (and killed) on a loaded machine.
    data = [{"w": rng.standard_normal((2048, 1024), dtype=np.float32)} for _ in range(PARTIES)]
    jid, tokens = make_job(fs.session, fs.base, fs.admin, PARTIES,
                           {"name": "batched-serverless", "batch_size": 2})
    bodies = {f"p{p}": codec.encode(data[p], {"num_examples": 1 + p, "party": f"p{p}"})
              for p in range(PARTIES)}
    url = f"/v1/jobs/{jid}/rounds/1/updates"
    ledger = Ledger()
    for p in range(2):
        upload(fs.session, fs.base, url, tokens[p], bodies[f"p{p}"], f"p{p}", ledger)
    late = [threading.Thread(target=upload, daemon=True,
                             args=(requests.Session(), fs.base, url, tokens[p], bodies[f"p{p}"], f"p{p}",
                                   ledger, 120.0)) for p in range(2, PARTIES)]
    # Execute: kill while the driver is inside an aggregation step and uploads are on the wire
    stepping = _wait_step_in_flight(fs)
    for thread in late:
        thread.start()
    time.sleep(0.05)
    crash(fs.stack, "gateway")
    acked_before_restart = dict(ledger.acked)
    fs.stack.restart("gateway")
    for thread in late:
        thread.join(150)
    status = wait_round(fs.session, fs.base, jid, 1, fs.admin, timeout_s=120)
    # Assert
    assert stepping, "the driver never started an aggregation step"
    assert sorted(ledger.acked) == sorted(bodies), ledger.statuses
    assert set(acked_before_restart) <= set(ledger.acked)
    assert lost_updates(ObjectStore(fs.stack.settings()), ledger, bodies) == []
    assert ledger.errors_5xx == []
    assert status["state"] == "closed", status
    assert status["parties_included"] == sorted(bodies)
    model = decode_model(call(fs.session, "GET", f"{fs.base}/v1/jobs/{jid}/model", tokens[0]).content)
    assert max_abs_diff(model, weighted_mean(data, [1 + p for p in range(PARTIES)])) <= 1e-5


def test_an_arrival_announced_to_a_gateway_that_died_before_handling_it_still_closes_the_round(
        fs: FaultStack) -> None:
    # Prepare: p0 uploads; with the gateway frozen, p1's update is stored, recorded and
    # announced exactly as ingest does (so the frozen replica's consumers may have read
    # its arrival event, and will never acknowledge it); then the gateway dies.
    jid, tokens = make_job(fs.session, fs.base, fs.admin, 2, {"name": "lazy"})
    bodies = {p: codec.encode({"w": np.full(4, float(i + 1), np.float32)}, {"num_examples": 1})
              for i, p in enumerate(("p0", "p1"))}
    ledger = Ledger()
    upload(fs.session, fs.base, f"/v1/jobs/{jid}/rounds/1/updates", tokens[0], bodies["p0"], "p0", ledger)
    settings = fs.stack.settings()
    store = ObjectStore(settings)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    registry = Registry(client, store)
    freeze(fs.stack, "gateway")
    key = keys.s3_update("default", jid, 1, "p1", digest(bodies["p1"]))
    store.put(key, bodies["p1"])
    entry = {"party": "p1", "round": 1, "key": key, "digest": digest(bodies["p1"]),
             "size": len(bodies["p1"]), "num_examples": 1, "train_time_s": None,
             "arrived_at": time.time(), "nonfinite": 0}
    recorded = registry.record_update(registry.get_job(jid), 1, "p1", entry)
    time.sleep(0.5)
    crash(fs.stack, "gateway")
    fs.stack.restart("gateway")
    # Execute
    status = wait_round(fs.session, fs.base, jid, 1, fs.admin, timeout_s=60)
    retry = upload(fs.session, fs.base, f"/v1/jobs/{jid}/rounds/1/updates", tokens[1], bodies["p1"], "p1",
                   ledger)
    # Assert
    assert recorded.created
    assert status["state"] == "closed" and status["parties_included"] == ["p0", "p1"], status
    assert retry == 200 and ledger.acked["p1"]["duplicate"] is True
    model = decode_model(call(fs.session, "GET", f"{fs.base}/v1/jobs/{jid}/model", tokens[0]).content)
    np.testing.assert_array_equal(model["w"], np.full(4, 1.5, np.float32))
