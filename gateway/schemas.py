"""The gateway's JSON answers as pydantic models: what the routes send is what the OpenAPI document says.

Every JSON answer is built as one of these :class:`View` models and sent with
:meth:`View.answer`, and ``GET /openapi.json`` describes it with the same model's
JSON schema (:mod:`gateway.openapi`), so the description cannot drift from the
answer.  A view sends exactly the fields it was given (an explicit ``None`` is
sent as ``null``, a field never given is left out), in declaration order.
Views of records read back from Redis accept fields they do not declare
(``extra="allow"``), so an older record is still served as stored.

``TenantCreate``, ``RoundStart`` and ``Query`` describe request bodies the
routes check by hand; the job spec and the party profile are
:mod:`fedfaas.spec`'s own models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask import Response, jsonify
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    model_serializer,
)

from fedfaas.spec import ID_RE, JobSpec
from fedfaas.workloads import WORKLOADS

ID_SCHEMA: dict[str, Any] = {"type": "string", "pattern": ID_RE.pattern, "minLength": 1, "maxLength": 63}
# Described as a DNS label; not re-checked on the way out (the gateway checked it on the way in).
IdStr = Annotated[str, WithJsonSchema(ID_SCHEMA)]


class View(BaseModel):
    """A JSON answer: the fields it was given, nothing else (unknown fields refused)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @model_serializer(mode="wrap")
    def _given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        given = self.model_fields_set
        return {k: v for k, v in data.items() if k in given}

    def answer(self, status: int = 200) -> Response:
        """The Flask response carrying this view as JSON."""
        resp = jsonify(self.model_dump(mode="json"))
        resp.status_code = status
        return resp


class StoredView(View):
    """A view of a record read back from storage: undeclared fields pass through."""

    model_config = ConfigDict(extra="allow")


# --- errors and system -----------------------------------------------------------------


class Error(View):
    """Every error answer."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="Stable machine-readable code (snake_case).")
    message: str = Field(description="What is wrong, for a person.")
    details: dict[str, Any] = Field(default_factory=dict,
                                    description="Structured details, e.g. invalid fields.")


class Health(View):
    """``GET /healthz``."""

    status: str


class Ready(View):
    """``GET /readyz``."""

    status: Literal["ok", "degraded"]
    checks: dict[str, bool]


# --- tenants and jobs ------------------------------------------------------------------


class TenantCreate(BaseModel):
    """Body of ``POST /v1/tenants``."""

    tenant: IdStr


class TenantCreated(View):
    """A new tenant and its admin token."""

    tenant: IdStr
    admin_token: str = Field(description="Shown once; store it.")


class Job(View):
    """A job as the API shows it."""

    job_id: IdStr
    tenant: IdStr
    spec: JobSpec
    current_round: int = Field(ge=0)
    created_at: float
    state: Literal["created", "running", "finished"]
    parties: int = Field(0, description="Registered parties (GET only).")
    rejections: dict[str, int] = Field(default_factory=dict,
                                       description="Refused updates by reason (GET only).")


class JobCreated(Job):
    """A new job and its enrollment token."""

    enrollment_token: str = Field(description="Lets parties register in this job; shown once.")


class JobList(View):
    """A tenant's job ids."""

    tenant: IdStr
    jobs: list[IdStr]


# --- parties ---------------------------------------------------------------------------


class Party(StoredView):
    """The party's profile (see PartyProfile) as stored."""

    party_id: IdStr
    registered_at: float = 0.0


class PartyRegistered(View):
    """A new party and its token."""

    job_id: IdStr
    party_id: IdStr
    token: str = Field(description="The party's secret token; shown once.")


class PartyList(View):
    """Every party's profile, by party id."""

    job_id: IdStr
    parties: dict[str, Party]


# --- rounds and updates ----------------------------------------------------------------


class UpdateRecord(StoredView):
    """A party's stored update for a round."""

    party: IdStr
    round: int
    key: str
    digest: str = Field(description="SHA-256 of the body.")
    size: int
    num_examples: int = 0
    train_time_s: float | None = None
    arrived_at: float = 0.0
    nonfinite: int = 0
    duplicate: bool = Field(False, description="True when the same bytes were already stored.")


class Round(View):
    """A round's state and arrivals."""

    job_id: IdStr
    round: int = Field(ge=1)
    state: Literal["opening", "open", "aggregating", "closed", "failed"]
    started_at: float
    deadline_at: float
    expected: int = Field(description="Parties expected in this round.")
    quorum: int
    reason: str = ""
    closed_at: float | None = None
    model_available: bool
    arrived: int = 0
    parties_included: list[IdStr] = Field(default_factory=list,
                                          description="Whose updates the model fuses (closed rounds).")
    aggregation_latency_s: float | None = None
    last_arrival_at: float | None = None
    excluded: dict[str, str] = Field(default_factory=dict,
                                     description="Updates left out of the aggregation, with the reason.")
    estimate: dict[str, Any] | None = Field(None, description="The round's JIT estimate.")
    arrived_parties: list[IdStr] = Field(default_factory=list, description="Admins only.")
    your_update: UpdateRecord | None = Field(None, description="The calling party's update, if any.")


class RoundStart(BaseModel):
    """Body of ``POST /v1/jobs/{job_id}/rounds`` (optional)."""

    parties: list[IdStr] | None = Field(
        None, description="Registered parties expected in this round (default: all).")


class Estimates(View):
    """JIT estimates against observations, per round."""

    job_id: IdStr
    learner: dict[str, Any] = Field(description=(
        "What the next estimate applies beyond per-party corrections: rounds_seen, "
        "timer_share (the JIT timer's learned share of the latency headroom), latency_ratio "
        "(EWMA of observed over target latency), t_agg_residual, slack, t_rnd_bias (s)."))
    rounds: list[dict[str, Any]] = Field(description=(
        "Per round: predicted and observed t_rnd and t_agg and their errors, per-party "
        "t_upd errors, latency (last update, or t_wait for a round closed with updates "
        "missing, to published model, s) and target_latency (null under \"fastest\")."))


class Stored(View):
    """An object the gateway stored in S3."""

    job_id: IdStr
    round: int = 0
    key: str
    size: int


# --- queries ---------------------------------------------------------------------------


class Workload(View):
    """One non-training workload."""

    name: str
    policy: str
    summary: str
    needs: list[str]
    optional: list[str]
    needs_depend_on_params: bool
    returns_tensors: bool
    params: list[dict[str, Any]]


class Workloads(View):
    """The non-training workloads."""

    workloads: list[Workload]


class Query(BaseModel):
    """Body of ``POST /v1/jobs/{job_id}/queries``."""

    workload: Annotated[str, WithJsonSchema({"type": "string", "enum": sorted(WORKLOADS)})]
    round: int | None = Field(None, ge=1)
    client: str | None = Field(None, description="Party id, for per-client workloads.")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Workload parameters (see GET /v1/workloads).")
    arrays: dict[str, Any] = Field(default_factory=dict,
                                   description="Extra numeric inputs, name -> nested lists.")


class QueryStatus(StoredView):
    """A query's status, and its result once done."""

    request_id: str
    status: Literal["queued", "running", "done", "failed"]
    result: Any = None
    error: Error | None = None


MODELS: tuple[type[BaseModel], ...] = (
    Error, Health, Ready, TenantCreate, TenantCreated, Job, JobCreated, JobList, Party,
    PartyRegistered, PartyList, UpdateRecord, Round, RoundStart, Estimates, Stored, Workload,
    Workloads, Query, QueryStatus)
"""Every model the OpenAPI document's components describe (besides the request models of
:mod:`fedfaas.spec`)."""
