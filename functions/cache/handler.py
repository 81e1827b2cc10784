"""OpenFaaS functions ``cache-N`` / ``cache-N-rK``: FLStore's serverless cache with co-located compute.

One handler serves every cache shard and replica; ``FEDFAAS_CACHE_ID`` names
the instance.  Paths: ``GET /ping`` (keep-alive), ``GET /keys``,
``POST /load`` (:class:`~fedfaas.contracts.LoadRequest`), ``POST /evict``
(:class:`~fedfaas.contracts.EvictRequest`), ``POST /run``
(:class:`~fedfaas.contracts.RunRequest`, from the Request Tracker).  Every path but
the ping (counts only, no keys or data) needs the internal token.
"""

from __future__ import annotations

from typing import Any

from fedfaas.config import load_settings
from fedfaas.contracts import EvictRequest, LoadRequest, RunRequest
from fedfaas.handlers import guarded, json_response, require_internal_token
from fedfaas.serverless_cache import ServerlessCache
from fedfaas.store import ObjectStore

_cache = ServerlessCache.from_env(ObjectStore(load_settings()))


@guarded
def handle(event: Any, context: Any) -> dict[str, Any]:
    """Dispatch on the request path."""
    path = (event.path or "/").rstrip("/") or "/"
    if path in ("/ping", "/") and event.method == "GET":
        return json_response(200, _cache.ping())
    # Before the body is even parsed: the request names S3 objects of any tenant.
    require_internal_token(event)
    if path == "/keys" and event.method == "GET":
        return json_response(200, {"function": _cache.function_id, "keys": _cache.held()})
    if event.method != "POST":
        return json_response(405, {"error": "method_not_allowed", "message": f"{event.method} {path}"})
    if path == "/load":
        return json_response(200, _cache.load(LoadRequest.from_json(event.body)))
    if path == "/evict":
        return json_response(200, _cache.evict(EvictRequest.from_json(event.body)))
    if path == "/run":
        return json_response(200, _cache.run(RunRequest.from_json(event.body)))
    return json_response(404, {"error": "not_found", "message": f"no such path {path!r}"})
