"""The shared request and answer models: JSON round trips, strict types, one class on both sides."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

import fedfaas.aggregation
import fedfaas.serverless_cache
import fedfaas.workload_function
import gateway.driver
import gateway.flstore
import gateway.rounds
import request_tracker.data
import request_tracker.tracker
from fedfaas import contracts
from fedfaas.contracts import (
    Contract,
    EvictAnswer,
    EvictRequest,
    ItemRef,
    LoadAnswer,
    LoadRequest,
    ModelRef,
    RunAnswer,
    RunData,
    RunRequest,
    StepAnswer,
    StepRequest,
    UpdateRef,
)
from fedfaas.errors import BadRequest
from fedfaas.spec import AlgorithmSpec

ROOT = Path(__file__).resolve().parents[2]
S3 = "tenants/acme/jobs/job-1/rounds/000001/updates/alice.ffu"

SAMPLES: list[Contract] = [
    StepRequest(tenant="acme", job="job-1", round=2,
                algorithm=AlgorithmSpec(name="fedprox", params={"mu": 0.1}), parties=["alice", "bob"],
                digests={"alice": "a" * 64, "bob": "b" * 64}, base="0123456789abcdef", finalize=True,
                min_parties=2, schema=[("w", "float32", [4, 4])]),
    StepAnswer(parties=["alice"], excluded={"bob": "missing"}, partial="0123456789abcdef", total_weight=3.0,
               folded_updates=1, fold_s=0.25),
    StepAnswer(parties=["alice"], model_key="tenants/acme/m", schema=[("w", "float32", [2])]),
    LoadRequest(items=[ItemRef(key="acme:job-1:update:1:alice", s3=S3)]),
    LoadAnswer(function="cache-0", loaded=["k"], missing=[], used_bytes=10),
    EvictRequest(keys=["acme:job-1:update:1:alice"]),
    EvictAnswer(function="cache-0", evicted=["k"], used_bytes=0),
    RunRequest(workload="inference", request_id="r1", tenant="acme", job_id="job-1", params={"top_k": 1},
               job={"model": {"name": "digits-mlp", "kwargs": {}}}, round=1, client="alice",
               data=RunData(updates=[UpdateRef(key="k", s3=S3, client="alice", round=1)],
                            global_models=[ModelRef(key="m", s3=S3, round=0)],
                            metadata=[{"round": 1}], validation=ItemRef(key="v", s3=S3)),
               arrays={"x": [[0.0, 1.5]]}),
    RunAnswer(result={"labels": [1, 2]}, function="cache-1", hits=2, misses=1, compute_s=0.01),
]

# model, a valid JSON body, an integer field and a number field (dotted paths into the body)
STRICT: list[tuple[type[Contract], dict[str, Any], str | None, str | None]] = [
    (StepRequest, {"tenant": "acme", "job": "job-1", "round": 1, "parties": ["alice"],
                   "digests": {"alice": "a" * 64}}, "round", "min_parties"),
    (StepAnswer, {"parties": [], "folded_updates": 1, "fold_s": 0.5}, "folded_updates", "fold_s"),
    (LoadAnswer, {"function": "cache-0", "loaded": [], "missing": [], "used_bytes": 1},
     "used_bytes", "used_bytes"),
    (EvictAnswer, {"function": "cache-0", "evicted": [], "used_bytes": 1}, "used_bytes", "used_bytes"),
    (RunRequest, {"workload": "inference", "round": 1,
                  "data": {"global_models": [{"key": "m", "s3": S3, "round": 1}]}},
     "data.global_models.0.round", "round"),
    (RunAnswer, {"result": {}, "function": "cache-0", "hits": 1, "compute_s": 0.5}, "hits", "compute_s"),
]


def _with(body: dict[str, Any], path: str, value: object) -> bytes:
    copy = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    node: Any = copy
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    return json.dumps(copy).encode()


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_json(message: Contract) -> None:
    # Execute
    again = type(message).from_json(message.model_dump_json())
    # Assert
    assert again == message
    assert again.model_dump_json() == message.model_dump_json()


def test_the_wire_keeps_the_field_names_the_functions_and_gateway_agree_on() -> None:
    # Prepare
    step, answer = SAMPLES[0], SAMPLES[2]
    # Execute
    sent, got = json.loads(step.model_dump_json()), json.loads(answer.model_dump_json())
    # Assert
    assert set(sent) == {"tenant", "job", "round", "algorithm", "parties", "digests", "base", "finalize",
                         "min_parties", "schema"}
    assert sent["algorithm"] == {"name": "fedprox", "params": {"mu": 0.1}}
    assert got["schema"] == [["w", "float32", [2]]] and got["model_key"] == "tenants/acme/m"


@pytest.mark.parametrize(("model", "body", "int_field", "number_field"), STRICT,
                         ids=[m.__name__ for m, *_ in STRICT])
def test_a_bool_is_no_integer_and_a_string_is_no_number(model: type[Contract], body: dict[str, Any],
                                                        int_field: str, number_field: str) -> None:
    # Prepare
    model.from_json(json.dumps(body))  # the body itself is valid
    # Execute / Assert
    with pytest.raises(BadRequest, match=rf"{int_field}: expected an integer, got a boolean"):
        model.from_json(_with(body, int_field, True))
    with pytest.raises(BadRequest, match=rf"{number_field}: expected (a number|an integer), got a string"):
        model.from_json(_with(body, number_field, "5"))


def test_a_string_in_a_numeric_array_is_refused_naming_the_array() -> None:
    with pytest.raises(BadRequest, match=r"arrays: array 'x' must hold only numbers"):
        RunRequest.from_json(b'{"arrays": {"x": [1, "2"]}}')
    with pytest.raises(BadRequest, match=r"arrays: array 'x' must hold only numbers"):
        RunRequest.from_json(b'{"arrays": {"x": [1, true]}}')


def test_a_refusal_is_a_400_listing_every_bad_field() -> None:
    # Execute
    with pytest.raises(BadRequest) as caught:
        LoadRequest.from_json(b'{"items": [{"key": "k", "s3": "../etc"}, {"s3": "tenants/x"}]}')
    # Assert
    assert caught.value.status == 400
    assert caught.value.details["fields"] == ["items.0.s3: invalid object reference '../etc'",
                                              "items.1.key: Field required"]


@pytest.mark.parametrize(("caller", "function", "names"), [
    (gateway.rounds, fedfaas.aggregation, ["StepRequest", "StepAnswer"]),
    (gateway.driver, fedfaas.aggregation, ["StepRequest", "StepAnswer"]),
    (request_tracker.tracker, fedfaas.serverless_cache,
     ["LoadRequest", "EvictRequest", "RunRequest", "RunAnswer", "ItemRef"]),
    (request_tracker.data, fedfaas.serverless_cache, ["ItemRef"]),
    (request_tracker.tracker, fedfaas.workload_function, ["RunRequest"]),
])
def test_the_caller_and_the_function_use_the_same_class(caller: Any, function: Any, names: list[str]) -> None:
    for name in names:
        assert getattr(caller, name) is getattr(function, name) is getattr(contracts, name), name


@pytest.mark.parametrize(("handler", "names"), [
    ("aggregate", {"StepRequest"}),
    ("cache", {"LoadRequest", "EvictRequest", "RunRequest"}),
])
def test_the_function_handlers_parse_the_shared_models(handler: str, names: set[str]) -> None:
    # The handlers build their store at import time; read their imports instead of importing them.
    tree = ast.parse((ROOT / "functions" / handler / "handler.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "fedfaas.contracts" for alias in node.names}
    assert names <= imported
    assert gateway.flstore.load_requests is request_tracker.tracker.load_requests
