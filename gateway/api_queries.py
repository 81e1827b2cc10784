"""Gateway API v1 for analysts: non-training queries served by FLStore."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from fedfaas import codec, keys
from fedfaas.errors import BadRequest, Forbidden, Unavailable
from fedfaas.workloads import WORKLOADS
from gateway.bodies import read_body

blueprint = Blueprint("queries", __name__, url_prefix="/v1")


def _svc() -> Any:
    return current_app.extensions["fedfaas"]


def _flstore() -> Any:
    service = current_app.extensions.get("fedfaas_flstore")
    if service is None:
        raise Unavailable("FLStore is not enabled on this gateway")
    return service


@blueprint.get("/workloads")
def list_workloads() -> Response:
    """The non-training workloads, their caching policy and parameters."""
    return jsonify({"workloads": [spec.describe() for spec in WORKLOADS.values()]})


@blueprint.post("/jobs/<job_id>/queries")
def submit_query(job_id: str) -> Response:
    """Run a workload on a job's data: ``?wait=1`` (default) answers with the result."""
    svc = _svc()
    job = svc.registry.job_for(svc.principal(), job_id, admin=True)
    try:
        body = request.get_json(force=True, silent=False)
    except Exception:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    wait = request.args.get("wait", "1") not in ("0", "false", "no")
    result = _flstore().submit(job.tenant, job, body, wait)
    resp = jsonify(result)
    resp.status_code = 200 if wait else 202
    return resp


@blueprint.get("/queries/<request_id>")
def get_query(request_id: str) -> Response:
    """Status and, once done, result of a query."""
    svc = _svc()
    principal = svc.principal()
    if principal.role not in ("root", "tenant-admin"):
        raise Forbidden("queries are read with the tenant's admin token")
    tenant = None if principal.role == "root" else principal.tenant
    return jsonify(_flstore().tracker.status(request_id, tenant))


@blueprint.put("/jobs/<job_id>/validation")
def put_validation(job_id: str) -> Response:
    """Upload the job's validation set (arrays ``x_val`` and ``y_val``) for contribution workloads."""
    svc = _svc()
    job = svc.registry.job_for(svc.principal(), job_id, admin=True)
    body = read_body()  # a chunked body over the limit is a 413, not a "truncated" 400
    decoded = codec.decode(body, codec.Limits(max_total_bytes=svc.settings.max_body_bytes))
    missing = {"x_val", "y_val"} - set(decoded.tensors)
    if missing:
        raise BadRequest(f"validation set lacks {sorted(missing)}")
    key = keys.s3_validation(job.tenant, job_id)
    svc.store.put(key, body)
    resp = jsonify({"job_id": job_id, "key": key, "size": len(body)})
    resp.status_code = 201
    return resp
