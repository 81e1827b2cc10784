"""What every non-training workload takes and declares (FLStore §4.4, Table 1).

A workload is a pure function of the data FLStore caches: one round's client
updates (P2), one client's updates across rounds (P3), global models (P1) and
per-round metadata and hyperparameters (P4).  Its :class:`WorkloadSpec` names
the caching policy, which of that data it needs for given parameters, and the
parameter schema, so that the gateway, the Request Tracker and the OpenFaaS
handlers dispatch every workload the same way.

Per-round metadata (the P4 data) is a sequence of *round records*::

    {"round": 7,
     "hyperparameters": {"lr": 0.05, "local_epochs": 2, ...},
     "included": ["alice", "bob"],            # parties fused into the global model
     "clients": {"alice": {"train_time_s": 31.2, "num_examples": 600,
                           "available": true, "on_time": true,
                           "contribution": 0.04, "flagged": false}, ...}}

Every field but ``round`` is optional; a workload uses the fields it needs and
says so in its docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fedfaas.codec import ModelUpdate
from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads.params import Param, describe_params, validate_params
from fedfaas.workloads.prepared import Prepared

Policy = Literal["P1", "P2", "P3", "P4"]
Need = Literal[
    "round_updates", "client_across_rounds", "global_model", "metadata", "validation_set"
]
NEEDS: tuple[str, ...] = (
    "round_updates", "client_across_rounds", "global_model", "metadata", "validation_set"
)
#: Key of a result that carries tensors for the handler to encode instead of JSON.
TENSORS_KEY = "tensors"


@dataclass(frozen=True)
class ClientUpdate:
    """One client's decoded model update for one round.

    ``tensors`` are the client's model weights after local training (what
    parties POST); ``meta`` is the update's metadata (``num_examples``,
    ``train_time_s``, ...).
    """

    client: str
    tensors: Mapping[str, np.ndarray]
    meta: Mapping[str, Any] = field(default_factory=dict)
    round: int | None = None

    @classmethod
    def from_model_update(cls, update: ModelUpdate, client: str | None = None,
                          round: int | None = None) -> ClientUpdate:
        """Wrap a decoded body; the client and round default to ``meta["party"]``/``["round"]``."""
        name = client if client is not None else update.meta.get("party")
        if not isinstance(name, str) or not name:
            raise BadRequest("update metadata has no 'party' naming the client")
        rnd = round if round is not None else update.meta.get("round")
        if rnd is not None and (not isinstance(rnd, int) or isinstance(rnd, bool)):
            raise BadRequest(f"update of {name!r} has a non-integer round {rnd!r}")
        return cls(client=name, tensors=update.tensors, meta=update.meta, round=rnd)

    @property
    def num_examples(self) -> float | None:
        """``meta["num_examples"]`` if it is a positive number, else None."""
        value = self.meta.get("num_examples")
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return None


@dataclass
class WorkloadInputs:
    """The cached data a workload runs on; the Request Tracker fills what the spec needs.

    Attributes
    ----------
    job
        Job spec: ``model`` (a registry name or ``{"name", "kwargs"}``),
        ``hyperparameters`` and anything else the gateway stores.
    round
        The round the request is about (None: the latest available).
    client
        The client the request is about (P3 workloads, personalisation).
    updates
        Client updates: all of one round (P2) or one client's across rounds (P3).
    base_model
        The global model the round started from; when given, workloads that
        compare updates compare deltas ``w_client - w_base``.
    global_models
        Global (aggregated) models by the round that produced them.
    metadata
        Round records (see the module docstring), any order.
    arrays
        Arrays from the request or the job: ``x_val``/``y_val`` (validation
        set), ``x`` (inference batch).
    prepared
        Compute-ready statistics the cache function keeps for the data it
        holds (see :mod:`fedfaas.workloads.prepared`); None computes them.
    """

    job: Mapping[str, Any] = field(default_factory=dict)
    round: int | None = None
    client: str | None = None
    updates: Sequence[ClientUpdate] = ()
    base_model: Mapping[str, np.ndarray] | None = None
    global_models: Mapping[int, Mapping[str, np.ndarray]] = field(default_factory=dict)
    metadata: Sequence[Mapping[str, Any]] = ()
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    prepared: Prepared | None = None

    def base(self) -> Mapping[str, np.ndarray] | None:
        """``base_model``, else the global model of the previous round if cached."""
        if self.base_model is not None:
            return self.base_model
        if self.round is not None:
            return self.global_models.get(self.round - 1)
        return None


WorkloadFn = Callable[[WorkloadInputs, dict[str, Any]], dict[str, Any]]
NeedsFn = Callable[[Mapping[str, Any]], frozenset[str]]


@dataclass(frozen=True)
class WorkloadSpec:
    """A non-training workload: its name, caching policy, data needs and parameters.

    ``needs`` lists the data every call requires; ``needs_for``, when given,
    refines it from the validated parameters (e.g. a mode that also needs
    metadata).  ``optional`` lists data the workload uses when present.
    """

    name: str
    policy: Policy
    summary: str
    params: tuple[Param, ...]
    run_fn: WorkloadFn
    needs: frozenset[str]
    optional: frozenset[str] = frozenset()
    needs_for: NeedsFn | None = None
    returns_tensors: bool = False

    @classmethod
    def over_round(cls, name: str, summary: str, params: tuple[Param, ...], run_fn: WorkloadFn, *,
                   needs: frozenset[str] = frozenset({"round_updates"}), **extra: Any) -> WorkloadSpec:
        """A workload over one round's client updates, using the global model when there is
        one: FLStore's policy P2 (Table 1), which keeps the latest round hot."""
        return cls(name=name, policy="P2", summary=summary, params=params, run_fn=run_fn, needs=needs,
                   optional=frozenset({"global_model"}), **extra)

    def validate(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Parameters checked against the schema, defaults filled in; raises BadRequest."""
        return validate_params(self.name, self.params, {} if params is None else params)

    def data_needs(self, params: Mapping[str, Any] | None = None) -> frozenset[str]:
        """The data a call with these parameters needs (parameters are validated first)."""
        valid = self.validate(params)
        return self.needs_for(valid) if self.needs_for is not None else self.needs

    def run(self, inputs: WorkloadInputs, params: Mapping[str, Any] | None = None
            ) -> dict[str, Any]:
        """Validate, check the needed data is present (NotFound otherwise), and run."""
        valid = self.validate(params)
        needs = self.needs_for(valid) if self.needs_for is not None else self.needs
        check_present(self.name, needs, inputs)
        return self.run_fn(inputs, valid)

    def describe(self) -> dict[str, Any]:
        """JSON description for API listings."""
        return {
            "name": self.name,
            "policy": self.policy,
            "summary": self.summary,
            "needs": sorted(self.needs),
            "optional": sorted(self.optional),
            "needs_depend_on_params": self.needs_for is not None,
            "returns_tensors": self.returns_tensors,
            "params": describe_params(self.params),
        }


def check_present(workload: str, needs: frozenset[str], inputs: WorkloadInputs) -> None:
    """Raise :class:`NotFound` for the first needed data set the inputs lack.

    Also rejects (BadRequest) round updates from another round than the request's.
    """
    where = f" for round {inputs.round}" if inputs.round is not None else ""
    if ("round_updates" in needs or "client_across_rounds" in needs) and not inputs.updates:
        what = "client updates" if "round_updates" in needs else "updates of the client"
        raise NotFound(f"{workload}: no {what}{where} are available")
    if "round_updates" in needs and inputs.round is not None:
        for u in inputs.updates:
            if u.round is not None and u.round != inputs.round:
                raise BadRequest(f"{workload}: the update of {u.client!r} is from round "
                                 f"{u.round}, the request is about round {inputs.round}")
    if "global_model" in needs and not inputs.global_models and inputs.base_model is None:
        raise NotFound(f"{workload}: no global model{where} is available")
    if "metadata" in needs and not inputs.metadata:
        raise NotFound(f"{workload}: no round metadata is available")
    if "validation_set" in needs and ("x_val" not in inputs.arrays or "y_val" not in inputs.arrays):
        raise NotFound(f"{workload}: the job provides no validation set (x_val, y_val)")


def plain_json(value: Any) -> Any:
    """``value`` with only JSON types: numpy scalars unwrapped, NaN/inf and bytes to None.

    Metadata comes from msgpack bodies and stores, so it may hold binary or
    numpy values that a JSON response cannot carry.
    """
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    return None


def model_spec(job: Mapping[str, Any], workload: str) -> tuple[str, dict[str, Any]]:
    """The job's model as ``(registry name, kwargs)``; raises BadRequest if absent or malformed."""
    spec = job.get("model")
    if isinstance(spec, str) and spec:
        return spec, {}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        kwargs = spec.get("kwargs", {})
        if not isinstance(kwargs, Mapping):
            raise BadRequest(f"{workload}: job 'model.kwargs' must be a map")
        return str(spec["name"]), dict(kwargs)
    raise BadRequest(f"{workload}: the job spec names no model (set job['model'])")


def round_records(metadata: Sequence[Mapping[str, Any]], workload: str
                  ) -> list[Mapping[str, Any]]:
    """Round records sorted by round; raises BadRequest for a record without an int round."""
    for i, rec in enumerate(metadata):
        rnd = rec.get("round") if isinstance(rec, Mapping) else None
        if not isinstance(rnd, int) or isinstance(rnd, bool):
            raise BadRequest(f"{workload}: metadata record {i} has no integer 'round'")
        clients = rec.get("clients", {})
        if not isinstance(clients, Mapping):
            raise BadRequest(f"{workload}: metadata of round {rnd}: 'clients' must be a map")
    return sorted(metadata, key=lambda rec: int(rec["round"]))
