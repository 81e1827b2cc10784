"""Gateway API v1: tenants, jobs, parties, rounds, updates and global models."""

from __future__ import annotations

import logging
from typing import Any, cast

from flask import Blueprint, Response, current_app, jsonify, request

from fedfaas import keys
from fedfaas.errors import BadRequest, Forbidden, NotFound
from fedfaas.fusion import get_algorithm
from fedfaas.handlers import loads_body
from fedfaas.spec import JobSpec, PartyProfile, check_id, json_type, parse
from gateway.bodies import read_body

log = logging.getLogger("fedfaas.api")
blueprint = Blueprint("v1", __name__, url_prefix="/v1")

OCTET = "application/octet-stream"


def _svc() -> Any:
    return current_app.extensions["fedfaas"]


def _json_body() -> dict[str, Any]:
    # get_data, not .data: a JSON body sent with a form content type still counts.
    raw = request.get_data(cache=True)
    if not raw:
        return {}
    data = loads_body(raw)
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    return data


def _member_job(job_id: str) -> Any:
    """The job, for its admins and parties (404 for others, 403 for its enrollment token)."""
    svc = _svc()
    principal = svc.principal()
    job = svc.registry.job_for(principal, job_id)
    principal.require_member()
    return job


def _round_arg(value: str) -> int:
    try:
        rnd = int(value)
    except ValueError:
        raise BadRequest(f"round {value!r} is not an integer") from None
    if rnd < 0 or rnd > 10**9:
        raise BadRequest(f"round {rnd} is out of range")
    return rnd


def _created(payload: dict[str, Any], status: int = 201) -> Response:
    resp = jsonify(payload)
    resp.status_code = status
    return resp


# --- tenants ---------------------------------------------------------------------------


@blueprint.post("/tenants")
def create_tenant() -> Response:
    svc = _svc()
    if svc.principal().role != "root":
        raise Forbidden("creating tenants needs the operator's admin token")
    body = _json_body()
    tenant = check_id(body.get("tenant", ""), "tenant")
    token = svc.registry.create_tenant(tenant)
    return _created({"tenant": tenant, "admin_token": token})


# --- jobs ------------------------------------------------------------------------------


@blueprint.post("/jobs")
def create_job() -> Response:
    svc = _svc()
    principal = svc.principal()
    spec = cast(JobSpec, parse(JobSpec, _json_body(), "job spec"))
    tenant = spec.tenant or principal.tenant or "default"
    principal.require_admin(tenant)
    # Refuse now what every aggregation of the job would refuse (400 naming the problem).
    try:
        get_algorithm(spec.algorithm.name, **dict(spec.algorithm.params))
    except BadRequest as exc:
        raise BadRequest(f"invalid job spec: algorithm: {exc.message}") from None
    job, enroll = svc.registry.create_job(spec, tenant)
    return _created({**job.public(), "enrollment_token": enroll})


@blueprint.get("/jobs")
def list_jobs() -> Response:
    svc = _svc()
    principal = svc.principal()
    tenant = request.args.get("tenant") or principal.tenant or "default"
    principal.require_admin(tenant)
    return jsonify({"tenant": tenant, "jobs": svc.registry.list_jobs(tenant)})


@blueprint.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    svc = _svc()
    job = _member_job(job_id)
    out = job.public()
    out["parties"] = len(svc.registry.list_parties(job_id))
    out["rejections"] = svc.registry.rejections(job_id)
    return jsonify(out)


@blueprint.put("/jobs/<job_id>/model")
def put_initial_model(job_id: str) -> Response:
    """Upload the initial global model (round 0)."""
    from fedfaas import codec
    from fedfaas.model_schema import ParameterSchema

    svc = _svc()
    job = svc.registry.job_for(svc.principal(), job_id, admin=True)
    body = read_body()
    _, specs, _ = codec.decode_header(body, codec.Limits(max_total_bytes=svc.settings.max_body_bytes))
    # The schema is fixed first: a model that may no longer change is refused unstored.
    svc.registry.set_job_schema(job, ParameterSchema.of_specs(specs))
    key = keys.s3_model(job.tenant, job_id, 0)
    svc.store.put(key, body)
    return _created({"job_id": job_id, "round": 0, "key": key, "size": len(body)})


@blueprint.get("/jobs/<job_id>/model")
def get_latest_model(job_id: str) -> Response:
    """The newest global model (``?round=r`` for the model produced by round r)."""
    svc = _svc()
    job = _member_job(job_id)
    if "round" in request.args:
        return _model_response(job, _round_arg(request.args["round"]))
    for rnd in range(job.current_round, -1, -1):
        if svc.store.exists(keys.s3_model(job.tenant, job_id, rnd)):
            return _model_response(job, rnd)
    raise NotFound(f"job {job_id!r} has no global model yet")


@blueprint.get("/jobs/<job_id>/rounds/<rnd>/model")
def get_round_model(job_id: str, rnd: str) -> Response:
    job = _member_job(job_id)
    return _model_response(job, _round_arg(rnd))


def _model_response(job: Any, rnd: int) -> Response:
    svc = _svc()
    try:
        body = svc.store.get(keys.s3_model(job.tenant, job.job_id, rnd))
    except NotFound:
        raise NotFound(f"no global model for round {rnd} of job {job.job_id!r}") from None
    resp = Response(body, mimetype=OCTET)
    resp.headers["X-Fedfaas-Round"] = str(rnd)
    return resp


# --- parties ---------------------------------------------------------------------------


@blueprint.post("/jobs/<job_id>/parties")
def register_party(job_id: str) -> Response:
    svc = _svc()
    principal = svc.principal()
    job = svc.registry.job_for(principal, job_id)
    if not (principal.is_admin_of(job.tenant) or principal.role == "enroll"):
        raise Forbidden("registering a party needs the job's enrollment token or an admin token")
    profile = cast(PartyProfile, parse(PartyProfile, _json_body(), "party profile"))
    party_id, token = svc.registry.register_party(job, profile)
    return _created({"job_id": job_id, "party_id": party_id, "token": token})


@blueprint.get("/jobs/<job_id>/parties")
def list_parties(job_id: str) -> Response:
    svc = _svc()
    svc.registry.job_for(svc.principal(), job_id, admin=True)
    return jsonify({"job_id": job_id, "parties": svc.registry.list_parties(job_id)})


@blueprint.get("/jobs/<job_id>/parties/<party_id>")
def get_party(job_id: str, party_id: str) -> Response:
    svc = _svc()
    principal = svc.principal()
    job = _member_job(job_id)
    if not principal.is_admin_of(job.tenant) and principal.party != party_id:
        raise NotFound(f"party {party_id!r} is not registered in job {job_id!r}")
    return jsonify(svc.registry.get_party(job_id, party_id))


@blueprint.patch("/jobs/<job_id>/parties/<party_id>")
def update_party(job_id: str, party_id: str) -> Response:
    """A party reports measured times or bandwidth (JIT estimator input)."""
    svc = _svc()
    principal = svc.principal()
    job = _member_job(job_id)
    if not principal.is_admin_of(job.tenant) and principal.party != party_id:
        raise NotFound(f"party {party_id!r} is not registered in job {job_id!r}")
    changes = _json_body()
    changes.pop("party_id", None)
    parse(PartyProfile, changes, "party profile")
    return jsonify(svc.registry.update_party(job_id, party_id, changes))


# --- rounds and updates ----------------------------------------------------------------


@blueprint.post("/jobs/<job_id>/rounds")
def start_round(job_id: str) -> Response:
    svc = _svc()
    job = svc.registry.job_for(svc.principal(), job_id, admin=True)
    selected = _json_body().get("parties")
    if selected is not None:
        if not isinstance(selected, list):
            raise BadRequest(f"parties: expected an array of party ids, got {json_type(selected)}")
        for i, party in enumerate(selected):
            if not isinstance(party, str):
                raise BadRequest(f"parties.{i}: expected a party id (a string), got {json_type(party)}")
    bridge = current_app.extensions["fedfaas_jit"]
    record = bridge.open_round(job, selected)
    out = record.public(arrived=0)
    out["estimate"] = bridge.estimate_summary(job_id, record.round)
    return _created(out)


@blueprint.get("/jobs/<job_id>/estimates")
def get_estimates(job_id: str) -> Response:
    """JIT deadline estimates against observed arrivals and aggregation, per round."""
    svc = _svc()
    svc.registry.job_for(svc.principal(), job_id, admin=True)
    return jsonify(current_app.extensions["fedfaas_jit"].reports(job_id))


@blueprint.get("/jobs/<job_id>/rounds/<rnd>")
def get_round(job_id: str, rnd: str) -> Response:
    svc = _svc()
    principal = svc.principal()
    job = _member_job(job_id)
    number = _round_arg(rnd)
    record = svc.registry.get_round(job_id, number)
    updates = svc.registry.round_updates(job_id, number)
    out = record.public(arrived=len(updates))
    estimate = current_app.extensions["fedfaas_jit"].estimate_summary(job_id, number)
    if estimate is not None:
        out["estimate"] = estimate
    if principal.is_admin_of(job.tenant):
        out["arrived_parties"] = sorted(updates)
    elif principal.party is not None:
        out["your_update"] = updates.get(principal.party)
    return jsonify(out)


@blueprint.post("/jobs/<job_id>/rounds/<rnd>/updates")
def post_update(job_id: str, rnd: str) -> Response:
    svc = _svc()
    principal = svc.principal()
    job = _member_job(job_id)
    if principal.role != "party" or principal.party is None:
        raise Forbidden("only a party of this job can upload updates (use the party's token)")
    number = _round_arg(rnd)
    body = read_body()
    # Recording the update announced its arrival on the arrivals stream, which the
    # scheduler and the Cache Engine read (gateway/arrivals.py).
    result = svc.ingest.accept(job, number, principal.party, body)
    return _created(result.record, 201 if result.created else 200)


@blueprint.get("/jobs/<job_id>/rounds/<rnd>/updates/<party_id>")
def get_update(job_id: str, rnd: str, party_id: str) -> Response:
    svc = _svc()
    principal = svc.principal()
    job = _member_job(job_id)
    if not principal.is_admin_of(job.tenant) and principal.party != party_id:
        raise NotFound(f"no update of party {party_id!r} visible to you")
    number = _round_arg(rnd)
    check_id(party_id, "party id")
    entry = svc.registry.round_updates(job_id, number).get(party_id)
    if entry is None:
        raise NotFound(f"party {party_id!r} has no stored update for round {number}")
    return Response(svc.store.get(entry["key"]), mimetype=OCTET)
