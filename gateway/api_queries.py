"""Gateway API v1 for analysts: non-training queries served by FLStore."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from fedfaas import codec, keys
from fedfaas.errors import BadRequest, Forbidden, Unavailable
from fedfaas.workloads import WORKLOADS
from gateway.bodies import read_body
from gateway.openapi import ADMINS, Body, ok, operation
from gateway.schemas import Query, QueryStatus, Stored, Workload, Workloads

blueprint = Blueprint("queries", __name__, url_prefix="/v1")


def _svc() -> Any:
    return current_app.extensions["fedfaas"]


def _flstore() -> Any:
    service = current_app.extensions.get("fedfaas_flstore")
    if service is None:
        raise Unavailable("FLStore is not enabled on this gateway")
    return service


@blueprint.get("/workloads")
@operation("queries", {200: ok("The workloads.", Workloads)}, roles=())
def list_workloads() -> Response:
    """Non-training workloads, their caching policy and parameters."""
    listed = [Workload.model_validate(spec.describe()) for spec in WORKLOADS.values()]
    return Workloads(workloads=listed).answer()


@blueprint.post("/jobs/<job_id>/queries")
@operation("queries", {200: ok("Done (wait=1).", QueryStatus),
                       202: ok("Queued (wait=0); poll GET /v1/queries/{request_id}.", QueryStatus)},
           (400, 404, 503), roles=ADMINS, body=Body("The query.", Query), query=("Wait",))
def submit_query(job_id: str) -> Response:
    """Run a non-training workload on a job's data (FLStore).

    ``?wait=1`` (the default) answers with the result, ``?wait=0`` queues the query.
    """
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
    return QueryStatus.model_validate(result).answer(200 if wait else 202)


@blueprint.get("/queries/<request_id>")
@operation("queries", {200: ok("The query's status.", QueryStatus)}, (400, 404, 503), roles=ADMINS)
def get_query(request_id: str) -> Response:
    """Status and result of a query (admins)."""
    svc = _svc()
    principal = svc.principal()
    if principal.role not in ("root", "tenant-admin"):
        raise Forbidden("queries are read with the tenant's admin token")
    tenant = None if principal.role == "root" else principal.tenant
    return QueryStatus.model_validate(_flstore().tracker.status(request_id, tenant)).answer()


@blueprint.put("/jobs/<job_id>/validation")
@operation("queries", {201: ok("Stored in S3.", Stored)}, (400, 404, 413, 503), roles=ADMINS,
           body=Body("Arrays `x_val` and `y_val` in the fedfaas wire format."))
def put_validation(job_id: str) -> Response:
    """Upload the job's validation set (`x_val`, `y_val`).

    Contribution workloads measure against it.
    """
    svc = _svc()
    job = svc.registry.job_for(svc.principal(), job_id, admin=True)
    body = read_body()  # a chunked body over the limit is a 413, not a "truncated" 400
    decoded = codec.decode(body, codec.Limits(max_total_bytes=svc.settings.max_body_bytes))
    missing = {"x_val", "y_val"} - set(decoded.tensors)
    if missing:
        raise BadRequest(f"validation set lacks {sorted(missing)}")
    key = keys.s3_validation(job.tenant, job_id)
    svc.store.put(key, body)
    return Stored(job_id=job_id, key=key, size=len(body)).answer(201)
