"""The aggregator of FLStore's baselines (FLStore §5.1, Fig. 3): ObjStore-Agg and Cache-Agg.

A separate, long-lived Python HTTP server (Flask on waitress, like an
aggregator on a cloud VM) that serves non-training requests for
``bench.flstore_latency``.  Per request it resolves the data the workload
needs with the Request Tracker's own resolver, fetches every item from S3
(``POST /run/s3``, ObjStore-Agg) or from Redis (``POST /run/redis``,
Cache-Agg, bodies under :func:`fedfaas.keys.bench_cache_agg_copy`), decodes it into a
fresh, empty memory and runs the same workload core a cache function runs.
Only where the bytes come from differs from FLStore.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import uuid
from typing import Any

import redis
import requests

from fedfaas import keys
from fedfaas.config import Settings
from fedfaas.devstack.localstack.procs import free_port
from fedfaas.errors import FedfaasError, NotFound

TIMEOUT_S = 600.0


def _aggregator_main(port: int, env: dict[str, str]) -> None:
    """Serve ``POST /run/<s3|redis>`` with a query body ``{"job_id", "query"}`` on ``port``.

    Like the function instances, the server answers on waitress worker threads,
    so both sides run the workload cores with the same threading.
    """
    os.environ.update(env)
    import warnings

    from flask import Flask, jsonify, request
    from waitress import serve

    from fedfaas import meta
    from fedfaas.config import load_settings
    from fedfaas.contracts import RunRequest
    from fedfaas.serverless_cache import ServerlessCache
    from fedfaas.store import ObjectStore
    from gateway.flstore import workload_job_spec
    from gateway.registry import Registry
    from request_tracker.data import DataResolver
    from request_tracker.tracker import Query

    class RedisBodies(ObjectStore):
        """Reads encoded bodies from Redis (Cache-Agg); results still go to S3."""

        def __init__(self, settings: Settings, client: redis.Redis) -> None:
            super().__init__(settings)
            self.redis = client

        def get(self, key: str) -> bytes:
            body = self.redis.get(keys.bench_cache_agg_copy(key))
            if body is None:
                raise NotFound(f"no Redis copy of {key!r}")
            return bytes(body)  # type: ignore[arg-type]

    # modelio hands torch read-only views of the request's arrays; torch warns once per process.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    settings = load_settings()
    store = ObjectStore(settings)
    client = meta.connect(settings)
    sources = {"s3": store, "redis": RedisBodies(settings, client)}
    registry = Registry(client, store)
    resolver = DataResolver(registry, store)
    app = Flask("fedfaas-bench-aggregator")

    @app.get("/health")
    def health() -> Any:
        return jsonify({"ok": True})

    @app.post("/run/<source>")
    def run_request(source: str) -> Any:
        started = time.perf_counter()
        msg = request.get_json(force=True)
        try:
            job = registry.get_job(msg["job_id"])
            query = Query.parse(msg["query"])
            data = resolver.resolve(job.tenant, job.job_id, query)
            body = RunRequest(
                request_id=uuid.uuid4().hex[:20], tenant=job.tenant, job_id=job.job_id,
                workload=query.workload, params=query.params, job=workload_job_spec(job),
                round=data.round, client=query.client, data=data.payload, arrays=query.arrays,
            )
            # A fresh, empty memory per request: the aggregator keeps nothing between requests.
            agg = ServerlessCache(sources[source], f"{source}-agg", 1 << 40)
            answer = agg.run(body).model_dump()
        except FedfaasError as exc:
            return jsonify({"error": exc.code, "message": exc.message}), exc.status
        answer["worker_s"] = round(time.perf_counter() - started, 6)
        return jsonify(answer)

    serve(app, host="127.0.0.1", port=port, threads=4)


class Aggregator:
    """The ObjStore-Agg / Cache-Agg aggregator: a separate long-lived Python HTTP server."""

    def __init__(self, env: dict[str, str], timeout: float = 60.0) -> None:
        self.base = f"http://127.0.0.1:{free_port()}"
        ctx = mp.get_context("spawn")
        self.proc = ctx.Process(target=_aggregator_main, args=(int(self.base.rsplit(":", 1)[1]), env),
                                daemon=True)
        self.proc.start()
        self.session = requests.Session()
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.session.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or not self.proc.is_alive():
                self.close()
                raise RuntimeError("the baseline aggregator did not start")
            time.sleep(0.2)

    def request(self, source: str, job_id: str, query: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """Wall-clock latency and outcome of one request fetching from ``source`` (s3 or redis)."""
        started = time.perf_counter()
        resp = self.session.post(f"{self.base}/run/{source}", json={"job_id": job_id, "query": query},
                                 timeout=TIMEOUT_S)
        elapsed = time.perf_counter() - started
        if resp.status_code != 200:
            return elapsed, {"ok": False, "error": f"{resp.status_code}: {resp.text[:300]}"}
        return elapsed, {"ok": True, "answer": resp.json()}

    def close(self) -> None:
        """Stop the process (SIGKILL if it does not exit on SIGTERM)."""
        self.proc.terminate()
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
