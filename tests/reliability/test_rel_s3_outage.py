"""S3 frozen for a while: uploads get 503 with Retry-After, never a 2xx without the data stored.

A frozen S3 (SIGSTOP: sockets open, no answers) is the nastier outage: nothing
fails fast, so only the gateway's timeouts stand between a party and a hung
request.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests

from fedfaas import codec, keys
from fedfaas.devstack.localstack.faults import freeze, thaw
from fedfaas.store import ObjectStore, digest
from tests.reliability.conftest import FaultStack
from tests.reliability.faults import (
    Ledger,
    call,
    lost_updates,
    make_job,
    upload,
)

pytestmark = pytest.mark.stack

PARTIES = 3


def test_frozen_s3_gives_503_with_retry_after_and_uploads_succeed_once_it_is_back(
        fs: FaultStack) -> None:
    # Prepare
    jid, tokens = make_job(fs.session, fs.base, fs.admin, PARTIES, {"name": "lazy"}, rounds=3)
    url = f"{fs.base}/v1/jobs/{jid}/rounds/1/updates"
    bodies = {f"p{p}": codec.encode({"w": np.arange(16, dtype=np.float32) * p}, {"num_examples": 2})
              for p in range(PARTIES)}
    store = ObjectStore(fs.stack.settings())
    session = requests.Session()
    # Execute
    freeze(fs.stack, "s3")
    try:
        during = [session.post(url, data=bodies[f"p{p}"], timeout=60,
                               headers={"Authorization": f"Bearer {tokens[p]}"}) for p in range(2)]
        model_during = session.get(f"{fs.base}/v1/jobs/{jid}/model?round=0", timeout=60,
                                   headers={"Authorization": f"Bearer {tokens[0]}"})
        arrived_during = call(session, "GET", f"{fs.base}/v1/jobs/{jid}/rounds/1", fs.admin).json()
    finally:
        thaw(fs.stack, "s3")
    ledger = Ledger()
    after = [upload(session, fs.base, f"/v1/jobs/{jid}/rounds/1/updates", tokens[p], bodies[f"p{p}"],
                    f"p{p}", ledger) for p in range(PARTIES)]
    # Assert
    for resp in [*during, model_during]:
        assert resp.status_code == 503, resp.text
        assert resp.headers["Retry-After"] and resp.json()["error"] == "unavailable"
    assert arrived_during["arrived"] == 0
    assert after == [201] * PARTIES
    assert lost_updates(store, ledger, bodies) == []
    for p in range(PARTIES):
        body = bodies[f"p{p}"]
        assert store.get(keys.s3_update("default", jid, 1, f"p{p}", digest(body))) == body
