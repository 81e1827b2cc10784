"""The requests and answers that cross a process boundary to a fedfaas function.

One pydantic model per message, shared by both sides: the caller (the
gateway's round coordinator, the Cache Engine's placer, the Request Tracker)
builds the model and sends ``model_dump_json()``; the function parses it with
:meth:`Contract.from_json`, which turns a bad body into the project's 400 naming
each field (:func:`fedfaas.spec.parse_json`).  Field names are the JSON names
on the wire.  Types are strict: ``true`` is no integer, ``"5"`` no number.

- ``aggregate`` (JIT paper 5.4-5.5): :class:`StepRequest` -> :class:`StepAnswer`.
- ``cache-*`` (FLStore 4.1-4.2): ``POST /load`` :class:`LoadRequest` ->
  :class:`LoadAnswer`; ``POST /evict`` :class:`EvictRequest` -> :class:`EvictAnswer`;
  ``POST /run`` :class:`RunRequest` -> :class:`RunAnswer`.
- ``wl-*`` (FLStore 4.5, the fallback to the persistent store): ``POST /``
  :class:`RunRequest` -> :class:`RunAnswer`.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Any, Self

from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from fedfaas import keys
from fedfaas.errors import FedfaasError
from fedfaas.model_schema import ParameterSchema
from fedfaas.spec import AlgorithmSpec, Id, _Strict, parse, parse_json
from fedfaas.workloads.params import check_numeric_array

_DIGEST = re.compile(r"[0-9a-f]{64}")
_PARTIAL = re.compile(r"[0-9a-zA-Z]{16}")


def check_s3_ref(value: str) -> str:
    """An S3 object a function may read: under a tenant's prefix, with no ``..``."""
    if not keys.s3_is_tenant_object(value):
        raise PydanticCustomError("object_ref", "invalid object reference {ref}", {"ref": repr(value)})
    return value


def _partial_id(value: str) -> str:
    if not _PARTIAL.fullmatch(value):
        raise PydanticCustomError("partial_id", "must be a partial id returned by an earlier step")
    return value


S3Ref = Annotated[str, AfterValidator(check_s3_ref)]
PartialId = Annotated[str, AfterValidator(_partial_id)]
Count = Annotated[int, Field(ge=0)]
SchemaJson = list[tuple[str, str, list[Count]]]
"""A :class:`~fedfaas.model_schema.ParameterSchema` on the wire: ``[[name, dtype, shape], ...]``."""


def schema_json(schema: ParameterSchema | None) -> SchemaJson | None:
    """``schema`` as a contract field holds it."""
    if schema is None:
        return None
    return [(name, dtype, list(shape)) for name, dtype, shape in schema.tensors]


class Contract(_Strict):
    """A message to or from a function: strict, frozen, unknown fields refused."""

    # ``schema`` is a field name on the wire, and a (deprecated) BaseModel method.
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Self:
        """Parse a JSON body; a :class:`~fedfaas.errors.BadRequest` naming every bad field."""
        return parse_json(cls, raw, _WHAT.get(cls.__name__, cls.__name__))

    @classmethod
    def parse(cls, data: Any) -> Self:
        """Validate decoded JSON (a dict); the same 400s as :meth:`from_json`."""
        return parse(cls, data, _WHAT.get(cls.__name__, cls.__name__))


# --- aggregate -----------------------------------------------------------------------
class StepRequest(Contract):
    """One aggregation step (JIT paper 5.4): fold ``parties`` into ``base``, or finalise.

    ``digests`` holds the sha256 the gateway recorded for each party's update:
    the step reads exactly those objects and fuses none whose bytes differ.
    ``schema`` is the job's parameter schema when known; ``min_parties`` is the
    round's quorum, below which a final step writes no model.
    """

    tenant: Id
    job: Id
    round: int = Field(ge=1)
    algorithm: AlgorithmSpec = AlgorithmSpec()
    parties: list[Id] = Field(default_factory=list)
    digests: dict[str, str]
    base: PartialId | None = None
    finalize: bool = False
    min_parties: int = Field(default=1, ge=1)
    tensor_schema: SchemaJson | None = Field(default=None, alias="schema")

    @field_validator("parties")
    @classmethod
    def _distinct(cls, parties: list[str]) -> list[str]:
        if len(set(parties)) != len(parties):
            raise PydanticCustomError("duplicate_party", "the request lists a party twice")
        return parties

    @field_validator("digests")
    @classmethod
    def _every_party(cls, digests: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        parties = info.data.get("parties", [])
        if any(not _DIGEST.fullmatch(digests.get(p, "")) for p in parties):
            raise PydanticCustomError("digests", "must map every party to its update's sha256")
        return digests

    @cached_property
    def parameter_schema(self) -> ParameterSchema | None:
        """``schema`` as a :class:`~fedfaas.model_schema.ParameterSchema`."""
        if self.tensor_schema is None:
            return None
        return ParameterSchema(tuple((n, d, tuple(s)) for n, d, s in self.tensor_schema))


class StepAnswer(Contract):
    """What a step produced: a partial aggregate (a fold) or the round's model (a final step).

    ``model_key`` is None for a fold, and for a final step ``below_quorum``;
    ``fold_s`` (reading and fusing, apart from loading and writing the partial)
    is given by a fold that did the work, not by one it ``reused``.
    """

    parties: list[str]
    excluded: dict[str, str] = Field(default_factory=dict)
    reused: bool = False
    partial: str | None = None
    total_weight: float | None = None
    folded_updates: Count | None = None
    fold_s: float | None = None
    model_key: str | None = None
    below_quorum: bool = False
    tensor_schema: SchemaJson | None = Field(default=None, alias="schema")


# --- cache functions -----------------------------------------------------------------
class ItemRef(Contract):
    """A cacheable item: the Cache Engine's data key and the S3 object holding it."""

    key: str = Field(min_length=1, max_length=512)
    s3: S3Ref


class UpdateRef(ItemRef):
    """A client update a workload needs: the item, its client and its round."""

    client: Id
    round: int = Field(ge=0)


class ModelRef(ItemRef):
    """A global model a workload needs: the item and the round that produced it."""

    round: int = Field(ge=0)


class LoadRequest(Contract):
    """``POST /load``: fetch these items from S3 into memory (placement and prefetch)."""

    items: list[ItemRef] = Field(default_factory=list)


class LoadAnswer(Contract):
    """What a cache function loaded, what S3 did not have, and the memory it now holds."""

    function: str
    loaded: list[str]
    missing: list[str]
    used_bytes: Count


class EvictRequest(Contract):
    """``POST /evict``: drop these data keys (the Cache Engine decided they are cold)."""

    keys: list[str] = Field(default_factory=list)


class EvictAnswer(Contract):
    """What a cache function dropped and the memory it now holds."""

    function: str
    evicted: list[str]
    used_bytes: Count


class RunData(Contract):
    """The data a workload runs on, as references the function resolves (FLStore Table 1)."""

    updates: list[UpdateRef] = Field(default_factory=list)
    global_models: list[ModelRef] = Field(default_factory=list)
    metadata: list[dict[str, Any]] = Field(default_factory=list)
    validation: ItemRef | None = None


class RunRequest(Contract):
    """One non-training workload run, sent by the Request Tracker (FLStore 4.3).

    ``tenant``, ``job_id`` and ``request_id`` name where a workload that returns
    tensors writes them; ``job`` is the job spec as workloads read it;
    ``arrays`` are the request's numeric arrays (e.g. an inference batch ``x``).
    """

    workload: str | None = None
    request_id: Id | None = None
    tenant: Id | None = None
    job_id: Id | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    job: dict[str, Any] = Field(default_factory=dict)
    round: int | None = None
    client: Id | None = None
    data: RunData = RunData()
    arrays: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arrays")
    @classmethod
    def _numeric(cls, arrays: dict[str, Any]) -> dict[str, Any]:
        for name, value in arrays.items():
            try:
                check_numeric_array(value, f"array {name!r}")
            except FedfaasError as exc:
                raise PydanticCustomError("numeric_array", "{message}", {"message": exc.message}) from None
        return arrays


class RunAnswer(Contract):
    """A workload's result and where its data came from (hits in memory, misses read from S3)."""

    result: dict[str, Any]
    function: str
    hits: Count = 0
    misses: Count = 0
    compute_s: float | None = None


_WHAT = {
    "StepRequest": "aggregation step request", "StepAnswer": "aggregation step answer",
    "LoadRequest": "load request", "LoadAnswer": "load answer",
    "EvictRequest": "evict request", "EvictAnswer": "evict answer",
    "RunRequest": "workload run request", "RunAnswer": "workload run answer",
}
"""How a 400 names each message."""
