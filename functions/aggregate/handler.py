"""OpenFaaS function ``aggregate``: one aggregation step (see fedfaas.aggregation).

POST a :class:`~fedfaas.contracts.StepRequest` as JSON (with the internal token);
the :class:`~fedfaas.contracts.StepAnswer` names the partial aggregate or global
model written to S3.  ``GET`` is an open warm ping that returns no data.  The
store client lives at module level, which the python3-http template keeps
between calls.
"""

from __future__ import annotations

from typing import Any

from fedfaas.aggregation import AggregationStep
from fedfaas.config import load_settings
from fedfaas.contracts import StepRequest
from fedfaas.fusion.kernels import reuse_freed_memory
from fedfaas.handlers import guarded, json_response, require_internal_token
from fedfaas.store import ObjectStore

# A warm instance allocates an accumulator per step; keeping freed blocks
# mapped saves a page fault per page on every later step.
reuse_freed_memory()
_step = AggregationStep(ObjectStore(load_settings()))


@guarded
def handle(event: Any, context: Any) -> dict[str, Any]:
    """Run one aggregation step."""
    if event.method == "GET":
        return json_response(200, {"status": "ok"})  # keep-alive and health
    if event.method != "POST":
        return json_response(405, {"error": "method_not_allowed", "message": "POST a step request"})
    require_internal_token(event)
    return json_response(200, _step.run(StepRequest.from_json(event.body)))
