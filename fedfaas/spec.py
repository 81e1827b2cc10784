"""FL job specification and party profiles (JIT paper 5.1 and 5.2).

The job spec is what parties agree on and send to the aggregator: model,
fusion algorithm and hyperparameters, synchronisation frequency, ``t_wait``,
quorum and number of rounds, plus fedfaas's aggregation strategy.  The party
profile is the extra input JIT needs from each party: participation mode,
training times or hardware, and bandwidth.  Both are validated here, once, and
every violation becomes a 400 naming the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from fedfaas.errors import BadRequest

# The one id rule of fedfaas (jobs, parties, tenants, cache functions, workloads, requests).
# Always ``fullmatch``: with ``match``, ``$`` also matches before a trailing newline.
ID_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
ID_RULE = "must be a DNS label: a-z, 0-9 and '-', 1-63 chars"
STRATEGIES = ("jit", "eager-always-on", "eager-serverless", "batched-serverless", "lazy")


def json_type(value: Any) -> str:
    """A JSON value's type as error messages name it (``true`` is a boolean, never a number)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def check_id(value: object, what: str) -> str:
    """Validate an id (job, party, tenant, cache function, workload, request): a DNS label
    (lowercase, digits, dashes, <= 63), so it is safe in S3 keys, Redis keys and function names."""
    if not isinstance(value, str):
        raise BadRequest(f"{what}: expected a string (a DNS label), got {json_type(value)}")
    if not ID_RE.fullmatch(value):
        raise BadRequest(f"{what} {value!r} {ID_RULE}")
    return value


def _dns_label(value: str) -> str:
    if not ID_RE.fullmatch(value):
        raise PydanticCustomError("dns_label", ID_RULE)
    return value


Id = Annotated[str, AfterValidator(_dns_label)]
"""A model field holding an id: :func:`check_id`'s rule, as a pydantic type."""


class _Strict(BaseModel):
    # strict=True: no coercion, so ``true`` is no integer (True == 1 in Python), "5" is no
    # number and 5.0 is no integer; a float field still takes an integer (30 means 30.0).
    # allow_inf_nan=False: JSON bodies may carry NaN/Infinity, which the stored spec
    # (serialised as strict JSON) could not hold; refuse them with a 400 instead.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class ModelSpec(_Strict):
    """The model every party trains (paper 5.1): a name and its size ``M`` in bytes."""

    name: str = Field(min_length=1, max_length=128)
    size_bytes: int = Field(gt=0, le=64 * 1024**3)


class AlgorithmSpec(_Strict):
    """The fusion algorithm and its parameters (e.g. FedProx's ``mu``)."""

    name: str = "fedavg"
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)


class SyncSpec(_Strict):
    """Synchronisation frequency: once per local epoch, or every ``every`` minibatches."""

    unit: Literal["epoch", "minibatch"] = "epoch"
    every: int = Field(default=1, ge=1, le=10**9)


class StrategySpec(_Strict):
    """When to aggregate: JIT or one of the paper's baselines (section 3)."""

    name: Literal["jit", "eager-always-on", "eager-serverless", "batched-serverless", "lazy"] = "jit"
    batch_size: int = Field(default=10, ge=1, le=100_000)
    n_agg: int = Field(default=1, ge=1, le=64)
    latency_target: Literal["eager", "fastest"] | Annotated[float, Field(gt=0, le=86_400)] = Field(
        default="eager",
        description="JIT only: publish a round's model no later than eager aggregation would "
                    "('eager'), as early as the paper's plan allows ('fastest'), or within "
                    "this many seconds of the last update")


class JobSpec(_Strict):
    """An FL job specification (JIT paper 5.1)."""

    name: str = Field(default="", max_length=128)
    job_id: str | None = None
    tenant: str | None = None
    model: ModelSpec
    algorithm: AlgorithmSpec = AlgorithmSpec()
    sync: SyncSpec = SyncSpec()
    t_wait_s: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)
    quorum: int = Field(default=1, ge=1, le=1_000_000)
    rounds: int = Field(default=10, ge=1, le=100_000)
    strategy: StrategySpec = StrategySpec()
    nonfinite: Literal["reject", "flag"] = "reject"
    hyperparameters: dict[str, float | int | str | bool] = Field(default_factory=dict)

    @field_validator("job_id", "tenant")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and not ID_RE.fullmatch(value):
            raise ValueError("must be a DNS label: a-z, 0-9 and '-', 1-63 chars")
        return value


class Hardware(_Strict):
    """Training hardware, used to regress training time when no times are given (paper 5.2)."""

    cpus: float = Field(default=1, gt=0, le=4096)
    gpus: int = Field(default=0, ge=0, le=1024)
    gpu_type: str = Field(default="", max_length=64)
    memory_gb: float = Field(default=0, ge=0, le=65536)


class PartyProfile(_Strict):
    """What a party tells the aggregator about itself (JIT paper 5.2)."""

    party_id: str | None = None
    mode: Literal["active", "intermittent"] = "active"
    epoch_time_s: float | None = Field(default=None, gt=0, le=10**7)
    minibatch_time_s: float | None = Field(default=None, gt=0, le=10**6)
    dataset_size: int | None = Field(default=None, ge=0, le=10**12)
    batch_size: int | None = Field(default=None, ge=1, le=10**7)
    hardware: Hardware | None = None
    bandwidth_down_bps: float | None = Field(default=None, gt=0, le=10**12)
    bandwidth_up_bps: float | None = Field(default=None, gt=0, le=10**12)

    @field_validator("party_id")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and not ID_RE.fullmatch(value):
            raise ValueError("must be a DNS label: a-z, 0-9 and '-', 1-63 chars")
        return value


#: What a field wanted, by pydantic error type, for "expected X, got Y" messages.
_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "string_type": "a string",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "dict_type": "an object", "model_type": "an object", "model_attributes_type": "an object",
    "list_type": "an array",
}


def _is_union_tag(part: Any) -> bool:
    # pydantic names the member of a union that failed ("int", "literal['a','b']",
    # "constrained-float"); that is no part of the field's path.
    return isinstance(part, str) and (
        part in ("int", "float", "str", "bool") or part.startswith("constrained-") or "[" in part)


def _problems(exc: ValidationError, what: str) -> list[str]:
    """One readable line per bad field: ``path: expected X, got Y`` for type errors."""
    by_path: dict[str, list[ErrorDetails]] = {}
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p)) or what
        by_path.setdefault(path, []).append(err)
    problems = []
    for path, errs in by_path.items():
        wanted: list[str] = []
        for err in errs:
            if err["type"] == "literal_error":
                phrase = str(err.get("ctx", {}).get("expected", ""))
            else:
                phrase = _EXPECTED.get(err["type"], "")
            if not phrase:
                wanted = []
                break
            if phrase not in wanted:
                wanted.append(phrase)
        if "a number" in wanted and "an integer" in wanted:
            wanted.remove("an integer")
        if wanted:
            got = json_type(errs[0]["input"])
            if isinstance(errs[0]["input"], str) and len(errs[0]["input"]) <= 40:
                got += f" ({errs[0]['input']!r})"
            problems.append(f"{path}: expected {' or '.join(wanted)}, got {got}")
        else:
            problems.extend(f"{path}: {err['msg']}" for err in errs)
    return problems


def _refused(exc: ValidationError, what: str) -> BadRequest:
    problems = _problems(exc, what)
    return BadRequest(f"invalid {what}: " + "; ".join(problems), details={"fields": problems})


def parse(model: type[_Strict], data: Any, what: str) -> Any:
    """Validate ``data`` against ``model``; raise a 400 that lists every bad field."""
    if not isinstance(data, dict):
        raise BadRequest(f"{what} must be a JSON object, got {json_type(data)}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _refused(exc, what) from None


def parse_json(model: type[_Strict], raw: bytes | str, what: str) -> Any:
    """Validate a JSON body against ``model`` (an empty body is ``{}``); the same 400s as :func:`parse`."""
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors[0]["type"] == "json_invalid":
            if "recursion" in errors[0]["msg"]:
                raise BadRequest("request body is nested too deeply") from None
            raise BadRequest("request body is not valid JSON") from None
        if errors[0]["loc"] == () and errors[0]["type"] in ("model_type", "model_attributes_type"):
            raise BadRequest(f"{what} must be a JSON object, got {json_type(errors[0]['input'])}") from None
        raise _refused(exc, what) from None
