"""OpenAPI 3.1 description of the gateway's HTTP API, served at ``GET /openapi.json``.

Request bodies of the job spec and the party profile are the pydantic models'
own JSON schemas (``fedfaas.spec``), ids use the same DNS-label pattern the
gateway checks, and the query workloads are the registered ones, so the
description cannot drift from what the gateway validates.  Each operation's
``operationId`` is the Flask endpoint that serves it; ``tests/gateway`` checks
that every route is described and every description has a route.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from flask import Blueprint, Response
from pydantic import BaseModel

from fedfaas.spec import ID_RE, JobSpec, PartyProfile
from fedfaas.workloads import WORKLOADS

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
OCTET = "application/octet-stream"

blueprint = Blueprint("openapi", __name__)

# --- building blocks -------------------------------------------------------------------

_ERRORS = {
    400: ("BadRequest", "The request is malformed or violates a limit; `message` says what is wrong."),
    401: ("Unauthorized", "Missing, malformed or unknown bearer token."),
    403: ("Forbidden", "The token is valid but its role may not do this."),
    404: ("NotFound", "No such resource, or not visible to this token (other tenants' jobs look absent)."),
    409: ("Conflict", "The resource's state forbids this (already exists, round closed, ...)."),
    413: ("PayloadTooLarge", "The body exceeds the gateway's `max_body_bytes`."),
    429: ("TooManyRequests", "The token's request budget for this minute is spent; see `Retry-After`."),
    503: ("Unavailable", "A backing service (Redis, S3, functions) is down; see `Retry-After`."),
}
ID = {"type": "string", "pattern": ID_RE.pattern, "minLength": 1, "maxLength": 63}


def _ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _path_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _ok(description: str, schema: dict[str, Any] | None = None, media: str = "application/json",
        headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "headers": {"X-Request-Id": _ref("X-Request-Id", "headers"), **(headers or {})}}
    if schema is not None:
        out["content"] = {media: {"schema": schema}}
    return out


def _op(endpoint: str, summary: str, tag: str, responses: dict[int, dict[str, Any]],
        errors: tuple[int, ...] = (), *, params: tuple[str, ...] = (),
        query: tuple[dict[str, Any], ...] = (), body: dict[str, Any] | None = None,
        public: bool = False, description: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": endpoint, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    op["parameters"] = [*(_ref(p, "parameters") for p in params), *query,
                        _ref("RequestIdHeader", "parameters")]
    if body is not None:
        op["requestBody"] = body
    codes = set(errors) | ({401, 429} if not public else set())
    op["responses"] = {str(code): resp for code, resp in responses.items()}
    op["responses"].update({str(code): _ref(_ERRORS[code][0], "responses") for code in sorted(codes)})
    op["responses"]["default"] = _ref("Error", "responses")
    if public:
        op["security"] = []
    return op


def _octet_body(description: str) -> dict[str, Any]:
    return {"required": True, "description": description,
            "content": {OCTET: {"schema": {"type": "string", "format": "binary"}}}}


def _json_body(schema: dict[str, Any], description: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "description": description, "content": _json(schema)}


def _dns_label_fields(model: type[BaseModel]) -> set[str]:
    """Fields a model checks with its ``_dns_label`` validator (invisible to its JSON schema)."""
    validators = model.__pydantic_decorators__.field_validators
    return set(validators["_dns_label"].info.fields) if "_dns_label" in validators else set()


def _pydantic_schemas() -> dict[str, Any]:
    """JSON schemas of the request models, their nested models hoisted to components."""
    out: dict[str, Any] = {}
    for model in (JobSpec, PartyProfile):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name in _dns_label_fields(model):
            prop = schema["properties"][name]
            for branch in prop.get("anyOf", [prop]):
                if branch.get("type") == "string":
                    branch.update(pattern=ID_RE.pattern, maxLength=63)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


# --- components ------------------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    num = {"type": "number"}
    nullable_num = {"type": ["number", "null"]}
    return {
        **_pydantic_schemas(),
        "Error": {
            "type": "object", "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "Stable machine-readable code (snake_case)."},
                "message": {"type": "string", "description": "What is wrong, for a person."},
                "details": {"type": "object", "description": "Structured details, e.g. invalid fields."},
            },
        },
        "TenantCreate": {"type": "object", "required": ["tenant"], "properties": {"tenant": ID}},
        "TenantCreated": {
            "type": "object", "required": ["tenant", "admin_token"],
            "properties": {"tenant": ID, "admin_token": {"type": "string",
                                                           "description": "Shown once; store it."}},
        },
        "Job": {
            "type": "object", "required": ["job_id", "tenant", "spec", "current_round", "state"],
            "properties": {
                "job_id": ID, "tenant": ID, "spec": _ref("JobSpec"),
                "current_round": {"type": "integer", "minimum": 0}, "created_at": num,
                "state": {"type": "string", "enum": ["created", "running", "finished"]},
                "parties": {"type": "integer", "description": "Registered parties (GET only)."},
                "rejections": {"type": "object", "additionalProperties": {"type": "integer"},
                               "description": "Refused updates by reason (GET only)."},
            },
        },
        "JobCreated": {"allOf": [_ref("Job"), {
            "type": "object", "required": ["enrollment_token"],
            "properties": {"enrollment_token": {
                "type": "string", "description": "Lets parties register in this job; shown once."}},
        }]},
        "JobList": {"type": "object", "properties": {"tenant": ID, "jobs": {"type": "array", "items": ID}}},
        "Party": {"type": "object", "required": ["party_id"], "properties": {
            "party_id": ID, "registered_at": num}, "additionalProperties": True,
            "description": "The party's profile (see PartyProfile) as stored."},
        "PartyRegistered": {"type": "object", "required": ["job_id", "party_id", "token"], "properties": {
            "job_id": ID, "party_id": ID,
            "token": {"type": "string", "description": "The party's secret token; shown once."}}},
        "PartyList": {"type": "object", "properties": {
            "job_id": ID, "parties": {"type": "object", "additionalProperties": _ref("Party")}}},
        "Round": {
            "type": "object", "required": ["job_id", "round", "state"], "additionalProperties": True,
            "properties": {
                "job_id": ID, "round": {"type": "integer", "minimum": 1},
                "state": {"type": "string", "enum": ["opening", "open", "aggregating", "closed", "failed"]},
                "started_at": num, "deadline_at": num, "closed_at": nullable_num,
                "expected": {"type": "integer", "description": "Parties expected in this round."},
                "quorum": {"type": "integer"}, "reason": {"type": "string"},
                "model_available": {"type": "boolean"}, "arrived": {"type": "integer"},
                "arrived_parties": {"type": "array", "items": ID, "description": "Admins only."},
                "your_update": {"anyOf": [_ref("UpdateRecord"), {"type": "null"}],
                                "description": "The calling party's update, if any."},
                "aggregation_latency_s": num,
                "estimate": {"type": "object", "description": "The round's JIT estimate."},
                "parties_included": {"type": "array", "items": ID,
                                     "description": "Whose updates the model fuses (closed rounds)."},
                "excluded": {"type": "object", "additionalProperties": {"type": "string"},
                             "description": "Updates left out of the aggregation, with the reason."},
                "last_arrival_at": nullable_num,
            },
        },
        "RoundStart": {"type": "object", "properties": {"parties": {
            "type": "array", "items": ID,
            "description": "Registered parties expected in this round (default: all)."}}},
        "Estimates": {"type": "object", "required": ["job_id", "learner", "rounds"], "properties": {
            "job_id": ID,
            "learner": {"type": "object", "description": (
                "What the next estimate applies beyond per-party corrections: rounds_seen, "
                "timer_share (the JIT timer's learned share of the latency headroom), latency_ratio "
                "(EWMA of observed over target latency), t_agg_residual, slack, t_rnd_bias (s).")},
            "rounds": {"type": "array", "items": {"type": "object", "description": (
                "Per round: predicted and observed t_rnd and t_agg and their errors, per-party "
                "t_upd errors, latency (last update, or t_wait for a round closed with updates "
                "missing, to published model, s) and target_latency "
                "(null under \"fastest\").")}}}},
        "UpdateRecord": {"type": "object", "required": ["party", "round", "key", "digest", "size"],
                         "properties": {
                             "party": ID, "round": {"type": "integer"}, "key": {"type": "string"},
                             "digest": {"type": "string", "description": "SHA-256 of the body."},
                             "size": {"type": "integer"}, "num_examples": {"type": "integer"},
                             "train_time_s": nullable_num, "arrived_at": num,
                             "nonfinite": {"type": "integer"},
                             "duplicate": {"type": "boolean",
                                           "description": "True when the same bytes were already stored."},
                         }},
        "Stored": {"type": "object", "required": ["job_id", "key", "size"], "properties": {
            "job_id": ID, "round": {"type": "integer"}, "key": {"type": "string"},
            "size": {"type": "integer"}}},
        "Workloads": {"type": "object", "properties": {"workloads": {"type": "array", "items": {
            "type": "object", "properties": {"name": {"type": "string"}, "policy": {"type": "string"},
                                             "summary": {"type": "string"}}}}}},
        "Query": {
            "type": "object", "required": ["workload"],
            "properties": {
                "workload": {"type": "string", "enum": sorted(WORKLOADS)},
                "round": {"type": "integer", "minimum": 1},
                "client": {"type": "string", "description": "Party id, for per-client workloads."},
                "params": {"type": "object", "description": "Workload parameters (see GET /v1/workloads)."},
                "arrays": {"type": "object", "description": "Extra numeric inputs, name -> nested lists."},
            },
        },
        "QueryStatus": {"type": "object", "required": ["request_id", "status"], "additionalProperties": True,
                        "properties": {"request_id": {"type": "string"},
                                       "status": {"type": "string",
                                                  "enum": ["queued", "running", "done", "failed"]},
                                       "result": {}, "error": _ref("Error")}},
        "Health": {"type": "object", "properties": {"status": {"type": "string"}}},
        "Ready": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "checks": {"type": "object", "additionalProperties": {"type": "boolean"}}}},
    }


def _components() -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for code, (name, text) in _ERRORS.items():
        responses[name] = _ok(text, _ref("Error"))
        if code in (429, 503):
            responses[name]["headers"]["Retry-After"] = {
                "description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
    responses["Error"] = _ok("Any other error (e.g. 405, or 500 `internal_error`), in the same form.",
                             _ref("Error"))
    return {
        "securitySchemes": {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "A token: the operator's admin token (root), a tenant's admin token, a job's "
                           "enrollment token, or a party's token.",
        }},
        "parameters": {
            "JobId": _path_param("job_id", ID, "Job id (a DNS label)."),
            "PartyId": _path_param("party_id", ID, "Party id (a DNS label)."),
            "Round": _path_param("rnd", {"type": "integer", "minimum": 0, "maximum": 10**9},
                                 "Round number (rounds start at 1; round 0 is the initial model)."),
            "QueryId": _path_param("request_id", {"type": "string", "minLength": 1, "maxLength": 64},
                                   "Id of a non-training query, as returned on submission."),
            "RequestIdHeader": {
                "name": "X-Request-Id", "in": "header", "required": False,
                "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"},
                "description": "Caller's request id, echoed back and logged; generated when absent. "
                               "OpenFaaS's X-Call-Id is honoured too.",
            },
        },
        "headers": {"X-Request-Id": {"description": "The request id this call was logged under.",
                                     "schema": {"type": "string"}}},
        "responses": responses,
        "schemas": _schemas(),
    }


# --- paths -----------------------------------------------------------------------------


def _paths() -> dict[str, Any]:
    j, jp, jr = ("JobId",), ("JobId", "PartyId"), ("JobId", "Round")
    round_query = {"name": "round", "in": "query", "required": False,
                   "schema": {"type": "integer", "minimum": 0, "maximum": 10**9},
                   "description": "The model produced by this round instead of the newest."}
    tenant_query = {"name": "tenant", "in": "query", "required": False, "schema": ID,
                    "description": "Tenant whose jobs to list (root only; default: the token's)."}
    wait_query = {"name": "wait", "in": "query", "required": False,
                  "schema": {"type": "string", "enum": ["1", "0", "true", "false", "yes", "no"]},
                  "description": "Answer with the result (default) or queue and answer 202."}
    model = _ok("A model in the fedfaas wire format (codec).", {"type": "string", "format": "binary"},
                OCTET, {"X-Fedfaas-Round": {"description": "Round that produced the model.",
                                            "schema": {"type": "integer"}}})
    return {
        "/healthz": {"get": _op("healthz", "Liveness probe", "system",
                                {200: _ok("The process answers.", _ref("Health"))}, public=True)},
        "/readyz": {"get": _op("readyz", "Readiness probe: Redis and S3 reachable", "system",
                               {200: _ok("Ready.", _ref("Ready")),
                                503: _ok("A backing service is down.", _ref("Ready"))}, public=True)},
        "/metrics": {"get": _op("metrics.scrape", "Prometheus metrics", "system",
                                {200: _ok("Prometheus text exposition.", {"type": "string"}, "text/plain")},
                                public=True)},
        "/openapi.json": {"get": _op("openapi.openapi_json", "This API description", "system",
                                     {200: _ok("OpenAPI 3.1 document.", {"type": "object"})},
                                     public=True)},
        "/v1/tenants": {"post": _op(
            "v1.create_tenant", "Create a tenant (operator's admin token)", "tenants",
            {201: _ok("Created; the tenant's admin token is shown once.", _ref("TenantCreated"))},
            (400, 403, 409, 503), body=_json_body(_ref("TenantCreate"), "The new tenant's id."))},
        "/v1/jobs": {
            "post": _op("v1.create_job", "Create an FL job from its job spec (JIT 5.1)", "jobs",
                        {201: _ok("Created; the enrollment token is shown once.", _ref("JobCreated"))},
                        (400, 403, 404, 409, 503), body=_json_body(_ref("JobSpec"), "The job spec.")),
            "get": _op("v1.list_jobs", "List a tenant's jobs", "jobs",
                       {200: _ok("Job ids.", _ref("JobList"))}, (403, 503), query=(tenant_query,)),
        },
        "/v1/jobs/{job_id}": {"get": _op(
            "v1.get_job", "A job's spec, state, parties and rejections", "jobs",
            {200: _ok("The job.", _ref("Job"))}, (400, 404, 503), params=j)},
        "/v1/jobs/{job_id}/model": {
            "put": _op("v1.put_initial_model", "Upload the initial global model (round 0)", "models",
                       {201: _ok("Stored in S3.", _ref("Stored"))}, (400, 404, 413, 503), params=j,
                       body=_octet_body("The model in the fedfaas wire format.")),
            "get": _op("v1.get_latest_model", "The newest global model", "models",
                       {200: model}, (400, 404, 503), params=j, query=(round_query,)),
        },
        "/v1/jobs/{job_id}/rounds/{rnd}/model": {"get": _op(
            "v1.get_round_model", "The global model produced by a round", "models",
            {200: model}, (400, 404, 503), params=jr)},
        "/v1/jobs/{job_id}/parties": {
            "post": _op("v1.register_party", "Register a party with its profile (JIT 5.2)", "parties",
                        {201: _ok("Registered; the party's token is shown once.", _ref("PartyRegistered"))},
                        (400, 403, 404, 409, 503), params=j,
                        body=_json_body(_ref("PartyProfile"), "The party profile.", required=False),
                        description="Needs the job's enrollment token or an admin token."),
            "get": _op("v1.list_parties", "Every party's profile (admins)", "parties",
                       {200: _ok("Profiles by party id.", _ref("PartyList"))}, (400, 404, 503), params=j),
        },
        "/v1/jobs/{job_id}/parties/{party_id}": {
            "get": _op("v1.get_party", "A party's profile (admins or the party itself)", "parties",
                       {200: _ok("The profile.", _ref("Party"))}, (400, 404, 503), params=jp),
            "patch": _op("v1.update_party", "Report measured times or bandwidth (JIT estimator input)",
                         "parties", {200: _ok("The merged profile.", _ref("Party"))}, (400, 404, 503),
                         params=jp, body=_json_body(_ref("PartyProfile"), "Fields to change.", False)),
        },
        "/v1/jobs/{job_id}/rounds": {"post": _op(
            "v1.start_round", "Open the job's next round (admins)", "rounds",
            {201: _ok("The new round, with its JIT deadline estimate.", _ref("Round"))},
            (400, 404, 409, 503), params=j,
            body=_json_body(_ref("RoundStart"), "Optional client sampling.", required=False))},
        "/v1/jobs/{job_id}/estimates": {"get": _op(
            "v1.get_estimates", "JIT deadline estimates against observed arrivals, per round (admins)",
            "rounds", {200: _ok("Estimates and observations.", _ref("Estimates"))}, (400, 404, 503),
            params=j)},
        "/v1/jobs/{job_id}/rounds/{rnd}": {"get": _op(
            "v1.get_round", "A round's state and arrivals", "rounds",
            {200: _ok("The round.", _ref("Round"))}, (400, 404, 503), params=jr)},
        "/v1/jobs/{job_id}/rounds/{rnd}/updates": {"post": _op(
            "v1.post_update", "Upload the calling party's model update for a round", "rounds",
            {201: _ok("Stored in S3 before this answer.", _ref("UpdateRecord")),
             200: _ok("The same bytes were already stored (idempotent re-send).", _ref("UpdateRecord"))},
            (400, 403, 404, 409, 413, 503), params=jr,
            body=_octet_body("The update in the fedfaas wire format; metadata `num_examples`, optional "
                             "`job`, `round`, `party` (must match the URL and token), `train_time_s`."))},
        "/v1/jobs/{job_id}/rounds/{rnd}/updates/{party_id}": {"get": _op(
            "v1.get_update", "A stored update (admins or the party itself)", "rounds",
            {200: _ok("The update's bytes.", {"type": "string", "format": "binary"}, OCTET)},
            (400, 404, 503), params=(*jr, "PartyId"))},
        "/v1/workloads": {"get": _op(
            "queries.list_workloads", "Non-training workloads, their caching policy and parameters",
            "queries", {200: _ok("The workloads.", _ref("Workloads"))}, public=True)},
        "/v1/jobs/{job_id}/queries": {"post": _op(
            "queries.submit_query", "Run a non-training workload on a job's data (FLStore)", "queries",
            {200: _ok("Done (wait=1).", _ref("QueryStatus")),
             202: _ok("Queued (wait=0); poll GET /v1/queries/{request_id}.", _ref("QueryStatus"))},
            (400, 404, 503), params=j, query=(wait_query,),
            body=_json_body(_ref("Query"), "The query."))},
        "/v1/queries/{request_id}": {"get": _op(
            "queries.get_query", "Status and result of a query (admins)", "queries",
            {200: _ok("The query's status.", _ref("QueryStatus"))}, (400, 404, 503),
            params=("QueryId",))},
        "/v1/jobs/{job_id}/validation": {"put": _op(
            "queries.put_validation", "Upload the job's validation set (`x_val`, `y_val`)", "queries",
            {201: _ok("Stored in S3.", _ref("Stored"))}, (400, 404, 413, 503), params=j,
            body=_octet_body("Arrays `x_val` and `y_val` in the fedfaas wire format."))},
    }


@functools.cache
def build_spec() -> dict[str, Any]:
    """The OpenAPI document (built once per process)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "fedfaas gateway",
            "version": API_VERSION,
            "description": "Federated-learning aggregation (JIT) and FL metadata storage (FLStore) on "
                           "OpenFaaS. Every error is JSON `{error, message, details?}`; 503 answers carry "
                           "`Retry-After`. Every answer carries `X-Request-Id`.",
        },
        "security": [{"bearerAuth": []}],
        "tags": [{"name": t} for t in ("system", "tenants", "jobs", "parties", "rounds", "models",
                                       "queries")],
        "paths": _paths(),
        "components": _components(),
    }


@blueprint.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI document (no auth)."""
    return Response(_encoded(), mimetype="application/json")


@functools.cache
def _encoded() -> bytes:
    return json.dumps(build_spec(), indent=1).encode()


if __name__ == "__main__":
    print(json.dumps(build_spec(), indent=2))
