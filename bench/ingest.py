"""Benchmark ``ingest``: parties POSTing updates through the gateway vs bare S3 PUTs.

Many concurrent parties upload real encoded updates (100 KB to 50 MB) through
the gateway, which validates, stores in S3 and records each one before
acknowledging.  The baseline PUTs the same bytes straight to the same S3 server
with the same concurrency, in the same run.  Afterwards every acknowledged
update is read back from S3 and compared byte for byte: ``lost`` counts
acknowledged updates that are missing or different.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests

from fedfaas import codec, keys
from fedfaas.devstack.localstack.stack import LocalStack, StackOptions
from fedfaas.store import ObjectStore, digest

FULL_SIZES_MB = [0.1, 0.5, 1, 2, 5, 10, 20, 50]
QUICK_SIZES_MB = [0.1, 0.5, 1, 5, 10, 20, 50]


def _make_update(size_mb: float, seed: int) -> np.ndarray:
    n = max(1, int(size_mb * 1024**2 / 4))
    return np.random.default_rng(seed).standard_normal(n, dtype=np.float32)


class _Sessions(threading.local):
    session: requests.Session | None = None


def _session(local: _Sessions) -> requests.Session:
    if local.session is None:
        local.session = requests.Session()
    return local.session


def _setup_job(base: str, admin: str, parties: int) -> tuple[str, list[tuple[str, str]]]:
    s = requests.Session()
    h = {"Authorization": f"Bearer {admin}"}
    job = s.post(f"{base}/v1/jobs", headers=h, timeout=30, json={
        "model": {"name": "bench", "size_bytes": 50 * 1024**2}, "t_wait_s": 3600, "rounds": 1,
        "quorum": 1}).json()
    enroll = {"Authorization": f"Bearer {job['enrollment_token']}"}
    out = []
    for i in range(parties):
        reg = s.post(f"{base}/v1/jobs/{job['job_id']}/parties", headers=enroll, timeout=30,
                     json={"party_id": f"p{i}"}).json()
        out.append((reg["party_id"], reg["token"]))
    s.post(f"{base}/v1/jobs/{job['job_id']}/rounds", headers=h, timeout=30).raise_for_status()
    return job["job_id"], out


def _gateway_pass(base: str, admin: str, arrays: list[np.ndarray], concurrency: int
                  ) -> tuple[float, list[dict[str, Any]], list[bytes], int]:
    job_id, parties = _setup_job(base, admin, len(arrays))
    bodies = [
        codec.encode({"w": a}, {"job": job_id, "round": 1, "party": pid, "num_examples": 1})
        for a, (pid, _) in zip(arrays, parties, strict=True)
    ]
    local = _Sessions()
    errors = 0
    lock = threading.Lock()

    def post(i: int) -> dict[str, Any] | None:
        nonlocal errors
        _pid, token = parties[i]
        resp = _session(local).post(f"{base}/v1/jobs/{job_id}/rounds/1/updates", data=bodies[i],
                                    headers={"Authorization": f"Bearer {token}"}, timeout=120)
        if resp.status_code not in (200, 201):
            with lock:
                errors += 1
            return None
        result: dict[str, Any] = resp.json()
        return result

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        acks = list(pool.map(post, range(len(bodies))))
    elapsed = time.perf_counter() - start
    return elapsed, [a for a in acks if a is not None], bodies, errors


def _direct_pass(store: ObjectStore, bodies: list[bytes], concurrency: int) -> float:
    run = uuid.uuid4().hex

    def put(i: int) -> None:
        store.put(keys.s3_bench_object("direct", run, str(i)), bodies[i])

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(put, range(len(bodies))))
    return time.perf_counter() - start


def run(quick: bool = False, topology: str = "loopback") -> dict[str, Any]:
    """Run the benchmark on a fresh local stack (Redis, S3, gateway) and return its figures.

    ``topology`` names the network the local stack runs on (``fedfaas up --topology``).
    """
    sizes = QUICK_SIZES_MB if quick else FULL_SIZES_MB
    copies = 2 if quick else 4
    reps = 2 if quick else 3
    concurrency = 8 if quick else 16
    arrays = [_make_update(mb, i) for i, mb in enumerate(sizes * copies)]
    total_bytes = sum(int(a.nbytes) for a in arrays)
    with tempfile.TemporaryDirectory(prefix="fedfaas-bench-ingest-") as tmp:
        stack = LocalStack(Path(tmp))
        print(f"starting local stack in {tmp} ...", flush=True)
        stack.up(StackOptions(components=("redis", "s3", "gateway"), gateway_workers=2, gateway_threads=16,
                              topology=topology))
        try:
            env = stack.env()
            admin = (Path(env["FEDFAAS_SECRETS_DIR"]) / "fedfaas-admin-token").read_text().strip()
            base = env["FEDFAAS_GATEWAY_URL"]
            store = ObjectStore(stack.settings())
            best_gw, best_s3 = float("inf"), float("inf")
            acked: list[dict[str, Any]] = []
            sent: dict[str, bytes] = {}
            errors = 0
            for rep in range(reps):
                elapsed, acks, bodies, errs = _gateway_pass(base, admin, arrays, concurrency)
                errors += errs
                acked += acks
                for ack in acks:
                    sent[ack["key"]] = bodies[int(ack["party"][1:])]
                direct = _direct_pass(store, bodies, concurrency)
                best_gw, best_s3 = min(best_gw, elapsed), min(best_s3, direct)
                print(f"rep {rep + 1}/{reps}: gateway {total_bytes / elapsed / 1e6:8.1f} MB/s   "
                      f"direct S3 {total_bytes / direct / 1e6:8.1f} MB/s", flush=True)
            print("verifying every acknowledged update in S3 ...", flush=True)
            stored = sum(
                1 for ack in acked
                if store.stat(ack["key"]) is not None and digest(store.get(ack["key"])) == ack["digest"]
                and ack["digest"] == digest(sent[ack["key"]])
            )
        finally:
            stack.down()
    mb = total_bytes / 1e6
    return {
        "bench": "ingest",
        "updates": len(arrays),
        "size_range_mb": [min(sizes), max(sizes)],
        "concurrency": concurrency,
        "updates_per_s": round(len(arrays) / best_gw, 2),
        "mb_per_s": round(mb / best_gw, 1),
        "direct_s3_mb_per_s": round(mb / best_s3, 1),
        "ratio_vs_direct_s3": round(best_s3 / best_gw, 3),
        "acked": len(acked),
        "stored": stored,
        "lost": len(acked) - stored,
        "errors": errors,
    }
