"""The handler behind each ``wl-<workload>`` OpenFaaS function.

A workload function runs one non-training workload on data it reads from S3
(keeping it in memory within a small budget).  The Request Tracker sends it a
request when no cache function holding the data answers: FLStore's fallback
to the persistent store (FLStore 4.5).  ``POST`` needs the internal token;
``GET /`` describes the workload and stays open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fedfaas.config import load_settings
from fedfaas.contracts import RunRequest
from fedfaas.errors import BadRequest
from fedfaas.handlers import guarded, json_response, require_internal_token
from fedfaas.serverless_cache import ServerlessCache
from fedfaas.store import ObjectStore
from fedfaas.workloads import get_workload


def make_handler(workload: str) -> Callable[[Any, Any], dict[str, Any]]:
    """A python3-http ``handle`` running ``workload`` (``GET /`` describes it)."""
    spec = get_workload(workload)
    settings = load_settings()
    cache = ServerlessCache(ObjectStore(settings), f"wl-{workload}", settings.workload_cache_budget_bytes)

    @guarded
    def handle(event: Any, context: Any) -> dict[str, Any]:
        if event.method == "GET":
            return json_response(200, spec.describe())
        if event.method != "POST":
            return json_response(405, {"error": "method_not_allowed", "message": "POST a request"})
        require_internal_token(event)
        request = RunRequest.from_json(event.body)
        if request.workload not in (None, workload):
            raise BadRequest(f"this function runs {workload!r}, not {request.workload!r}")
        return json_response(200, cache.run(request.model_copy(update={"workload": workload})))

    return handle
