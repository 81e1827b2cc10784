"""Benchmark ``flstore-latency``: per-request latency of the ten non-training workloads (FLStore §5.2).

One FL job on a fresh local stack (ResNet-18 updates of 11.2M float32
parameters, 10 clients per round, two closed rounds; ``--quick``: a small MLP
and 5 clients) answers the same requests, with the same workload cores and
parameters, through three systems that differ only in where the data is:

- **FLStore**: ``POST /v1/jobs/{job}/queries`` -> gateway -> Request Tracker ->
  the cache function already holding the data (warm: one warm-up request,
  then the median of several; the warm-up is reported as ``flstore_first_s``:
  it computes the round statistics the cache keeps, unless another workload's
  request on the round already did, and may include the function's cold start);
- **ObjStore-Agg** (the paper's baseline, Fig. 7): a long-lived aggregator
  process (``bench.flstore_baseline``) that, per request, reads what the
  workload needs from S3 (same SeaweedFS, same keys), decodes and computes;
- **Cache-Agg** (Fig. 9): the same aggregator process reading the same
  encoded bodies from Redis instead.

A fault phase follows: requests while cache functions are killed (seeded)
between and during requests; every request must still be answered, by a
replica or by the workload's own function reading S3 (FLStore 4.5).
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis
import requests
from redis.utils import HIREDIS_AVAILABLE

from bench.flstore_baseline import Aggregator
from fedfaas import codec, keys
from fedfaas.devstack.localstack.stack import LocalStack, StackOptions
from fedfaas.errors import FedfaasError
from fedfaas.workloads import WORKLOADS

CACHE_FUNCTIONS = ("cache-0", "cache-1", "cache-2", "cache-3")
HTTP_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Setup:
    """Model, round sizes and repetitions of one run."""

    model: str
    model_kwargs: dict[str, Any]
    clients: int
    rounds: int = 2
    reps: int = 3
    fault_requests: int = 30
    val_rows: int = 16
    infer_rows: int = 8
    seed: int = 7


FULL = Setup("resnet18", {"num_classes": 10, "image_size": 32, "small_input": True}, clients=10)
QUICK = Setup("digits-mlp", {"hidden": [1024, 1024]}, clients=5, reps=3, fault_requests=6)


def queries_for(s: Setup, x: np.ndarray) -> dict[str, dict[str, Any]]:
    """One request body per workload; parameters keep each workload's compute moderate."""
    r = s.rounds
    out: dict[str, dict[str, Any]] = {
        "malicious-filter": {"round": r},
        "cosine-similarity": {"round": r},
        "clustering": {"round": r, "params": {"seed": 0}},
        "scheduling": {"round": r, "params": {"mode": "clusters", "num_clients": s.clients // 2}},
        "contribution": {"round": r, "params": {"max_permutations": 2, "leave_one_out": False}},
        "reputation": {"round": r},
        "debugging": {"round": r, "params": {"num_inputs": 4}},
        "inference": {"round": r, "arrays": {"x": x.tolist()}},
        "personalisation": {"round": r, "client": "c0", "params": {"seed": 0}},
        "provenance": {"client": "c0", "params": {"mode": "client"}},
    }
    if set(out) != set(WORKLOADS):
        raise RuntimeError(f"the benchmark lacks workloads {sorted(set(WORKLOADS) - set(out))}")
    return {name: {"workload": name, **body} for name, body in out.items()}


# --- the FL job ---------------------------------------------------------------------
class Api:
    """Minimal gateway client with per-call timeouts."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token, self.session = base, token, requests.Session()

    def call(self, method: str, path: str, token: str | None = None, ok: tuple[int, ...] = (200, 201),
             **kwargs: Any) -> Any:
        """The JSON answer of one call; raises RuntimeError on an unexpected status."""
        headers = {"Authorization": f"Bearer {token or self.token}"}
        resp = self.session.request(method, self.base + path, headers=headers,
                                    timeout=kwargs.pop("timeout", 120), **kwargs)
        if resp.status_code not in ok:
            raise RuntimeError(f"{method} {path} answered {resp.status_code}: {resp.text[:300]}")
        return resp.json()


def _client_update(base: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """``base`` plus seeded noise on every trainable float tensor (BatchNorm statistics kept)."""
    rng = np.random.default_rng(seed)
    return {k: v + np.float32(0.01) * rng.standard_normal(v.shape, dtype=np.float32)
            if v.dtype == np.float32 and "running_" not in k else v for k, v in base.items()}


def _wait_closed(api: Api, jid: str, rnd: int, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while (state := api.call("GET", f"/v1/jobs/{jid}/rounds/{rnd}")["state"]) != "closed":
        if state == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"round {rnd} did not close (state {state!r})")
        time.sleep(0.2)


def make_job(api: Api, s: Setup, base: dict[str, np.ndarray], x_val: np.ndarray,
             y_val: np.ndarray) -> dict[str, Any]:
    """Create the job, upload the initial model, ``rounds`` rounds of updates and a validation set."""
    size = sum(int(v.nbytes) for v in base.values())
    job = api.call("POST", "/v1/jobs", json={
        "job_id": f"lat-{uuid.uuid4().hex[:8]}", "model": {"name": s.model, "size_bytes": size},
        "t_wait_s": 3600, "quorum": s.clients, "rounds": s.rounds, "strategy": {"name": "lazy"},
        "hyperparameters": {"lr": 0.01, "model_kwargs": json.dumps(s.model_kwargs)}})
    jid = job["job_id"]
    tokens = [api.call("POST", f"/v1/jobs/{jid}/parties", job["enrollment_token"],
                       json={"party_id": f"c{i}"})["token"] for i in range(s.clients)]
    api.call("PUT", f"/v1/jobs/{jid}/model", data=codec.encode(base, {"round": 0}))
    api.call("PUT", f"/v1/jobs/{jid}/validation",
             data=codec.encode({"x_val": x_val, "y_val": y_val}, {}))
    for rnd in range(1, s.rounds + 1):
        api.call("POST", f"/v1/jobs/{jid}/rounds")
        for i, tok in enumerate(tokens):
            body = codec.encode(_client_update(base, s.seed * 1000 + rnd * 100 + i),
                                {"num_examples": 100 + 10 * i, "train_time_s": 5.0 + i})
            api.call("POST", f"/v1/jobs/{jid}/rounds/{rnd}/updates", tok, data=body, timeout=300)
        _wait_closed(api, jid, rnd)
    return {"job_id": jid, "tenant": job["tenant"], "update_bytes": len(body)}


def copy_to_redis(store: Any, client: redis.Redis, tenant: str, jid: str, s: Setup) -> int:
    """Copy the job's updates, models and validation set from S3 into Redis (Cache-Agg's data)."""
    wanted = [key for r in range(1, s.rounds + 1)
              for key in store.list(keys.s3_round_updates(tenant, jid, r))]
    wanted += [keys.s3_model(tenant, jid, r) for r in range(s.rounds + 1)]
    wanted.append(keys.s3_validation(tenant, jid))
    total = 0
    for key in wanted:
        body = store.get(key)
        client.set(keys.bench_cache_agg_copy(key), body)
        total += len(body)
    return total


def wait_placed(faas: Any, tenant: str, jid: str, s: Setup, timeout: float = 300.0) -> int:
    """Wait until the cache functions hold every update of the latest round; returns keys held."""
    wanted = {f"{tenant}:{jid}:update:{s.rounds}:c{i}" for i in range(s.clients)}
    deadline = time.monotonic() + timeout
    while True:
        held: set[str] = set()
        for fid in CACHE_FUNCTIONS:
            with contextlib.suppress(FedfaasError, ValueError, KeyError):
                held |= set(faas.invoke(fid, b"", path="keys", method="GET", timeout=30).json()["keys"])
        if wanted <= held or time.monotonic() > deadline:
            return len(held)
        time.sleep(1.0)


# --- measuring ----------------------------------------------------------------------
def _flstore(api: Api, jid: str, query: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    resp = api.session.post(f"{api.base}/v1/jobs/{jid}/queries?wait=1", json=query,
                            headers={"Authorization": f"Bearer {api.token}"}, timeout=HTTP_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    try:
        answer: dict[str, Any] = resp.json()
    except ValueError:
        answer = {"message": resp.text[:300]}
    if resp.status_code != 200 or answer.get("status") != "done":
        return elapsed, {"ok": False, "error": f"{resp.status_code}: {answer.get('message', answer)}"}
    return elapsed, {"ok": True, "answer": answer}


def _same(a: Any, b: Any) -> bool:
    """Equal JSON results (floats to 1e-6 relative; result object keys excluded)."""
    if isinstance(a, dict) and isinstance(b, dict):
        ka, kb = set(a) - {"tensors_ref"}, set(b) - {"tensors_ref"}
        return ka == kb and all(_same(a[k], b[k]) for k in ka)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float | int):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return bool(a == b)


def measure(api: Api, agg: Aggregator, jid: str, query: dict[str, Any], reps: int
            ) -> dict[str, Any]:
    """Warm-up then ``reps`` interleaved rounds of FLStore, ObjStore-Agg and Cache-Agg."""
    systems = {
        "flstore": lambda: _flstore(api, jid, query),
        "objstore": lambda: agg.request("s3", jid, query),
        "cache": lambda: agg.request("redis", jid, query),
    }
    times: dict[str, list[float]] = {k: [] for k in systems}
    last: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    misses = 0
    first: float | None = None
    for rep in range(reps + 1):
        for name, call in systems.items():
            elapsed, reply = call()
            if not reply["ok"]:
                errors[name] = str(reply["error"])[:300]
                continue
            last[name] = reply["answer"]
            if rep == 0 and name == "flstore":
                first = elapsed  # this workload's first request: it builds the statistics
            if rep > 0:  # rep 0 is the warm-up
                times[name].append(elapsed)
                if name == "flstore":
                    misses += int(reply["answer"].get("misses", 0))
    row: dict[str, Any] = {f"{k}_s": round(statistics.median(v), 4) if v else None
                           for k, v in times.items()}
    fl = last.get("flstore", {})
    row["flstore_first_s"] = None if first is None else round(first, 4)
    row.update(
        flstore_compute_s=(fl.get("timings") or {}).get("compute_s"),
        objstore_compute_s=last.get("objstore", {}).get("compute_s"),
        cache_compute_s=last.get("cache", {}).get("compute_s"),
        flstore_function=fl.get("function"), flstore_warm_misses=misses,
        same_result=all(k in last for k in systems) and _same(fl.get("result"), last["objstore"]["result"])
        and _same(fl.get("result"), last["cache"]["result"]),
    )
    if errors:
        row["errors"] = errors
    return row


def fault_phase(api: Api, faas: Any, jid: str, queries: dict[str, dict[str, Any]], requests: int,
                 seed: int) -> dict[str, Any]:
    """Send ``requests`` requests, cycling over the workloads, while killing cache functions.

    Seeded kills of 0-4 functions precede each request; half the requests see
    one more kill while in flight.  A request fails if it is not answered done.
    """
    rng = np.random.default_rng(seed)
    injected = 0
    lock = threading.Lock()

    def kill(fid: str) -> None:
        nonlocal injected
        try:
            faas.kill(fid)
        except FedfaasError:
            return  # the instance is being replaced already
        with lock:
            injected += 1

    failed = 0
    served: dict[str, int] = {}
    latencies: list[float] = []
    errors: list[str] = []
    names = list(queries)
    for i in range(requests):
        name = names[i % len(names)]
        victims = rng.choice(CACHE_FUNCTIONS, size=int(rng.choice([0, 1, 2, 4], p=[.2, .4, .3, .1])),
                             replace=False)
        for fid in victims:
            kill(str(fid))
        timer = None
        if rng.random() < 0.5:  # one more kill while the request is in flight
            timer = threading.Timer(float(rng.uniform(0.02, 0.5)), kill,
                                    args=(str(rng.choice(CACHE_FUNCTIONS)),))
            timer.start()
        elapsed, reply = _flstore(api, jid, queries[name])
        if timer is not None:
            timer.join()
        latencies.append(elapsed)
        if not reply["ok"]:
            failed += 1
            errors.append(f"{name}: {reply['error']}"[:300])
            continue
        fn = str(reply["answer"].get("function"))
        kind = "fallback" if fn.startswith("wl-") else "cache"
        served[kind] = served.get(kind, 0) + 1
        if len(reply["answer"].get("functions") or []) > 1:  # the tracker failed over
            served["rerouted"] = served.get("rerouted", 0) + 1
        tried = [f["function"] for f in reply["answer"].get("functions") or []]
        print(f"  faults {name:18s} killed {len(victims)}+{int(timer is not None)}  tried "
              f"{' -> '.join(tried) or fn}  in {elapsed:.2f} s", flush=True)
    return {"requests": len(latencies), "failed_requests": failed, "faults_injected": injected,
            "served_by": served, "fault_median_s": round(statistics.median(latencies), 4),
            "fault_errors": errors[:10]}


def run(quick: bool = False, topology: str = "loopback") -> dict[str, Any]:
    """Run the benchmark on a fresh local stack and return its figures.

    ``topology`` names the network the local stack runs on (``fedfaas up --topology``).
    """
    from fedfaas import meta
    from fedfaas.models import build_model, state_arrays
    from fedfaas.openfaas.client import FaasClient
    from fedfaas.store import ObjectStore

    s = QUICK if quick else FULL
    model = build_model(s.model, seed=0, **s.model_kwargs)
    base = state_arrays(model)
    shape = tuple(model.input_shape)  # type: ignore[arg-type]
    rng = np.random.default_rng(s.seed)
    x_val = rng.uniform(0, 1, (s.val_rows, *shape)).astype(np.float32)
    y_val = rng.integers(0, 10, s.val_rows).astype(np.int64)
    queries = queries_for(s, rng.uniform(0, 1, (s.infer_rows, *shape)).astype(np.float32))
    with tempfile.TemporaryDirectory(prefix="fedfaas-bench-flstore-") as tmp:
        stack = LocalStack(Path(tmp))
        print(f"starting local stack in {tmp} ...", flush=True)
        stack.up(StackOptions(components=("redis", "s3", "router", "gateway"), topology=topology))
        agg: Aggregator | None = None
        try:
            env = stack.env()
            secrets = Path(env["FEDFAAS_SECRETS_DIR"])
            api = Api(env["FEDFAAS_GATEWAY_URL"], (secrets / "fedfaas-admin-token").read_text().strip())
            settings = stack.settings()
            faas = FaasClient.from_settings(settings, timeout=30)
            agg = Aggregator(env)
            started = time.perf_counter()
            job = make_job(api, s, base, x_val, y_val)
            jid = job["job_id"]
            copied = copy_to_redis(ObjectStore(settings), meta.connect(settings), job["tenant"], jid, s)
            held = wait_placed(faas, job["tenant"], jid, s)
            print(f"job {jid}: {s.rounds} rounds x {s.clients} updates of "
                  f"{job['update_bytes'] / 1e6:.1f} MB, {copied / 1e6:.0f} MB copied to Redis, "
                  f"{held} items in cache functions ({time.perf_counter() - started:.0f} s)", flush=True)
            rows: dict[str, dict[str, Any]] = {}
            for name, query in queries.items():
                row = measure(api, agg, jid, query, s.reps)
                rows[name] = row
                print(f"{name:18s} flstore {row['flstore_s']}s  objstore {row['objstore_s']}s  "
                      f"cache {row['cache_s']}s  compute {row['flstore_compute_s']}s  on "
                      f"{row['flstore_function']}  misses {row['flstore_warm_misses']}  "
                      f"same {row['same_result']}{'  ' + str(row['errors']) if 'errors' in row else ''}",
                      flush=True)
            print(f"latency phase done ({time.perf_counter() - started:.0f} s); fault phase ...",
                  flush=True)
            faults = fault_phase(api, faas, jid, queries, s.fault_requests, s.seed)
            runtime = time.perf_counter() - started
        finally:
            if agg is not None:
                agg.close()
            stack.down()

    def reduction(baseline: str, total: bool = False) -> float | None:
        """Mean over workloads of ``1 - flstore / baseline`` (or of summed latencies)."""
        pairs = [(r["flstore_s"], r[f"{baseline}_s"]) for r in rows.values()
                 if r["flstore_s"] is not None and r[f"{baseline}_s"]]
        if not pairs:
            return None
        if total:
            return round(1 - sum(f for f, _ in pairs) / sum(b for _, b in pairs), 4)
        return round(float(np.mean([1 - f / b for f, b in pairs])), 4)

    return {
        "bench": "flstore-latency",
        "model": s.model, "model_kwargs": s.model_kwargs, "clients": s.clients, "rounds": s.rounds,
        "update_mb": round(job["update_bytes"] / 1e6, 2), "reps": s.reps,
        "workloads": rows,
        "mean_reduction_vs_objstore": reduction("objstore"),
        "mean_reduction_vs_cache": reduction("cache"),
        "total_reduction_vs_objstore": reduction("objstore", total=True),
        "total_reduction_vs_cache": reduction("cache", total=True),
        "same_results": sum(bool(r["same_result"]) for r in rows.values()),
        "runtime_s": round(runtime, 1),
        "redis_parser": "hiredis" if HIREDIS_AVAILABLE else "python",
        **faults,
    }
