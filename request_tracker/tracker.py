"""FLStore's Request Tracker (FLStore 4.3, Figure 6 steps 1-5), run by the gateway.

It receives a non-training request, works out which data the workload needs,
asks the Cache Engine where that data is, routes the request to the cache
function holding most of it (co-located compute; the function reads any
remaining item from S3 and keeps it), tracks progress per function in Redis,
reroutes to a replica when the primary does not answer in time, and falls back
to the workload's own function reading from S3 when every copy is gone.
Requests are answered synchronously or given a request id to poll.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis
import requests

from cache_engine.engine import CacheEngine
from cache_engine.keys import DataKey
from cache_engine.results import Fetch, IngestResult, Move
from fedfaas import keys
from fedfaas.contracts import Contract, EvictRequest, ItemRef, LoadRequest, RunAnswer, RunRequest
from fedfaas.errors import BadRequest, FedfaasError, NotFound, Unavailable
from fedfaas.meta import text
from fedfaas.openfaas.client import FaasClient, FunctionAnswer, classify_answer, error_message
from fedfaas.spec import check_id
from fedfaas.workloads import get_workload
from fedfaas.workloads.params import check_numeric_array
from request_tracker.data import DataResolver, ResolvedData

log = logging.getLogger("fedfaas.tracker")

REQUEST_TTL_S = 7 * 24 * 3600


def workload_function(workload: str) -> str:
    """The workload's own OpenFaaS function (the S3 fallback executor)."""
    return f"wl-{workload}"


@dataclass(frozen=True)
class Query:
    """A non-training request as an analyst sends it."""

    workload: str
    round: int | None
    client: str | None
    params: dict[str, Any]
    arrays: dict[str, Any]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Query:
        """Validate the JSON body of ``POST /v1/jobs/{job}/queries``."""
        workload = body.get("workload")
        if not isinstance(workload, str):
            raise BadRequest("query needs 'workload' (e.g. 'malicious-filter')")
        spec = get_workload(workload)
        rnd = body.get("round")
        if rnd is not None and (isinstance(rnd, bool) or not isinstance(rnd, int) or rnd < 1):
            raise BadRequest("query 'round' must be an integer >= 1")
        client = body.get("client")
        if client is not None:
            if not isinstance(client, str):
                raise BadRequest("query 'client' must be a party id")
            check_id(client, "query 'client'")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise BadRequest("query 'params' must be an object")
        spec.validate(params)
        arrays = body.get("arrays") or {}
        if not isinstance(arrays, dict):
            raise BadRequest("query 'arrays' must be an object of numeric lists")
        for name, value in arrays.items():
            check_numeric_array(value, f"query array {name!r}")
        return cls(workload, rnd, client, params, arrays)


class FunctionUnavailable(Unavailable):
    """A function could not serve a request; ``lost`` when what it holds may be gone too."""

    def __init__(self, message: str, *, lost: bool) -> None:
        super().__init__(message)
        self.lost = lost


class RequestTracker:
    """Routes non-training requests to the functions holding their data."""

    def __init__(self, client: redis.Redis, engine: CacheEngine, faas: FaasClient,
                 resolver: DataResolver, run_timeout_s: float = 120.0,
                 on_lost: Callable[[str], None] | None = None) -> None:
        self.redis = client
        self.engine = engine
        self.faas = faas
        self.resolver = resolver
        self.run_timeout_s = run_timeout_s
        self.on_lost = on_lost or (lambda function_id: None)

    # --- bookkeeping -----------------------------------------------------------------
    def create(self, tenant: str, job: str, query: Query) -> str:
        """Record a new request; returns its id."""
        request_id = uuid.uuid4().hex[:20]
        # One round trip for the record and its expiry.
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(keys.tracked_request(request_id), mapping={
            "tenant": tenant, "job": job, "workload": query.workload, "status": "queued",
            "created_at": repr(time.time()), "functions": "[]"})
        pipe.expire(keys.tracked_request(request_id), REQUEST_TTL_S)
        pipe.execute()
        return request_id

    def _progress(self, request_id: str, **fields: Any) -> None:
        self.redis.hset(keys.tracked_request(request_id),
                        mapping={k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()})

    def status(self, request_id: str, tenant: str | None) -> dict[str, Any]:
        """A request's status (and result when done); 404 for other tenants' requests."""
        raw = {text(k): text(v) for k, v in self.redis.hgetall(keys.tracked_request(request_id)).items()}
        if not raw or (tenant is not None and raw.get("tenant") != tenant):
            raise NotFound(f"request {request_id!r} does not exist")
        out: dict[str, Any] = {"request_id": request_id}
        for name, value in raw.items():
            try:
                out[name] = json.loads(value) if name in ("functions", "result", "error", "timings",
                                                          "hits", "misses") else value
            except ValueError:
                out[name] = value
        return out

    # --- execution -------------------------------------------------------------------
    def execute(self, request_id: str, tenant: str, job_spec: dict[str, Any], job: str,
                query: Query) -> dict[str, Any]:
        """Run a recorded request to completion; returns its status record."""
        started = time.perf_counter()
        self._progress(request_id, status="running")
        try:
            data = self.resolver.resolve(tenant, job, query)
            outcome = self._route(request_id, tenant, job, job_spec, query, data)
        except FedfaasError as exc:
            self._progress(request_id, status="failed", error=exc.to_json(),
                           finished_at=repr(time.time()))
            raise
        total = time.perf_counter() - started
        self._progress(request_id, status="done", result=outcome.result, function=outcome.function,
                       hits=outcome.hits, misses=outcome.misses,
                       timings={"total_s": round(total, 6), "compute_s": outcome.compute_s},
                       finished_at=repr(time.time()))
        return self.status(request_id, tenant)

    def _route(self, request_id: str, tenant: str, job: str, job_spec: dict[str, Any], query: Query,
               data: ResolvedData) -> RunAnswer:
        body = RunRequest(
            request_id=request_id, tenant=tenant, job_id=job, workload=query.workload,
            params=query.params, job=job_spec, round=data.round, client=query.client,
            data=data.payload, arrays=query.arrays,
        )
        candidates: list[str] = []
        if data.keys:
            plan = self.engine.plan_request(query.workload, data.keys)
            holders: Counter[str] = Counter()
            for fids in plan.resident.values():
                holders.update(fids[:1])
            for fetch in plan.misses:
                holders.update(fetch.functions[:1])
            ranked = [f for f, _ in holders.most_common()]
            replicas = {f for fids in plan.resident.values() for f in fids[1:]}
            replicas |= {f for fetch in plan.misses for f in fetch.functions[1:]}
            candidates = ranked + sorted(replicas - set(ranked))
            self._dispatch_async(plan.prefetch, plan.evictions, data)
        candidates.append(workload_function(query.workload))
        tried: list[dict[str, Any]] = []
        for function_id in candidates:
            tried.append({"function": function_id, "status": "running"})
            self._progress(request_id, functions=tried)
            try:
                outcome = self._call(function_id, body)
            except Unavailable as exc:
                tried[-1]["status"] = f"unavailable: {exc.message[:120]}"
                if getattr(exc, "lost", True) and not function_id.startswith("wl-"):
                    self.on_lost(function_id)
                continue
            tried[-1]["status"] = "done"
            self._progress(request_id, functions=tried)
            return outcome
        raise Unavailable(f"no function could serve {query.workload!r}: tried {len(tried)}")

    def _call(self, function_id: str, body: RunRequest) -> RunAnswer:
        try:
            resp = self.faas.invoke(function_id, body.model_dump_json(), path="run",
                                    headers={"Content-Type": "application/json"},
                                    timeout=self.run_timeout_s)
        except Unavailable as exc:
            if isinstance(exc.__cause__, requests.ReadTimeout):
                # Connected, then no answer in time: slow or stuck, not gone.
                raise FunctionUnavailable(f"{function_id} did not answer within "
                                          f"{self.run_timeout_s:g}s", lost=False) from None
            raise
        kind = classify_answer(resp)
        if kind is FunctionAnswer.TOKEN_REFUSED:
            # The deployment's secret, not the analyst's credentials: a server-side error,
            # and the function and what it holds are fine.
            raise FedfaasError(f"{function_id} refused the gateway's internal token "
                               f"({resp.status_code}): check the fedfaas-internal-token secret",
                               status=500, code="internal_token_rejected")
        if kind is FunctionAnswer.FAILED:
            # The function answered, so its instance and what it holds are alive: the
            # workload failed on this request, and another holder would fail the same way.
            raise FedfaasError(f"{body.workload} failed on {function_id} "
                               f"({resp.status_code}): {error_message(resp)[:300]}", status=500,
                               code="workload_failed")
        if kind in (FunctionAnswer.OUT_OF_MEMORY, FunctionAnswer.OWN_UNAVAILABLE,
                    FunctionAnswer.BUSY, FunctionAnswer.UNREACHABLE):
            # Only an instance the platform cannot reach may have lost what it holds; a
            # busy or slow one, or the function's own 503 or 507 (the next holder or the
            # workload function may have the memory), keeps it, and the keep-alive pings
            # find an instance that really came back empty.
            raise FunctionUnavailable(f"{function_id} answered {resp.status_code}",
                                      lost=kind is FunctionAnswer.UNREACHABLE)
        if resp.status_code >= 400:
            try:
                error = resp.json()
            except ValueError:
                raise Unavailable(f"{function_id} answered non-JSON") from None
            error = error if isinstance(error, dict) else {"message": error}
            raise FedfaasError(str(error.get("message", error)), status=resp.status_code,
                               code=str(error.get("error", "workload_error")))
        try:
            return RunAnswer.from_json(resp.content)
        except BadRequest as exc:
            raise Unavailable(f"{function_id} answered no workload result: {exc.message[:200]}") from None

    def _dispatch_async(self, prefetch: Any, evictions: Any, data: ResolvedData) -> None:
        """Queue prefetches and evictions on the functions (asynchronous invocations)."""
        send_cache_calls(self.faas, load_requests(prefetch, self.resolver), evict_requests(evictions))


def load_requests(fetches: Iterable[Fetch | IngestResult], resolver: DataResolver) -> dict[str, LoadRequest]:
    """The load request of each cache function for what the Cache Engine placed;
    an item with no S3 object is left out."""
    by_fn: dict[str, list[ItemRef]] = {}
    for fetch in fetches:
        s3_key = resolver.s3_key(fetch.key)
        if s3_key is None:
            continue
        for fid in fetch.functions:
            by_fn.setdefault(fid, []).append(ItemRef(key=fetch.key.to_str(), s3=s3_key))
    return {fid: LoadRequest(items=items) for fid, items in by_fn.items()}


def evict_requests(evictions: Iterable[Move]) -> dict[str, EvictRequest]:
    """The evict request of each cache function for the Cache Engine's evictions."""
    drops: dict[str, list[str]] = {}
    for move in evictions:
        drops.setdefault(move.function_id, []).append(move.key.to_str())
    return {fid: EvictRequest(keys=dkeys) for fid, dkeys in drops.items()}


def send_cache_calls(faas: FaasClient, loads: dict[str, LoadRequest],
                     evicts: dict[str, EvictRequest]) -> None:
    """Send loads and evictions to the cache functions, asynchronously; a failure is logged
    (the keep-alive and the next request repair what a lost call leaves undone)."""
    calls: list[tuple[str, str, Contract]] = [(fid, "load", req) for fid, req in loads.items()]
    calls += [(fid, "evict", req) for fid, req in evicts.items()]
    for fid, path, request in calls:
        try:
            faas.invoke_async(fid, request.model_dump_json(), path=path,
                              headers={"Content-Type": "application/json"})
        except FedfaasError as exc:
            log.warning("%s on %s failed: %s", path, fid, exc.message)


__all__ = ["DataKey", "Query", "RequestTracker", "evict_requests", "load_requests", "send_cache_calls",
           "workload_function"]
