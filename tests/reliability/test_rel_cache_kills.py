"""Cache functions reclaimed while several non-training queries run at once (FLStore 4.4).

Every query must still get the right answer, from a replica or from S3.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from fedfaas import codec
from fedfaas.errors import FedfaasError
from tests.reliability.conftest import FaultStack
from tests.reliability.faults import Ledger, call, make_job, upload, wait_round

pytestmark = pytest.mark.stack

PARTIES = 5
QUERIES = 8


def test_concurrent_queries_survive_cache_functions_being_killed(fs: FaultStack) -> None:
    # Prepare: a closed round with one planted malicious party (sign-flipped, scaled)
    jid, tokens = make_job(fs.session, fs.base, fs.admin, PARTIES, {"name": "lazy"},
                           model={"name": "digits-mlp", "size_bytes": 8000})
    rng = np.random.default_rng(3)
    centre = rng.standard_normal(2000).astype(np.float32)
    ledger = Ledger()
    for p in range(PARTIES):
        w = centre + 0.05 * rng.standard_normal(2000).astype(np.float32)
        w = -10 * w if p == PARTIES - 1 else w
        upload(fs.session, fs.base, f"/v1/jobs/{jid}/rounds/1/updates", tokens[p],
               codec.encode({"fc.weight": w}, {"num_examples": 20}), f"p{p}", ledger)
    assert wait_round(fs.session, fs.base, jid, 1, fs.admin)["state"] == "closed"
    local = threading.local()

    def query(i: int) -> tuple[int, list[str] | None]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        resp = call(local.session, "POST", f"{fs.base}/v1/jobs/{jid}/queries", fs.admin,
                    json={"workload": "malicious-filter", "round": 1}, timeout_s=120)
        return resp.status_code, resp.json().get("result", {}).get("flagged")

    # Execute: queries in flight while every cache function is reclaimed once
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(query, i) for i in range(QUERIES)]
        killed = 0
        for i in range(4):
            try:
                fs.faas.kill(f"cache-{i}")
                killed += 1
            except FedfaasError:
                pass  # the instance is being replaced already
        answers = [f.result(timeout=180) for f in futures]
    # Assert
    assert killed >= 1
    assert answers == [(200, [f"p{PARTIES - 1}"])] * QUERIES
