"""Gateway API v1: tenants, jobs, parties, rounds, updates and global models."""

from __future__ import annotations

import logging
from typing import Any, cast

from flask import Blueprint, Response, current_app, request

from fedfaas import keys
from fedfaas.errors import BadRequest, Forbidden, NotFound
from fedfaas.fusion import get_algorithm
from fedfaas.handlers import loads_body
from fedfaas.spec import JobSpec, PartyProfile, check_id, json_type, parse
from gateway.bodies import read_body
from gateway.openapi import ADMINS, BINARY, MEMBERS, Answer, Body, ok, operation
from gateway.schemas import (
    Estimates,
    Job,
    JobCreated,
    JobList,
    Party,
    PartyList,
    PartyRegistered,
    Round,
    RoundStart,
    Stored,
    TenantCreate,
    TenantCreated,
    UpdateRecord,
)

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


_MODEL = Answer("A model in the fedfaas wire format (codec).", media=OCTET, schema=BINARY,
                headers=("X-Fedfaas-Round",))


# --- tenants ---------------------------------------------------------------------------


@blueprint.post("/tenants")
@operation("tenants", {201: ok("Created; the tenant's admin token is shown once.", TenantCreated)},
           (400, 403, 409, 503), roles=("root",), body=Body("The new tenant's id.", TenantCreate))
def create_tenant() -> Response:
    """Create a tenant (operator's admin token)."""
    svc = _svc()
    if svc.principal().role != "root":
        raise Forbidden("creating tenants needs the operator's admin token")
    body = _json_body()
    tenant = check_id(body.get("tenant", ""), "tenant")
    token = svc.registry.create_tenant(tenant)
    return TenantCreated(tenant=tenant, admin_token=token).answer(201)


# --- jobs ------------------------------------------------------------------------------


@blueprint.post("/jobs")
@operation("jobs", {201: ok("Created; the enrollment token is shown once.", JobCreated)},
           (400, 403, 404, 409, 503), roles=ADMINS, body=Body("The job spec.", JobSpec))
def create_job() -> Response:
    """Create an FL job from its job spec (JIT 5.1)."""
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
    return job.public(JobCreated, enrollment_token=enroll).answer(201)


@blueprint.get("/jobs")
@operation("jobs", {200: ok("Job ids.", JobList)}, (403, 503), roles=ADMINS, query=("Tenant",))
def list_jobs() -> Response:
    """List a tenant's jobs."""
    svc = _svc()
    principal = svc.principal()
    tenant = request.args.get("tenant") or principal.tenant or "default"
    principal.require_admin(tenant)
    return JobList(tenant=tenant, jobs=svc.registry.list_jobs(tenant)).answer()


@blueprint.get("/jobs/<job_id>")
@operation("jobs", {200: ok("The job.", Job)}, (400, 404, 503), roles=MEMBERS)
def get_job(job_id: str) -> Response:
    """A job's spec, state, parties and rejections."""
    svc = _svc()
    job = _member_job(job_id)
    return job.public(parties=len(svc.registry.list_parties(job_id)),
                      rejections=svc.registry.rejections(job_id)).answer()


@blueprint.put("/jobs/<job_id>/model")
@operation("models", {201: ok("Stored in S3.", Stored)}, (400, 404, 413, 503), roles=ADMINS,
           body=Body("The model in the fedfaas wire format."))
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
    return Stored(job_id=job_id, round=0, key=key, size=len(body)).answer(201)


@blueprint.get("/jobs/<job_id>/model")
@operation("models", {200: _MODEL}, (400, 404, 503), roles=MEMBERS, query=("ModelRound",))
def get_latest_model(job_id: str) -> Response:
    """The newest global model.

    ``?round=r`` answers the model produced by round r instead.
    """
    svc = _svc()
    job = _member_job(job_id)
    if "round" in request.args:
        return _model_response(job, _round_arg(request.args["round"]))
    for rnd in range(job.current_round, -1, -1):
        if svc.store.exists(keys.s3_model(job.tenant, job_id, rnd)):
            return _model_response(job, rnd)
    raise NotFound(f"job {job_id!r} has no global model yet")


@blueprint.get("/jobs/<job_id>/rounds/<rnd>/model")
@operation("models", {200: _MODEL}, (400, 404, 503), roles=MEMBERS)
def get_round_model(job_id: str, rnd: str) -> Response:
    """The global model produced by a round."""
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
@operation("parties", {201: ok("Registered; the party's token is shown once.", PartyRegistered)},
           (400, 403, 404, 409, 503), roles=(*ADMINS, "enroll"),
           body=Body("The party profile.", PartyProfile, required=False))
def register_party(job_id: str) -> Response:
    """Register a party with its profile (JIT 5.2).

    Needs the job's enrollment token or an admin token.
    """
    svc = _svc()
    principal = svc.principal()
    job = svc.registry.job_for(principal, job_id)
    if not (principal.is_admin_of(job.tenant) or principal.role == "enroll"):
        raise Forbidden("registering a party needs the job's enrollment token or an admin token")
    profile = cast(PartyProfile, parse(PartyProfile, _json_body(), "party profile"))
    party_id, token = svc.registry.register_party(job, profile)
    return PartyRegistered(job_id=job_id, party_id=party_id, token=token).answer(201)


@blueprint.get("/jobs/<job_id>/parties")
@operation("parties", {200: ok("Profiles by party id.", PartyList)}, (400, 404, 503), roles=ADMINS)
def list_parties(job_id: str) -> Response:
    """Every party's profile (admins)."""
    svc = _svc()
    svc.registry.job_for(svc.principal(), job_id, admin=True)
    return PartyList.model_validate({"job_id": job_id, "parties": svc.registry.list_parties(job_id)}).answer()


@blueprint.get("/jobs/<job_id>/parties/<party_id>")
@operation("parties", {200: ok("The profile.", Party)}, (400, 404, 503), roles=MEMBERS)
def get_party(job_id: str, party_id: str) -> Response:
    """A party's profile (admins or the party itself)."""
    svc = _svc()
    principal = svc.principal()
    job = _member_job(job_id)
    if not principal.is_admin_of(job.tenant) and principal.party != party_id:
        raise NotFound(f"party {party_id!r} is not registered in job {job_id!r}")
    return Party.model_validate(svc.registry.get_party(job_id, party_id)).answer()


@blueprint.patch("/jobs/<job_id>/parties/<party_id>")
@operation("parties", {200: ok("The merged profile.", Party)}, (400, 404, 503), roles=MEMBERS,
           body=Body("Fields to change.", PartyProfile, required=False))
def update_party(job_id: str, party_id: str) -> Response:
    """Report measured times or bandwidth (JIT estimator input)."""
    svc = _svc()
    principal = svc.principal()
    job = _member_job(job_id)
    if not principal.is_admin_of(job.tenant) and principal.party != party_id:
        raise NotFound(f"party {party_id!r} is not registered in job {job_id!r}")
    changes = _json_body()
    changes.pop("party_id", None)
    parse(PartyProfile, changes, "party profile")
    return Party.model_validate(svc.registry.update_party(job_id, party_id, changes)).answer()


# --- rounds and updates ----------------------------------------------------------------


@blueprint.post("/jobs/<job_id>/rounds")
@operation("rounds", {201: ok("The new round, with its JIT deadline estimate.", Round)},
           (400, 404, 409, 503), roles=ADMINS,
           body=Body("Optional client sampling.", RoundStart, required=False))
def start_round(job_id: str) -> Response:
    """Open the job's next round (admins)."""
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
    view = record.public(arrived=0)
    view.estimate = bridge.estimate_summary(job_id, record.round)
    return view.answer(201)


@blueprint.get("/jobs/<job_id>/estimates")
@operation("rounds", {200: ok("Estimates and observations.", Estimates)}, (400, 404, 503), roles=ADMINS)
def get_estimates(job_id: str) -> Response:
    """JIT deadline estimates against observed arrivals, per round (admins)."""
    svc = _svc()
    svc.registry.job_for(svc.principal(), job_id, admin=True)
    return Estimates.model_validate(current_app.extensions["fedfaas_jit"].reports(job_id)).answer()


@blueprint.get("/jobs/<job_id>/rounds/<rnd>")
@operation("rounds", {200: ok("The round.", Round)}, (400, 404, 503), roles=MEMBERS)
def get_round(job_id: str, rnd: str) -> Response:
    """A round's state and arrivals."""
    svc = _svc()
    principal = svc.principal()
    job = _member_job(job_id)
    number = _round_arg(rnd)
    record = svc.registry.get_round(job_id, number)
    updates = svc.registry.round_updates(job_id, number)
    view = record.public(arrived=len(updates))
    estimate = current_app.extensions["fedfaas_jit"].estimate_summary(job_id, number)
    if estimate is not None:
        view.estimate = estimate
    if principal.is_admin_of(job.tenant):
        view.arrived_parties = sorted(updates)
    elif principal.party is not None:
        mine = updates.get(principal.party)
        view.your_update = None if mine is None else UpdateRecord.model_validate(mine)
    return view.answer()


@blueprint.post("/jobs/<job_id>/rounds/<rnd>/updates")
@operation("rounds", {201: ok("Stored in S3 before this answer.", UpdateRecord),
                      200: ok("The same bytes were already stored (idempotent re-send).", UpdateRecord)},
           (400, 403, 404, 409, 413, 503), roles=("party",),
           body=Body("The update in the fedfaas wire format; metadata `num_examples`, optional `job`, "
                     "`round`, `party` (must match the URL and token), `train_time_s`."))
def post_update(job_id: str, rnd: str) -> Response:
    """Upload the calling party's model update for a round."""
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
    return UpdateRecord.model_validate(result.record).answer(201 if result.created else 200)


@blueprint.get("/jobs/<job_id>/rounds/<rnd>/updates/<party_id>")
@operation("rounds", {200: Answer("The update's bytes.", media=OCTET, schema=BINARY)}, (400, 404, 503),
           roles=MEMBERS)
def get_update(job_id: str, rnd: str, party_id: str) -> Response:
    """A stored update (admins or the party itself)."""
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
