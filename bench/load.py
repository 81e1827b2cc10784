"""Benchmark ``load``: 10,000 parties (``--quick``: 1,000) join one job and each uploads one update.

Scale test of the whole FL path on a fresh local stack (Redis, S3, the
function router, the gateway): every party registers, round 1 opens with all
of them expected, each party POSTs one 100k-parameter float32 update with
bounded client concurrency, and the round aggregates through the
``aggregate`` function (batched-serverless, JIT paper section 3) and closes
when the last update arrived.

Checks, not just timings: every acknowledged update is listed in S3 and a
sample is read back and compared digest for digest (``lost`` counts
acknowledged updates missing or different), and the global model is compared
with the FedAvg the client computes itself.  Baseline, same run: bare S3 PUTs
of the same bodies at the same concurrency.

FLStore's placement is switched off here: it would load the 4 GB of updates
into cache functions, which measures the cache, not ingest and aggregation.
"""

from __future__ import annotations

import hashlib
import random
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

PARAMS = 100_000
RETRYABLE = (429, 503)


def _tensor(party: int) -> np.ndarray:
    return np.random.default_rng(party).standard_normal(PARAMS, dtype=np.float32)


def _body(job_id: str, party: int) -> bytes:
    return codec.encode({"w": _tensor(party)}, {"job": job_id, "round": 1, "party": f"p{party}",
                                                "num_examples": 1})


class _Clients(threading.local):
    session: requests.Session | None = None

    def get(self) -> requests.Session:
        if self.session is None:
            self.session = requests.Session()
        return self.session


class _Tally:
    """Latencies and statuses of many concurrent requests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies_ms: list[float] = []
        self.retries = 0
        self.errors_5xx = 0
        self.errors_4xx = 0

    def add(self, ms: float, status: int) -> None:
        with self.lock:
            if status in RETRYABLE:
                self.retries += 1
            elif status >= 500:
                self.errors_5xx += 1
            elif status >= 400:
                self.errors_4xx += 1
            else:
                self.latencies_ms.append(ms)

    def percentile(self, q: float) -> float:
        return round(float(np.percentile(self.latencies_ms, q)), 1) if self.latencies_ms else 0.0


def _send(clients: _Clients, tally: _Tally, method: str, url: str, token: str, **kwargs: Any
          ) -> requests.Response | None:
    """One request, retried on 429/503 as the SDK does; None when it never succeeded."""
    for _attempt in range(20):
        start = time.perf_counter()
        try:
            resp = clients.get().request(method, url, headers={"Authorization": f"Bearer {token}"},
                                         timeout=120, **kwargs)
        except requests.RequestException:
            tally.add(0.0, 599)
            time.sleep(0.5)
            continue
        tally.add((time.perf_counter() - start) * 1000, resp.status_code)
        if resp.status_code not in RETRYABLE:
            return resp if resp.status_code < 300 else None
        time.sleep(min(float(resp.headers.get("Retry-After", "1")), 2.0))
    return None


def _register(base: str, enroll: str, job_id: str, parties: int, concurrency: int
              ) -> tuple[dict[int, str], _Tally, float]:
    clients, tally = _Clients(), _Tally()

    def one(i: int) -> tuple[int, str | None]:
        resp = _send(clients, tally, "POST", f"{base}/v1/jobs/{job_id}/parties", enroll,
                     json={"party_id": f"p{i}", "epoch_time_s": 10.0, "bandwidth_up_bps": 1e7})
        return i, None if resp is None else str(resp.json()["token"])

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = {i: t for i, t in pool.map(one, range(parties)) if t is not None}
    return tokens, tally, time.perf_counter() - start


def _upload(base: str, job_id: str, tokens: dict[int, str], concurrency: int
            ) -> tuple[dict[int, dict[str, Any]], dict[int, str], _Tally, float]:
    clients, tally = _Clients(), _Tally()
    lock = threading.Lock()
    acked: dict[int, dict[str, Any]] = {}
    sent: dict[int, str] = {}

    def one(i: int) -> None:
        body = _body(job_id, i)
        url = f"{base}/v1/jobs/{job_id}/rounds/1/updates"
        resp = _send(clients, tally, "POST", url, tokens[i], data=body)
        with lock:
            sent[i] = digest(body)
            if resp is not None:
                acked[i] = resp.json()

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, sorted(tokens)))
    return acked, sent, tally, time.perf_counter() - start


def _wait_closed(base: str, admin: str, job_id: str, timeout_s: float) -> dict[str, Any]:
    session = requests.Session()
    deadline = time.monotonic() + timeout_s
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = session.get(f"{base}/v1/jobs/{job_id}/rounds/1", timeout=60,
                           headers={"Authorization": f"Bearer {admin}"})
        if resp.status_code == 200:
            status = resp.json()
            if status["state"] in ("closed", "failed"):
                return status
        time.sleep(0.25)
    return status


def _verify(store: ObjectStore, job_id: str, acked: dict[int, dict[str, Any]], sent: dict[int, str],
            sample: int) -> tuple[int, int]:
    """(acknowledged updates listed in S3, digest mismatches in a read-back sample)."""
    listed = set(store.list(keys.s3_round_updates('default', job_id, 1)))
    stored = sum(1 for ack in acked.values() if ack["key"] in listed)
    chosen = random.Random(0).sample(sorted(acked), min(sample, len(acked)))
    bad = sum(1 for i in chosen
              if digest(store.get(acked[i]["key"])) != sent[i] or acked[i]["digest"] != sent[i])
    return stored, bad


def _direct_s3(store: ObjectStore, job_id: str, count: int, concurrency: int) -> float:
    run = uuid.uuid4().hex

    def put(i: int) -> None:
        body = _body(job_id, i)
        store.put(keys.s3_bench_object("load-direct", run, f"p{i}"), body,
                  sha256=hashlib.sha256(body).hexdigest())

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(put, range(count)))
    return count / (time.perf_counter() - start)


def _expected_model(parties: list[int]) -> np.ndarray:
    total = np.zeros(PARAMS, np.float64)
    for i in parties:
        total += _tensor(i)
    return total / max(1, len(parties))


def run(quick: bool = False, topology: str = "loopback") -> dict[str, Any]:
    """Run the load test on a fresh full local stack and return its figures.

    ``topology`` names the network the local stack runs on (``fedfaas up --topology``).
    """
    parties = 1_000 if quick else 10_000
    concurrency = 16 if quick else 32
    batch = 100 if quick else 500
    with tempfile.TemporaryDirectory(prefix="fedfaas-bench-load-") as tmp:
        stack = LocalStack(Path(tmp))
        print(f"starting the full local stack in {tmp} ...", flush=True)
        stack.up(StackOptions(extra_env={"FEDFAAS_FLSTORE": "0"}, topology=topology))
        try:
            env = stack.env()
            base = env["FEDFAAS_GATEWAY_URL"]
            admin = (Path(env["FEDFAAS_SECRETS_DIR"]) / "fedfaas-admin-token").read_text().strip()
            store = ObjectStore(stack.settings())
            job = requests.post(f"{base}/v1/jobs", headers={"Authorization": f"Bearer {admin}"}, timeout=60,
                                json={"model": {"name": "load", "size_bytes": PARAMS * 4}, "rounds": 1,
                                      "quorum": parties, "t_wait_s": 3600,
                                      "strategy": {"name": "batched-serverless", "batch_size": batch}})
            job.raise_for_status()
            job_id, enroll = job.json()["job_id"], job.json()["enrollment_token"]
            print(f"registering {parties} parties ({concurrency} at a time) ...", flush=True)
            tokens, reg, reg_s = _register(base, enroll, job_id, parties, concurrency)
            print(f"  {len(tokens)} registered in {reg_s:.1f} s ({len(tokens) / reg_s:.0f}/s, "
                  f"p50 {reg.percentile(50)} ms, p99 {reg.percentile(99)} ms)", flush=True)
            requests.post(f"{base}/v1/jobs/{job_id}/rounds", headers={"Authorization": f"Bearer {admin}"},
                          timeout=60).raise_for_status()
            print(f"uploading {len(tokens)} updates of {PARAMS} float32 ...", flush=True)
            acked, sent, up, up_s = _upload(base, job_id, tokens, concurrency)
            last_ack = time.monotonic()
            print(f"  {len(acked)} acknowledged in {up_s:.1f} s ({len(acked) / up_s:.0f}/s, "
                  f"p50 {up.percentile(50)} ms, p99 {up.percentile(99)} ms)", flush=True)
            status = _wait_closed(base, admin, job_id, timeout_s=1800)
            wall_agg = time.monotonic() - last_ack
            print(f"round {status.get('state')} {wall_agg:.1f} s after the last acknowledgement", flush=True)
            completed = status.get("state") == "closed"
            model_diff = None
            if completed:
                raw = requests.get(f"{base}/v1/jobs/{job_id}/model", timeout=120,
                                   headers={"Authorization": f"Bearer {admin}"}).content
                got = codec.decode(raw).tensors["w"].astype(np.float64)
                model_diff = float(np.max(np.abs(got - _expected_model(sorted(acked)))))
            print("verifying acknowledged updates in S3 ...", flush=True)
            stored, mismatched = _verify(store, job_id, acked, sent, sample=len(acked) if quick else 1000)
            direct = _direct_s3(store, job_id, min(1000, parties), concurrency)
        finally:
            stack.down()
    updates_per_s = len(acked) / up_s
    return {
        "bench": "load",
        "parties": parties,
        "params_per_update": PARAMS,
        "concurrency": concurrency,
        "registered": len(tokens),
        "registration_s": round(reg_s, 2),
        "registrations_per_s": round(len(tokens) / reg_s, 1),
        "registration_p50_ms": reg.percentile(50),
        "registration_p99_ms": reg.percentile(99),
        "acked": len(acked),
        "stored": stored,
        "lost": len(acked) - stored + mismatched,
        "digests_checked": len(acked) if quick else min(1000, len(acked)),
        "upload_s": round(up_s, 2),
        "updates_per_s": round(updates_per_s, 1),
        "p50_ms": up.percentile(50),
        "p99_ms": up.percentile(99),
        "errors_5xx": reg.errors_5xx + up.errors_5xx,
        "errors_4xx": reg.errors_4xx + up.errors_4xx,
        "retried_429_503": reg.retries + up.retries,
        "round_completed": completed,
        "aggregation_s": status.get("aggregation_latency_s"),
        "aggregation_wall_s": round(wall_agg, 2),
        "model_max_abs_diff": model_diff,
        "direct_s3_updates_per_s": round(direct, 1),
        "ratio_vs_direct_s3": round(updates_per_s / direct, 3),
    }
