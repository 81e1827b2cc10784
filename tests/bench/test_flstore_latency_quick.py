"""Smoke test of the ``flstore-latency`` benchmark's machinery on the shared local stack.

FLStore (gateway -> Request Tracker -> cache function), ObjStore-Agg and
Cache-Agg (the baseline aggregator process reading S3 or Redis) must give the
same answer to every workload on the same data, and a request must survive
killed cache functions.  Timings are not asserted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import flstore_latency as bench
from fedfaas import meta
from fedfaas.models import build_model, state_arrays
from fedfaas.store import ObjectStore

pytestmark = pytest.mark.stack


def test_three_systems_agree_and_faults_are_survived(local_stack: Any, faas: Any) -> None:
    # Prepare
    setup = bench.Setup("digits-mlp", {"hidden": [32, 16]}, clients=4, reps=1)
    base = state_arrays(build_model(setup.model, seed=0, **setup.model_kwargs))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, 64)).astype(np.float32)
    env = local_stack.env()
    token = (Path(env["FEDFAAS_SECRETS_DIR"]) / "fedfaas-admin-token").read_text().strip()
    api = bench.Api(env["FEDFAAS_GATEWAY_URL"], token)
    job = bench.make_job(api, setup, base, x, rng.integers(0, 10, 8))
    settings = local_stack.settings()
    copied = bench.copy_to_redis(ObjectStore(settings), meta.connect(settings), job["tenant"],
                                 job["job_id"], setup)
    bench.wait_placed(faas, job["tenant"], job["job_id"], setup, timeout=30)
    queries = bench.queries_for(setup, x[:2])
    agg = bench.Aggregator(env)
    try:
        # Execute
        rows = {name: bench.measure(api, agg, job["job_id"], q, setup.reps)
                for name, q in queries.items()}
        faults = bench.fault_phase(api, faas, job["job_id"],
                                   {k: queries[k] for k in ("malicious-filter", "provenance")},
                                   requests=4, seed=3)
    finally:
        agg.close()

    # Assert
    assert copied > 0
    assert {name: row.get("errors") for name, row in rows.items()} == dict.fromkeys(queries)
    assert all(row["same_result"] for row in rows.values()), rows
    assert all(row["flstore_warm_misses"] == 0 for row in rows.values()), rows
    assert all(row["flstore_s"] and row["objstore_s"] and row["cache_s"] for row in rows.values())
    assert faults["failed_requests"] == 0, faults["fault_errors"]
    assert faults["requests"] == 4 and faults["faults_injected"] >= 1
