"""OpenAPI 3.1 description of the gateway's HTTP API, generated, and served at ``GET /openapi.json``.

Nothing in it is written twice.  Its paths are the Flask app's routes
(``app.url_map``): path, methods, endpoint (the ``operationId``) and the view's
docstring (first line the summary, the rest the description).  Each view
declares what only it knows with :func:`operation`: its tag, answers, errors,
roles and body, naming the models it sends.  The schemas are those models' own
JSON schemas: the answers of :mod:`gateway.schemas`, which the routes build
their JSON with, and the job spec and party profile of :mod:`fedfaas.spec`,
which they parse with.  A route without a declaration fails the build, naming
its endpoint; ``tests/gateway`` checks every route is described.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from flask import Blueprint, Flask, Response
from pydantic import BaseModel

from fedfaas.spec import ID_RE, JobSpec, PartyProfile
from gateway import schemas
from gateway.schemas import ID_SCHEMA

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
JSON = "application/json"
OCTET = "application/octet-stream"
BINARY = {"type": "string", "format": "binary"}
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})

Role = Literal["root", "tenant-admin", "enroll", "party"]
ADMINS: tuple[Role, ...] = ("root", "tenant-admin")
MEMBERS: tuple[Role, ...] = ("root", "tenant-admin", "party")

blueprint = Blueprint("openapi", __name__)

# --- what a view declares ---------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One successful answer: a model's JSON, or another media type's ``schema``."""

    description: str
    model: type[BaseModel] | None = None
    media: str = JSON
    schema: dict[str, Any] | None = None
    headers: tuple[str, ...] = ()
    """Names of response header components it carries besides ``X-Request-Id``."""


@dataclass(frozen=True)
class Body:
    """A request body: a model's JSON, or (``model=None``) bytes in the fedfaas wire format."""

    description: str
    model: type[BaseModel] | None = None
    required: bool = True


@dataclass(frozen=True)
class Operation:
    """What the routing table does not know about an operation.

    ``roles`` are the token roles that may call it; none means no token is needed.
    """

    tag: str
    answers: dict[int, Answer]
    errors: tuple[int, ...] = ()
    roles: tuple[Role, ...] = ()
    body: Body | None = None
    query: tuple[str, ...] = ()
    """Names of query parameter components."""


_ATTR = "openapi_operation"
View = TypeVar("View", bound=Callable[..., Any])


def operation(tag: str, answers: dict[int, Answer], errors: tuple[int, ...] = (), *,
              roles: tuple[Role, ...], body: Body | None = None,
              query: tuple[str, ...] = ()) -> Callable[[View], View]:
    """Declare a view's operation (apply below the route decorator, on the view itself)."""
    declared = Operation(tag, answers, errors, roles, body, query)

    def mark(view: View) -> View:
        setattr(view, _ATTR, declared)  # on the view: the app that routes to it finds it
        return view

    return mark


def ok(description: str, model: type[BaseModel] | None = None) -> Answer:
    """A JSON answer."""
    return Answer(description, model)


# --- components -------------------------------------------------------------------------

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
_PATH_PARAMS = {"job_id": "JobId", "party_id": "PartyId", "rnd": "Round", "request_id": "QueryId"}
_TAGS = ("system", "tenants", "jobs", "parties", "rounds", "models", "queries")


def _ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _path_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


def _query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _response(description: str, schema: dict[str, Any] | None = None, media: str = JSON,
              headers: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "headers": {
        name: _ref(name, "headers") for name in ("X-Request-Id", *headers)}}
    if schema is not None:
        out["content"] = {media: {"schema": schema}}
    return out


def _dns_label_fields(model: type[BaseModel]) -> set[str]:
    """Fields a model checks with its ``_dns_label`` validator (invisible to its JSON schema)."""
    validators = model.__pydantic_decorators__.field_validators
    return set(validators["_dns_label"].info.fields) if "_dns_label" in validators else set()


def model_schemas(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    """The models' JSON schemas by name, their nested models hoisted alongside."""
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name in _dns_label_fields(model):
            prop = schema["properties"][name]
            for branch in prop.get("anyOf", [prop]):
                if branch.get("type") == "string":
                    branch.update(pattern=ID_RE.pattern, maxLength=63)
        for name, nested in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            # The request models come last and carry the id patterns their validators check.
            if name in out and out[name] != nested and model not in (JobSpec, PartyProfile):
                raise ValueError(f"two different models are named {name!r}")
            out[name] = nested
    return out


def _components() -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for code, (name, text) in _ERRORS.items():
        responses[name] = _response(text, _ref("Error"),
                                    headers=("Retry-After",) if code in (429, 503) else ())
    responses["Error"] = _response("Any other error (e.g. 405, or 500 `internal_error`), in the same form.",
                                   _ref("Error"))
    round_schema = {"type": "integer", "minimum": 0, "maximum": 10**9}
    return {
        "securitySchemes": {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "A token: the operator's admin token (root), a tenant's admin token, a job's "
                           "enrollment token, or a party's token.",
        }},
        "parameters": {
            "JobId": _path_param("job_id", ID_SCHEMA, "Job id (a DNS label)."),
            "PartyId": _path_param("party_id", ID_SCHEMA, "Party id (a DNS label)."),
            "Round": _path_param("rnd", round_schema,
                                 "Round number (rounds start at 1; round 0 is the initial model)."),
            "QueryId": _path_param("request_id", {"type": "string", "minLength": 1, "maxLength": 64},
                                   "Id of a non-training query, as returned on submission."),
            "ModelRound": _query_param("round", round_schema,
                                       "The model produced by this round instead of the newest."),
            "Tenant": _query_param("tenant", ID_SCHEMA,
                                   "Tenant whose jobs to list (root only; default: the token's)."),
            "Wait": _query_param("wait", {"type": "string", "enum": ["1", "0", "true", "false", "yes", "no"]},
                                 "Answer with the result (default) or queue and answer 202."),
            "RequestIdHeader": {
                "name": "X-Request-Id", "in": "header", "required": False,
                "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"},
                "description": "Caller's request id, echoed back and logged; generated when absent. "
                               "OpenFaaS's X-Call-Id is honoured too.",
            },
        },
        "headers": {
            "X-Request-Id": {"description": "The request id this call was logged under.",
                             "schema": {"type": "string"}},
            "Retry-After": {"description": "Seconds to wait before retrying.",
                            "schema": {"type": "integer"}},
            "X-Fedfaas-Round": {"description": "Round that produced the model.",
                                "schema": {"type": "integer"}},
        },
        "responses": responses,
        "schemas": model_schemas((*schemas.MODELS, JobSpec, PartyProfile)),
    }


# --- paths ------------------------------------------------------------------------------


def _summary(view: Callable[..., Any], endpoint: str) -> tuple[str, str]:
    """The view docstring's first paragraph (the summary) and the rest (the description)."""
    doc = inspect.getdoc(view)
    if not doc:
        raise LookupError(f"view {endpoint!r} has no docstring to summarise it")
    first, _, rest = doc.replace("``", "`").partition("\n\n")  # reST literals as Markdown's
    return " ".join(first.split()).rstrip("."), " ".join(rest.split())


def _operation(endpoint: str, view: Callable[..., Any], path_params: list[str]) -> dict[str, Any]:
    declared: Operation | None = getattr(view, _ATTR, None)
    if declared is None:
        raise LookupError(f"route {endpoint!r} declares no OpenAPI operation (gateway.openapi.operation)")
    summary, description = _summary(view, endpoint)
    op: dict[str, Any] = {"operationId": endpoint, "summary": summary, "tags": [declared.tag]}
    if description:
        op["description"] = description
    if declared.roles:
        op["x-roles"] = list(declared.roles)
    op["parameters"] = [*(_ref(_PATH_PARAMS[p], "parameters") for p in path_params),
                        *(_ref(q, "parameters") for q in declared.query),
                        _ref("RequestIdHeader", "parameters")]
    if declared.body is not None:
        body = declared.body
        content = ({JSON: {"schema": _ref(body.model.__name__)}} if body.model is not None
                   else {OCTET: {"schema": BINARY}})
        op["requestBody"] = {"required": body.required, "description": body.description, "content": content}
    op["responses"] = {}
    for code, answer in declared.answers.items():
        schema = _ref(answer.model.__name__) if answer.model is not None else answer.schema
        op["responses"][str(code)] = _response(answer.description, schema, answer.media, answer.headers)
    codes = set(declared.errors) | ({401, 429} if declared.roles else set())
    op["responses"].update({str(code): _ref(_ERRORS[code][0], "responses") for code in sorted(codes)})
    op["responses"]["default"] = _ref("Error", "responses")
    if not declared.roles:
        op["security"] = []
    return op


def paths(app: Flask) -> dict[str, Any]:
    """Every route of ``app`` as an OpenAPI path item."""
    out: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        path_params = re.findall(r"<(?:[^<>:]+:)?([^<>]+)>", rule.rule)
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
        view = app.view_functions[rule.endpoint]
        for method in sorted(set(rule.methods or ()) - IGNORED_METHODS):
            out.setdefault(path, {})[method.lower()] = _operation(rule.endpoint, view, path_params)
    return out


def _routes() -> Flask:
    """An app with the gateway's routes and nothing else (no settings, no connections)."""
    from gateway.app import register_routes

    app = Flask("fedfaas-gateway-routes", static_folder=None)
    register_routes(app)
    return app


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
        "tags": [{"name": t} for t in _TAGS],
        "paths": paths(_routes()),
        "components": _components(),
    }


@blueprint.get("/openapi.json")
@operation("system", {200: Answer("OpenAPI 3.1 document.", schema={"type": "object"})}, roles=())
def openapi_json() -> Response:
    """This API description."""
    return Response(_encoded(), mimetype=JSON)


@functools.cache
def _encoded() -> bytes:
    return json.dumps(build_spec(), indent=1).encode()


if __name__ == "__main__":
    from gateway.openapi import build_spec as _build  # the module the views declared with

    print(json.dumps(_build(), indent=2))
