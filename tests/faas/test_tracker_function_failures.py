"""The Request Tracker tells a workload that failed on a live function from a lost function.

Real router, real function processes and the Cache Engine on real Redis: a cache
function whose workload raises answers 500 itself, so what it holds is still
there; only a platform failure (the instance gone, stuck or busy) marks it lost.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from cache_engine.engine import CacheEngine
from cache_engine.keys import DataKey
from fedfaas.devstack.faas import FaasClient, RouterOptions, RouterProcess, start_router
from fedfaas.errors import FedfaasError
from request_tracker.data import ResolvedData
from request_tracker.tracker import Query, RequestTracker
from tests.faas.conftest import AUTH, write_function

CACHE = """
import json
import os
import time

from fedfaas.errors import Unavailable
from fedfaas.handlers import guarded


@guarded
def handle(event, context):
    params = json.loads(event.body or b"{}").get("params", {})
    me = os.environ["NAME"]
    if params.get("boom"):
        raise RuntimeError("the workload hit a bug")
    if params.get("refuse"):
        return {"statusCode": 403, "body": {"error": "internal_token_invalid", "message": "wrong token"}}
    if params.get("stuck") == me:
        time.sleep(5)  # past exec_timeout: the platform gives up on the instance
    if params.get("unreachable") == me:
        # What OpenFaaS' proxy answers for an instance it cannot reach: 500, unmarked.
        return {"statusCode": 500, "body": "Can't reach service for: " + me}
    if params.get("no_s3") == me:
        raise Unavailable("S3 unreachable from the function")
    if params.get("oom") == me:
        raise MemoryError
    return {"statusCode": 200, "body": {"result": {"ok": True}, "function": me}}
"""

STACK = """
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  cache-0:
    lang: python3-http
    handler: ./cache
    image: cache:latest
    environment:
      NAME: cache-0
      exec_timeout: 1s
    labels:
      com.openfaas.scale.min: "1"
  cache-1:
    lang: python3-http
    handler: ./cache
    image: cache:latest
    environment:
      NAME: cache-1
      exec_timeout: 1s
    labels:
      com.openfaas.scale.min: "1"
"""


@pytest.fixture(scope="module")
def cache_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    root = tmp_path_factory.mktemp("tracker")
    write_function(root / "cache", {"handler.py": CACHE})
    secrets = root / "secrets"
    secrets.mkdir()
    (secrets / "basic-auth-user").write_text(AUTH[0])
    (secrets / "basic-auth-password").write_text(AUTH[1])
    (root / "stack.yml").write_text(STACK)
    process = start_router(root / "stack.yml", 0, root / "state", secrets_dir=secrets,
                           options=RouterOptions(idle_s=60.0, grace_s=2.0))
    try:
        yield process
    finally:
        process.stop()


def _tracker(client: redis.Redis, router: RouterProcess, lost: list[str],
             run_timeout_s: float = 30.0) -> tuple[RequestTracker, DataKey]:
    engine = CacheEngine(client, ("cache-0", "cache-1"), budget_bytes=10_000, replicas=1)
    engine.register_workloads("acme", "job-1", ["debugging"])
    key = DataKey.update("acme", "job-1", 1, "alice")
    engine.ingest(key, 100)
    faas = FaasClient(router.url, AUTH, timeout=30.0)
    return RequestTracker(client, engine, faas, resolver=None,  # type: ignore[arg-type]
                          run_timeout_s=run_timeout_s, on_lost=lost.append), key


def _run(tracker: RequestTracker, key: DataKey, params: dict[str, object]) -> dict[str, object]:
    query = Query("debugging", 1, None, params, {})
    return tracker._route("r-1", "acme", "job-1", {}, query, ResolvedData(1, [key])).model_dump()


def test_a_workload_that_raises_fails_the_request_without_losing_the_function(
        redis_client: redis.Redis, cache_router: RouterProcess) -> None:
    # Prepare
    lost: list[str] = []
    tracker, key = _tracker(redis_client, cache_router, lost)
    holders = tracker.engine.lookup(key)
    # Execute
    with pytest.raises(FedfaasError) as failed:
        _run(tracker, key, {"boom": True})
    # Assert: a clear error naming the function; the cache keeps its holders.
    assert failed.value.code == "workload_failed" and failed.value.status == 500
    assert holders[0] in failed.value.message and "500" in failed.value.message
    assert lost == []
    assert tracker.engine.lookup(key) == holders
    assert _run(tracker, key, {})["result"] == {"ok": True}


def test_a_stuck_function_is_skipped_for_its_replica_but_not_marked_lost(
        redis_client: redis.Redis, cache_router: RouterProcess) -> None:
    # Prepare
    lost: list[str] = []
    tracker, key = _tracker(redis_client, cache_router, lost)
    primary, replica = tracker.engine.lookup(key)
    # Execute: the primary is stuck past its exec_timeout (the router answers 504).
    outcome = _run(tracker, key, {"stuck": primary})
    # Assert: the replica answers; whether the primary came back empty is for the
    # keep-alive pings to find, so its data stays placed.
    assert outcome["result"] == {"ok": True} and outcome["function"] == replica
    assert lost == []


def test_a_function_slower_than_the_trackers_timeout_is_skipped_but_not_marked_lost(
        redis_client: redis.Redis, cache_router: RouterProcess) -> None:
    # Prepare: the tracker gives up after 0.3 s, before the router's 1 s exec_timeout.
    lost: list[str] = []
    tracker, key = _tracker(redis_client, cache_router, lost, run_timeout_s=0.3)
    primary, replica = tracker.engine.lookup(key)
    # Execute
    outcome = _run(tracker, key, {"stuck": primary})
    # Assert
    assert outcome["function"] == replica
    assert lost == []


def test_a_function_refusing_the_gateways_token_is_a_server_error_not_a_lost_function(
        redis_client: redis.Redis, cache_router: RouterProcess) -> None:
    # Prepare
    lost: list[str] = []
    tracker, key = _tracker(redis_client, cache_router, lost)
    # Execute
    with pytest.raises(FedfaasError) as refused:
        _run(tracker, key, {"refuse": True})
    # Assert: not the analyst's 403, and nothing wiped.
    assert refused.value.code == "internal_token_rejected" and refused.value.status == 500
    assert lost == []


@pytest.mark.parametrize(("params", "lost_primary"), [
    ({"unreachable": "PRIMARY"}, True),   # the platform's unmarked 500: failover, re-placement
    ({"no_s3": "PRIMARY"}, False),        # the function's own 503: failover, it keeps its data
    ({"oom": "PRIMARY"}, False),          # its own 507: the next holder may have the memory
])
def test_failover_marks_lost_only_what_the_platform_could_not_reach(
        redis_client: redis.Redis, cache_router: RouterProcess, params: dict[str, str],
        lost_primary: bool) -> None:
    # Prepare
    lost: list[str] = []
    tracker, key = _tracker(redis_client, cache_router, lost)
    primary, replica = tracker.engine.lookup(key)
    # Execute
    outcome = _run(tracker, key, {k: primary for k in params})
    # Assert
    assert outcome["result"] == {"ok": True} and outcome["function"] == replica
    assert lost == ([primary] if lost_primary else [])
