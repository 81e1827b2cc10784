"""Function handlers answer malformed requests with a 4xx JSON error instead of raising (a 500).

The real ``functions/cache`` and ``functions/wl-inference`` handlers are imported
as the python3-http template does, with their store pointed at the real S3 of
``api_stack``; a handler that raises is what the template turns into a 500.
Every call carries the internal token, as the gateway's calls do, so that the
body checks (not the token check) are what these tests reach.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from fedfaas import codec, keys
from fedfaas.config import INTERNAL_TOKEN_HEADER
from fedfaas.devstack.localstack.stack import LocalStack
from fedfaas.models import build_model, state_arrays
from fedfaas.store import ObjectStore

pytestmark = pytest.mark.stack

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"
DEEP = b"[" * 100_000 + b"]" * 100_000


class Event:
    """The template's event: method, path, body, headers, query."""

    def __init__(self, body: bytes, token: str, path: str = "/", method: str = "POST") -> None:
        self.body, self.path, self.method = body, path, method
        self.headers: dict[str, str] = {"Content-Type": "application/json", INTERNAL_TOKEN_HEADER: token}
        self.query: dict[str, str] = {}


def _import(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"audit_{name.replace('-', '_')}_handler",
                                                  FUNCTIONS / name / "handler.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def handlers(api_stack: LocalStack) -> Iterator[dict[str, ModuleType]]:
    """The cache and wl-inference handlers, configured like their replicas on the local stack."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in api_stack.env().items():
            mp.setenv(key, value)
        mp.setenv("FEDFAAS_CACHE_ID", "cache-audit")
        mp.setenv("FEDFAAS_CACHE_BUDGET_BYTES", str(64 * 1024**2))
        yield {"cache": _import("cache"), "wl-inference": _import("wl-inference")}


@pytest.fixture(scope="module")
def token(api_stack: LocalStack) -> str:
    """The internal token the stack's gateway sends to its functions."""
    return (Path(api_stack.env()["FEDFAAS_SECRETS_DIR"]) / "fedfaas-internal-token").read_text().strip()


@pytest.fixture(scope="module")
def stored_model(api_stack: LocalStack) -> dict[str, Any]:
    """A digits-mlp global model of round 1 in real S3, as the Request Tracker references it."""
    tenant, job = "audit", f"au-{uuid.uuid4().hex[:10]}"
    s3 = keys.s3_model(tenant, job, 1)
    model = state_arrays(build_model("digits-mlp", seed=0))
    ObjectStore(api_stack.settings()).put(s3, codec.encode(model, {}))
    return {"tenant": tenant, "job_id": job, "round": 1, "workload": "inference",
            "job": {"model": {"name": "digits-mlp", "kwargs": {}}},
            "data": {"global_models": [{"key": f"{tenant}:{job}:model:1", "s3": s3, "round": 1}]}}


def _call(module: ModuleType, token: str, body: bytes | dict[str, Any],
          path: str = "/") -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    answer = module.handle(Event(raw, token, path), None)
    return answer["statusCode"], json.loads(answer["body"])


@pytest.mark.parametrize(("path", "body", "words"), [
    ("/load", b"[1, 2]", ("JSON object",)),
    ("/load", b'{"items": 5}', ("items:",)),
    ("/load", b'{"items": [1]}', ("items.0:",)),
    ("/evict", b'{"keys": 5}', ("keys:",)),
    ("/run", DEEP, ("nested",)),
    ("/run", b'{"workload": "inference", "data": "x"}', ("data:",)),
    ("/run", b'{"workload": "inference", "arrays": [1]}', ("arrays:",)),
    ("/run", b'{"workload": "inference", "arrays": {"x": "abc"}}', ("'x'",)),
    ("/run", b'{"workload": "inference", "arrays": {"x": [[1], [1, 2]]}}', ("'x'",)),
    ("/run", b'{"workload": "inference", "round": "1"}', ("round:",)),
    ("/run", b'{"workload": "inference", "data": {"updates": [{}]}}', ("updates.0.key:", "updates.0.s3:")),
    ("/run", b'{"workload": "inference", "data": {"updates": [7]}}', ("data.updates",)),
    ("/run", b'{"workload": "inference", "data": {"validation": "x"}}', ("data.validation",)),
    ("/run", b'{"workload": "inference", "data": {"global_models": [{"key": "k", "s3": "tenants/a",'
             b' "round": "x"}]}}', ("global_models.0.round:",)),
])
def test_the_cache_handler_refuses_malformed_requests_with_a_400(
        handlers: dict[str, ModuleType], token: str, path: str, body: bytes, words: tuple[str, ...]) -> None:
    # Execute
    status, answer = _call(handlers["cache"], token, body, path)
    # Assert
    assert status == 400, answer
    for word in words:
        assert word in answer["message"], (word, answer)


@pytest.mark.parametrize("function", ["cache", "wl-inference"])
def test_bad_arrays_next_to_real_cached_data_get_a_400_and_good_ones_still_run(
        handlers: dict[str, ModuleType], token: str, stored_model: dict[str, Any], function: str) -> None:
    # Prepare
    bad = {**stored_model, "arrays": {"x": [["a"] * 64]}}
    good = {**stored_model, "arrays": {"x": np.zeros((2, 64)).tolist()}}
    # Execute
    bad_status, bad_answer = _call(handlers[function], token, bad, "/run")
    good_status, good_answer = _call(handlers[function], token, good, "/run")
    # Assert
    assert bad_status == 400 and "'x'" in bad_answer["message"], bad_answer
    assert good_status == 200, good_answer
    assert len(good_answer["result"]["labels"]) == 2


@pytest.mark.parametrize("body", [DEEP, b'{"workload": "inference", "data": [1]}'])
def test_the_workload_handler_refuses_malformed_requests_with_a_400(
        handlers: dict[str, ModuleType], token: str, body: bytes) -> None:
    # Execute
    status, answer = _call(handlers["wl-inference"], token, body)
    # Assert
    assert status == 400, answer
    assert answer["error"] == "bad_request"
