"""Benchmark ``reliability``: every fault scenario of ``tests/reliability`` in one scripted run.

One job runs its rounds twice on a fresh full local stack: once fault-free
(the baseline) and once while faults are injected (``fedfaas.devstack.localstack.faults``):

- round 1: aggregate instances SIGKILLed in the middle of steps, while hostile
  requests (truncated, garbage, NaN, someone else's party id, huge shapes,
  bad tokens and paths) are mixed into the uploads;
- round 2: the gateway SIGKILLed during an aggregation step and restarted,
  then Redis SIGKILLed and restarted, then S3 frozen (SIGSTOP) for seconds
  while parties upload;
- round 3 (full run only): S3 stopped outright and restarted while parties
  upload, with more aggregate kills;
- afterwards: concurrent non-training queries while every cache function is
  reclaimed;
- on a topology with hosts (``--topology datacenter``), round 2 also cuts the
  network: S3 from the functions' host while the round aggregates, then Redis
  from the gateway's host while parties upload, each healed seconds later.

Parties behave like the SDK: they retry connection errors, 429 and 503.  The
figures: faults injected, updates acknowledged and lost (checked in S3 byte for
byte), hostile requests sent, 5xx answers other than 503, and the largest
difference between the faulty run's models and the fault-free run's.
"""

from __future__ import annotations

import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import requests

from fedfaas import codec
from fedfaas.devstack.localstack.faults import crash, freeze, heal, thaw
from fedfaas.devstack.localstack.stack import LocalStack, StackOptions
from fedfaas.errors import FedfaasError
from fedfaas.openfaas.client import FaasClient
from fedfaas.store import ObjectStore, digest

FAULT_ENV = {"FEDFAAS_S3_TIMEOUT_S": "2", "FEDFAAS_REDIS_TIMEOUT_S": "2", "FEDFAAS_DRIVER_DELTA_S": "0.2"}
RETRY = (429, 502, 503, 504)


class Run:
    """The stack, its clients and every figure counted so far."""

    def __init__(self, stack: LocalStack) -> None:
        env = stack.env()
        secrets = Path(env["FEDFAAS_SECRETS_DIR"])
        self.stack = stack
        self.base = env["FEDFAAS_GATEWAY_URL"]
        self.admin = (secrets / "fedfaas-admin-token").read_text().strip()
        self.faas = FaasClient.from_settings(stack.settings(), timeout=30)
        self.store = ObjectStore(stack.settings())
        self.lock = threading.Lock()
        self.local = threading.local()
        self.faults = 0
        self.networked = bool((stack.read_state() or {}).get("hosts"))
        self.partitions: list[str] = []
        self.acked: dict[str, tuple[str, str]] = {}  # key -> (ack digest, sent digest)
        self.bad_sent = 0
        self.bad_accepted = 0
        self.errors_5xx = 0
        self.unavailable_503 = 0

    def fault(self) -> None:
        with self.lock:
            self.faults += 1

    def request(self, method: str, path: str, token: str | None, retry: bool = True, **kw: Any
                ) -> requests.Response | None:
        """One call; with ``retry``, connection errors and 429/5xx-unavailable are retried for 3 min."""
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        deadline = time.monotonic() + 180
        while True:
            try:
                resp: requests.Response | None = self.local.session.request(
                    method, self.base + path, headers=headers, timeout=60, **kw)
            except requests.RequestException:
                resp = None
            if resp is not None:
                with self.lock:
                    self.errors_5xx += resp.status_code >= 500 and resp.status_code != 503
                    self.unavailable_503 += resp.status_code == 503
            answered = resp is not None and resp.status_code not in RETRY
            if not retry or answered or time.monotonic() > deadline:
                return resp
            time.sleep(0.3)

    def upload(self, job_id: str, rnd: int, token: str, body: bytes) -> None:
        resp = self.request("POST", f"/v1/jobs/{job_id}/rounds/{rnd}/updates", token, data=body)
        if resp is not None and resp.status_code < 300:
            with self.lock:
                self.acked[resp.json()["key"]] = (resp.json()["digest"], digest(body))

    def wait_closed(self, job_id: str, rnd: int) -> dict[str, Any]:
        deadline = time.monotonic() + 300
        status: Any = None
        while time.monotonic() < deadline:
            resp = self.request("GET", f"/v1/jobs/{job_id}/rounds/{rnd}", self.admin)
            status = resp.json() if resp is not None and resp.status_code == 200 else status
            if status is not None and status["state"] in ("closed", "failed"):
                return dict(status)
            time.sleep(0.2)
        log = (self.stack.data_dir / "logs" / "gateway.log").read_text(errors="replace").splitlines()
        warnings = "\n".join(line for line in log if '"WARNING"' in line or '"ERROR"' in line)
        raise RuntimeError(f"round {rnd} of {job_id} did not close: {status}\n{warnings[-3000:]}")

    def step_in_flight(self, timeout_s: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(i["inflight"] > 0 for i in self.faas.instances().get("aggregate", [])):
                return True
            time.sleep(0.01)
        return False


class Reclaimer(threading.Thread):
    """Kills aggregate replicas that are busy with a step."""

    def __init__(self, run: Run, limit: int) -> None:
        super().__init__(daemon=True)
        self.run_ = run
        self.limit = limit
        self.done = threading.Event()

    def run(self) -> None:
        kills = 0
        while not self.done.is_set() and kills < self.limit:
            try:
                busy = [i for i in self.run_.faas.instances().get("aggregate", []) if i["inflight"] > 0]
                if busy:
                    self.run_.faas.kill("aggregate", instance=busy[0]["instance"])
                    self.run_.fault()
                    kills += 1
                    self.done.wait(0.5)
            except FedfaasError:
                pass
            self.done.wait(0.01)


def _partition(run: Run, a: str, b: str, seconds: float) -> None:
    """Cut the network between two components for ``seconds``, then heal it."""
    run.stack.partition(a, b)
    run.fault()
    run.partitions.append(f"{a}|{b}")
    try:
        time.sleep(seconds)
    finally:
        run.stack.heal(a, b)


def _hostile(run: Run, job_id: str, rnd: int, tokens: list[str], rng: np.random.Generator) -> None:
    """One hostile request; it must be refused with a 4xx (a 503 during a fault is fine)."""
    good = codec.encode({"w": np.ones(8, np.float32)}, {"round": rnd, "party": "p0"})
    nan = codec.encode({"w": np.full(8, np.nan, np.float32)}, {"round": rnd})
    huge = msgpack.packb({"format": codec.FORMAT, "version": 1, "meta": {}, "pad": b"",
                          "tensors": [["w", "float32", [2**40, 2**20], 0, 0]]}) + b"\xc6\0\0\0\0"
    up = f"/v1/jobs/{job_id}/rounds/{rnd}/updates"
    cases: list[tuple[str, str, str | None, dict[str, Any]]] = [
        ("POST", up, tokens[0], {"data": good[: int(rng.integers(1, len(good) - 1))]}),
        ("POST", up, tokens[0], {"data": rng.bytes(int(rng.integers(0, 300)))}),
        ("POST", up, tokens[0], {"data": nan}),
        ("POST", up, tokens[1], {"data": good}),  # claims to be p0
        ("POST", up, tokens[0], {"data": huge}),
        ("POST", up, "not-a-token", {"data": good}),
        ("GET", f"/v1/jobs/{job_id}/rounds/{rnd}/updates/p1", tokens[0], {}),
        ("GET", "/v1/jobs/..%2F..%2Fetc/model", tokens[0], {}),
        ("POST", "/v1/jobs", run.admin, {"data": b'{"model": {"name": 5}'}),
        ("POST", f"/v1/jobs/{job_id}/parties", run.admin, {"json": {"party_id": "p0\n"}}),
    ]
    method, path, token, kw = cases[int(rng.integers(0, len(cases)))]
    resp = run.request(method, path, token, retry=False, **kw)
    with run.lock:
        run.bad_sent += 1
        run.bad_accepted += resp is not None and resp.status_code < 400


def _data(rounds: int, parties: int, params: int) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    return {(r, p): {"w": np.random.default_rng(1000 * r + p).standard_normal(params, dtype=np.float32),
                     "b": np.full(16, r + p, np.float32)}
            for r in range(1, rounds + 1) for p in range(parties)}


def _job(run: Run, parties: int, rounds: int) -> tuple[str, list[str]]:
    job = run.request("POST", "/v1/jobs", run.admin, json={
        "model": {"name": "reliability", "size_bytes": 4096}, "rounds": rounds, "quorum": parties,
        "t_wait_s": 600, "strategy": {"name": "batched-serverless", "batch_size": 2}})
    assert job is not None and job.status_code == 201, job
    jid = job.json()["job_id"]
    tokens = []
    for p in range(parties):
        reg = run.request("POST", f"/v1/jobs/{jid}/parties", job.json()["enrollment_token"],
                          json={"party_id": f"p{p}"})
        assert reg is not None
        tokens.append(reg.json()["token"])
    return jid, tokens


def _round(run: Run, jid: str, rnd: int, tokens: list[str], data: dict[tuple[int, int], Any],
           faulty: bool, quick: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    run.request("POST", f"/v1/jobs/{jid}/rounds", run.admin)
    bodies = [codec.encode(data[(rnd, p)], {"num_examples": 5 + p, "party": f"p{p}"})
              for p in range(len(tokens))]
    half = len(tokens) // 2
    reclaimer = Reclaimer(run, limit=3)
    with ThreadPoolExecutor(len(tokens)) as pool:
        if faulty and rnd in (1, 3):
            reclaimer.start()
        if faulty and rnd == 3:
            run.stack.down(["s3"])
            run.fault()
        first = [pool.submit(run.upload, jid, rnd, tokens[p], bodies[p]) for p in range(half)]
        if faulty and rnd == 1:
            for _ in range(25 if quick else 100):
                _hostile(run, jid, rnd, tokens, rng)
        if faulty and rnd == 2:
            run.step_in_flight()
            for component in ("gateway", "redis"):
                crash(run.stack, component)
                run.fault()
                run.stack.restart(component)
        if faulty and rnd == 3:
            time.sleep(2.0)
            run.stack.restart("s3")
        rest = [pool.submit(run.upload, jid, rnd, tokens[p], bodies[p]) for p in range(half, len(tokens))]
        if faulty and rnd == 2:
            freeze(run.stack, "s3")
            run.fault()
            time.sleep(4.0)
            thaw(run.stack, "s3")
            if run.networked:
                _partition(run, "router", "s3", 4.0)
                _partition(run, "gateway", "redis", 3.0)
        for future in first + rest:
            future.result()
    run.wait_closed(jid, rnd)
    reclaimer.done.set()
    resp = run.request("GET", f"/v1/jobs/{jid}/model?round={rnd}", tokens[0])
    assert resp is not None and resp.status_code == 200, resp
    return dict(codec.decode(resp.content).tensors)


def _queries_with_cache_kills(run: Run, jid: str, rnd: int) -> bool:
    """Concurrent queries while every cache function is reclaimed; True when all agree."""
    def query(_: int) -> Any:
        resp = run.request("POST", f"/v1/jobs/{jid}/queries", run.admin,
                           json={"workload": "cosine-similarity", "round": rnd})
        return None if resp is None or resp.status_code != 200 else resp.json()["result"]

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(query, i) for i in range(8)]
        for i in range(4):
            try:
                run.faas.kill(f"cache-{i}")
                run.fault()
            except FedfaasError:
                pass
        answers = [f.result() for f in futures]
    return all(a is not None and a == answers[0] for a in answers)


def run(quick: bool = False, topology: str = "loopback") -> dict[str, Any]:
    """Run every fault scenario on a fresh full local stack; returns the figures.

    ``topology`` names the network the local stack runs on (``fedfaas up --topology``).
    """
    parties, rounds, params = (6, 2, 256 * 1024) if quick else (10, 3, 1024 * 1024)
    data = _data(rounds, parties, params)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="fedfaas-bench-reliability-") as tmp:
        stack = LocalStack(Path(tmp))
        print(f"starting the full local stack in {tmp} ...", flush=True)
        stack.up(StackOptions(extra_env=FAULT_ENV, topology=topology))
        try:
            r = Run(stack)
            started = time.monotonic()
            ref_job, ref_tokens = _job(r, parties, rounds)
            reference = [_round(r, ref_job, n, ref_tokens, data, False, quick, rng)
                         for n in range(1, rounds + 1)]
            clean_s = time.monotonic() - started
            print(f"fault-free run: {clean_s:.1f} s", flush=True)
            started = time.monotonic()
            jid, tokens = _job(r, parties, rounds)
            models = []
            for n in range(1, rounds + 1):
                models.append(_round(r, jid, n, tokens, data, True, quick, rng))
                print(f"faulty round {n} closed ({r.faults} faults so far)", flush=True)
            queries_ok = _queries_with_cache_kills(r, jid, rounds)
            faulty_s = time.monotonic() - started
            lost = sum(1 for key, (acked, sent) in r.acked.items()
                       if acked != sent or digest(r.store.get(key)) != acked)
        finally:
            heal(stack)
            stack.down()
    diff = max(float(np.max(np.abs(m[k].astype(np.float64) - ref[k].astype(np.float64))))
               for m, ref in zip(models, reference, strict=True) for k in ref)
    return {
        "bench": "reliability",
        "parties": parties,
        "rounds": rounds,
        "faults_injected": r.faults,
        "updates_acked": len(r.acked),
        "updates_expected": 2 * parties * rounds,
        "updates_lost": lost,
        "bad_inputs_sent": r.bad_sent,
        "bad_inputs_accepted": r.bad_accepted,
        "errors_5xx": r.errors_5xx,
        "answers_503": r.unavailable_503,
        "queries_consistent": queries_ok,
        "partitions": r.partitions,
        "max_model_abs_diff": diff,
        "fault_free_run_s": round(clean_s, 1),
        "faulty_run_s": round(faulty_s, 1),
    }
