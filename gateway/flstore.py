"""FLStore inside the gateway: Cache Engine placement, keep-alive pings, Request Tracker execution.

Background loops (each stoppable, each safe with several gateway replicas):

- the *placer* reads the arrivals stream with a Redis consumer group (each
  arrival handled by exactly one replica), asks the Cache Engine whether the new
  update or model is hot, and loads it into the chosen cache functions;
- the *keep-alive* pings every cache function every ``keepalive_s`` (default
  60 s, FLStore 4.5); a function that does not answer, or answers empty while
  the engine thinks it holds data, was reclaimed: the engine drops it and the
  data is re-placed and reloaded from S3.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from cache_engine.engine import CacheEngine
from cache_engine.keys import DataKey
from fedfaas.config import Settings
from fedfaas.errors import BadRequest, FedfaasError
from fedfaas.openfaas.client import FaasClient
from fedfaas.store import ObjectStore
from fedfaas.workloads import WORKLOADS
from gateway.arrivals import StreamConsumer
from request_tracker.data import DataResolver
from request_tracker.tracker import (
    Query,
    RequestTracker,
    evict_requests,
    load_requests,
    send_cache_calls,
)

log = logging.getLogger("fedfaas.flstore")

GROUP = "cache-engine"


def workload_job_spec(job: Any) -> dict[str, Any]:
    """The job spec as workloads read it: ``model`` is ``{"name", "kwargs"}``.

    Job hyperparameters hold only scalars, so the model's constructor arguments
    come as a JSON object in the string hyperparameter ``model_kwargs``, e.g.
    ``'{"num_classes": 10, "small_input": true}'``.
    """
    raw = job.spec.hyperparameters.get("model_kwargs")
    kwargs: Any = {}
    if raw not in (None, ""):
        try:
            kwargs = json.loads(raw) if isinstance(raw, str) else None
        except (ValueError, RecursionError):
            kwargs = None
        if not isinstance(kwargs, dict):
            raise BadRequest("job hyperparameter 'model_kwargs' must be a JSON object in a string, "
                             f"e.g. '{{\"num_classes\": 10}}'; got {raw!r}")
    return {**job.spec.model_dump(), "model": {"name": job.spec.model.name, "kwargs": kwargs}}


class FLStoreService:
    """The gateway's FLStore control plane."""

    def __init__(self, client: redis.Redis, store: ObjectStore, registry: Any, settings: Settings) -> None:
        self.redis = client
        self.store = store
        self.functions = settings.cache_function_names
        self.engine = CacheEngine(
            client, self.functions,
            budget_bytes=settings.cache_budget_bytes,
            replicas=min(settings.cache_replicas, len(self.functions) - 1),
            # Every workload is active from a job's first update on, so its policy
            # (e.g. P2: keep the latest round hot) shapes placement at ingest.
            default_workloads=list(WORKLOADS),
        )
        # Carries the internal token, so the Request Tracker's calls do too.
        self.faas = FaasClient.from_settings(
            settings, timeout=settings.cache_timeout_s)
        self.resolver = DataResolver(registry, store)
        self.tracker = RequestTracker(client, self.engine, self.faas, self.resolver,
                                      run_timeout_s=settings.function_timeout_s, on_lost=self.function_lost)
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fedfaas-query")
        self.keepalive_s = settings.keepalive_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # The Cache Engine's member of the arrivals stream's consumer groups.
        self.placer = StreamConsumer(client, GROUP, uuid.uuid4().hex[:12], self._handle_arrival,
                                     claim_idle_ms=int(settings.event_claim_idle_s * 1000))

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Start the placer and keep-alive loops."""
        self.placer.start()
        thread = threading.Thread(target=self._keepalive_loop, name="fedfaas-keepalive", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop the loops and the query executor."""
        self._stop.set()
        self.placer.stop()
        for thread in self._threads:
            thread.join(5)
        self.executor.shutdown(wait=False, cancel_futures=True)

    # --- queries ---------------------------------------------------------------------
    def submit(self, tenant: str, job: Any, body: dict[str, Any], wait: bool) -> dict[str, Any]:
        """Validate and run (or queue) a non-training query."""
        query = Query.parse(body)
        job_spec = workload_job_spec(job)
        request_id = self.tracker.create(tenant, job.job_id, query)
        if wait:
            return self.tracker.execute(request_id, tenant, job_spec, job.job_id, query)

        def run() -> None:
            try:
                self.tracker.execute(request_id, tenant, job_spec, job.job_id, query)
            except FedfaasError as exc:
                log.warning("query %s failed: %s", request_id, exc.message)
            except Exception:
                log.exception("query %s crashed", request_id)

        self.executor.submit(run)
        return {"request_id": request_id, "status": "queued"}

    # --- placement -------------------------------------------------------------------
    def place(self, key: DataKey, size: int) -> None:
        """Tell the engine about new durable data and load it where the policy wants it."""
        result = self.engine.ingest(key, size)
        send_cache_calls(self.faas, load_requests([result], self.resolver),
                         evict_requests(result.evictions))

    def _handle_arrival(self, fields: dict[str, str]) -> None:
        try:
            rnd = int(fields["round"])
            if fields.get("kind") == "model":
                key = DataKey.model(fields["tenant"], fields["job"], rnd)
            else:
                key = DataKey.update(fields["tenant"], fields["job"], rnd, fields["party"])
            size = int(fields.get("size", "0")) or self._size(key)
            self.place(key, size)
        except (KeyError, ValueError, FedfaasError) as exc:
            log.warning("placer: cannot place arrival %s: %s", fields, exc)

    def _size(self, key: DataKey) -> int:
        s3 = self.resolver.s3_key(key)
        stat = self.store.stat(s3) if s3 else None
        return stat.size if stat else 1

    # --- fault tolerance -------------------------------------------------------------
    def function_lost(self, function_id: str) -> None:
        """A cache function was reclaimed: drop it from the table and re-place its data."""
        if function_id not in self.functions:
            return
        lost = self.engine.mark_function_lost(function_id)
        fetches = self.engine.restore(list(lost.dropped) + list(lost.degraded))
        send_cache_calls(self.faas, load_requests(fetches, self.resolver), {})
        log.info("cache function %s lost: %d items dropped, %d re-placed", function_id,
                 len(lost.dropped) + len(lost.degraded), len(fetches))

    def ping_all(self) -> dict[str, Any]:
        """Ping every cache function once; handle reclaimed ones; returns what each said."""
        usage = self.engine.usage()
        out: dict[str, Any] = {}
        for fid in self.functions:
            try:
                resp = self.faas.invoke(fid, b"", path="ping", method="GET", timeout=10)
                answer = resp.json() if resp.status_code == 200 else None
            except (FedfaasError, ValueError):
                answer = None
            out[fid] = answer
            if answer is None or (answer.get("held", 0) == 0 and usage.get(fid, 0) > 0):
                self.function_lost(fid)
        return out

    def _keepalive_loop(self) -> None:
        while not self._stop.wait(self.keepalive_s):
            try:
                self.ping_all()
            except (FedfaasError, redis.RedisError) as exc:
                log.warning("keep-alive round failed: %s", exc)
