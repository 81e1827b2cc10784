"""Functions serve data only to callers holding the internal token (the fedfaas gateway).

The OpenFaaS gateway does not authenticate ``/function/<name>``, and a
function's request names S3 objects of any tenant.  The stack tests call the
real ``cache-0``, ``aggregate`` and ``wl-inference`` functions through the local
router with and without ``X-Fedfaas-Internal-Token``; the unit tests check
:func:`fedfaas.handlers.require_internal_token` on its own.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from fedfaas import codec, keys
from fedfaas.config import INTERNAL_TOKEN_HEADER
from fedfaas.devstack.localstack.stack import LocalStack
from fedfaas.errors import Forbidden, Unauthorized
from fedfaas.handlers import guarded, json_response, require_internal_token
from fedfaas.models import build_model, state_arrays
from fedfaas.openfaas.client import FaasClient
from fedfaas.store import ObjectStore, digest

SECRET = "fedfaas-internal-token"
JSON = {"Content-Type": "application/json"}


# --- on the real local stack --------------------------------------------------------

@pytest.fixture(scope="module")
def router_url(local_stack: LocalStack) -> str:
    """URL of the local OpenFaaS router (its /function routes have no auth, like OpenFaaS)."""
    return local_stack.env()["FEDFAAS_FAAS_GATEWAY_URL"]


@pytest.fixture(scope="module")
def victim(local_stack: LocalStack) -> dict[str, Any]:
    """Another tenant's job in real S3: round 1's global model and round 2's two updates."""
    tenant, job = f"victim-{uuid.uuid4().hex[:6]}", f"j-{uuid.uuid4().hex[:8]}"
    store = ObjectStore(local_stack.settings())
    digests: dict[str, str] = {}
    for i, party in enumerate(("alice", "bob")):
        body = codec.encode({"w": np.full(8, float(i + 1), np.float32)}, {"num_examples": 10})
        store.put(keys.s3_update(tenant, job, 2, party, digest(body)), body)
        digests[party] = digest(body)
    model = state_arrays(build_model("digits-mlp", seed=0))
    store.put(keys.s3_model(tenant, job, 1), codec.encode(model, {}))
    return {"tenant": tenant, "job": job, "store": store,
            "update_key": f"{tenant}:{job}:update:2:alice",
            "update_s3": keys.s3_update(tenant, job, 2, "alice", digests["alice"]), "digests": digests,
            "model_key": f"{tenant}:{job}:model:1", "model_s3": keys.s3_model(tenant, job, 1)}


@pytest.fixture()
def anonymous(router_url: str) -> Iterator[requests.Session]:
    """What anyone who reaches the OpenFaaS gateway has: plain HTTP, no token."""
    with requests.Session() as session:
        yield session


def _inference(victim: dict[str, Any]) -> dict[str, Any]:
    return {"request_id": uuid.uuid4().hex[:12], "tenant": victim["tenant"], "job_id": victim["job"],
            "workload": "inference", "round": 1, "job": {"model": {"name": "digits-mlp", "kwargs": {}}},
            "data": {"global_models": [{"key": victim["model_key"], "s3": victim["model_s3"], "round": 1}]},
            "arrays": {"x": np.zeros((2, 64)).tolist()}}


def _refused(resp: requests.Response, status: int, code: str) -> None:
    """``resp`` is a JSON refusal carrying nothing but the error."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == code and INTERNAL_TOKEN_HEADER in body["message"], body
    assert set(body) == {"error", "message"}, body


@pytest.mark.stack
def test_a_cache_function_refuses_data_calls_without_the_token(
        anonymous: requests.Session, router_url: str, faas: FaasClient, victim: dict[str, Any]) -> None:
    # Prepare
    url = f"{router_url}/function/cache-0"
    load = json.dumps({"items": [{"key": victim["update_key"], "s3": victim["update_s3"]}]})
    # Execute
    loaded = anonymous.post(f"{url}/load", data=load, headers=JSON, timeout=30)
    listed = anonymous.get(f"{url}/keys", timeout=30)
    ran = anonymous.post(f"{url}/run", data=json.dumps(_inference(victim)), headers=JSON, timeout=60)
    wrong = anonymous.post(f"{url}/run", data=json.dumps(_inference(victim)), timeout=60,
                           headers={**JSON, INTERNAL_TOKEN_HEADER: "guessed-" + "x" * 40})
    evicted = anonymous.post(f"{url}/evict", data=json.dumps({"keys": [victim["update_key"]]}),
                             headers=JSON, timeout=30)
    ping = anonymous.get(f"{url}/ping", timeout=30)
    # Assert
    _refused(loaded, 401, "internal_token_required")
    _refused(listed, 401, "internal_token_required")
    _refused(ran, 401, "internal_token_required")
    _refused(wrong, 403, "internal_token_invalid")
    _refused(evicted, 401, "internal_token_required")
    assert ping.status_code == 200 and "keys" not in ping.json()  # the open keep-alive: counts only
    held = faas.invoke("cache-0", path="keys", method="GET").json()["keys"]
    assert victim["update_key"] not in held  # the refused load read nothing


@pytest.mark.stack
def test_a_cache_function_serves_the_gateway_holding_the_token(
        faas: FaasClient, victim: dict[str, Any]) -> None:
    # Prepare
    load = {"items": [{"key": victim["update_key"], "s3": victim["update_s3"]}]}
    try:
        # Execute
        loaded = faas.invoke("cache-0", json.dumps(load), path="load", headers=JSON)
        listed = faas.invoke("cache-0", path="keys", method="GET")
        ran = faas.invoke("cache-0", json.dumps(_inference(victim)), path="run", headers=JSON, timeout=60)
    finally:
        faas.invoke("cache-0", json.dumps({"keys": [victim["update_key"], victim["model_key"]]}),
                    path="evict", headers=JSON)
    # Assert
    assert loaded.status_code == 200 and loaded.json()["loaded"] == [victim["update_key"]], loaded.text
    assert victim["update_key"] in listed.json()["keys"]
    assert ran.status_code == 200, ran.text
    assert len(ran.json()["result"]["labels"]) == 2


@pytest.mark.stack
def test_the_aggregate_function_refuses_steps_without_the_token(
        anonymous: requests.Session, router_url: str, faas: FaasClient, victim: dict[str, Any]) -> None:
    # Prepare
    step = json.dumps({"tenant": victim["tenant"], "job": victim["job"], "round": 2,
                       "parties": ["alice", "bob"], "digests": victim["digests"], "finalize": True})
    model_key = keys.s3_model(victim["tenant"], victim["job"], 2)
    assert not victim["store"].exists(model_key)
    # Execute
    refused = anonymous.post(f"{router_url}/function/aggregate", data=step, headers=JSON, timeout=60)
    written_meanwhile = victim["store"].exists(model_key)
    warm = anonymous.get(f"{router_url}/function/aggregate", timeout=60)
    served = faas.invoke("aggregate", step, headers=JSON, timeout=60)
    # Assert
    _refused(refused, 401, "internal_token_required")
    assert not written_meanwhile
    assert warm.status_code == 200 and warm.json() == {"status": "ok"}  # the open warm ping
    assert served.status_code == 200, served.text
    assert served.json()["model_key"] == model_key and served.json()["parties"] == ["alice", "bob"]
    fused = codec.decode(victim["store"].get(model_key)).tensors["w"]
    np.testing.assert_allclose(fused, np.full(8, 1.5, np.float32))


@pytest.mark.stack
def test_a_workload_function_refuses_requests_without_the_token(
        anonymous: requests.Session, router_url: str, faas: FaasClient, victim: dict[str, Any]) -> None:
    # Prepare
    url = f"{router_url}/function/wl-inference"
    body = json.dumps(_inference(victim))
    # Execute
    refused = anonymous.post(url, data=body, headers=JSON, timeout=60)
    described = anonymous.get(url, timeout=60)
    served = faas.invoke("wl-inference", body, headers=JSON, timeout=60)
    # Assert
    _refused(refused, 401, "internal_token_required")
    assert described.status_code == 200 and described.json()["name"] == "inference"
    assert served.status_code == 200 and len(served.json()["result"]["labels"]) == 2, served.text


# --- the handler check alone --------------------------------------------------------

class Event:
    """The template's event, headers as a plain (case-sensitive) dict."""

    def __init__(self, headers: dict[str, str], method: str = "POST") -> None:
        self.body, self.path, self.method, self.headers, self.query = b"{}", "/", method, headers, {}


@pytest.fixture()
def secret_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An OpenFaaS secrets folder holding the internal token ``right-token``."""
    (tmp_path / SECRET).write_text("right-token\n")
    monkeypatch.setenv("FEDFAAS_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("FEDFAAS_SECRET_FEDFAAS_INTERNAL_TOKEN", raising=False)
    return tmp_path


@pytest.mark.parametrize("name", [INTERNAL_TOKEN_HEADER, INTERNAL_TOKEN_HEADER.lower()])
def test_the_right_token_passes_in_any_header_case(secret_dir: Path, name: str) -> None:
    # Execute / Assert
    require_internal_token(Event({name: "right-token"}))


@pytest.mark.parametrize(("headers", "kind", "code"), [
    ({}, Unauthorized, "internal_token_required"),
    ({INTERNAL_TOKEN_HEADER: ""}, Unauthorized, "internal_token_required"),
    ({INTERNAL_TOKEN_HEADER: "wrong-token"}, Forbidden, "internal_token_invalid"),
    ({INTERNAL_TOKEN_HEADER: "right-token-and-more"}, Forbidden, "internal_token_invalid"),
    ({INTERNAL_TOKEN_HEADER: "right-tökén"}, Forbidden, "internal_token_invalid"),
    ({"Authorization": "Bearer right-token"}, Unauthorized, "internal_token_required"),
])
def test_a_missing_or_wrong_token_is_refused(secret_dir: Path, headers: dict[str, str],
                                             kind: type[Exception], code: str) -> None:
    # Execute
    with pytest.raises(kind) as caught:
        require_internal_token(Event(headers))
    # Assert
    assert caught.value.code == code  # type: ignore[attr-defined]


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_a_function_without_the_secret_refuses_every_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          content: str | None) -> None:
    # Prepare
    if content is not None:
        (tmp_path / SECRET).write_text(content)
    monkeypatch.setenv("FEDFAAS_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("FEDFAAS_SECRET_FEDFAAS_INTERNAL_TOKEN", raising=False)
    # Execute
    with pytest.raises(Forbidden) as caught:
        require_internal_token(Event({INTERNAL_TOKEN_HEADER: ""}))
    with pytest.raises(Forbidden):
        require_internal_token(Event({INTERNAL_TOKEN_HEADER: "anything"}))
    # Assert
    assert caught.value.code == "internal_token_not_configured"
    assert "fedfaas-internal-token" in caught.value.message


def test_the_comparison_runs_in_constant_time(secret_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    import fedfaas.handlers as handlers

    seen: list[tuple[bytes, bytes]] = []
    real = handlers.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(handlers.hmac, "compare_digest", spy)
    # Execute
    require_internal_token(Event({INTERNAL_TOKEN_HEADER: "right-token"}))
    # Assert
    assert seen == [(b"right-token", b"right-token")]


def test_guarded_turns_a_refusal_into_a_json_401(secret_dir: Path) -> None:
    # Prepare
    @guarded
    def handle(event: Any, context: Any) -> dict[str, Any]:
        require_internal_token(event)
        return json_response(200, {"data": "secret"})

    # Execute
    refused = handle(Event({}), None)
    served = handle(Event({INTERNAL_TOKEN_HEADER: "right-token"}), None)
    # Assert
    assert refused["statusCode"] == 401
    assert json.loads(refused["body"])["error"] == "internal_token_required"
    assert "secret" not in refused["body"]
    assert served["statusCode"] == 200


def test_the_client_sends_the_token_on_function_calls_only() -> None:
    # Prepare
    client = FaasClient("http://127.0.0.1:9", internal_token="tok")
    plain = FaasClient("http://127.0.0.1:9")
    # Execute
    added = client._function_headers({"Content-Type": "application/json"})
    kept = client._function_headers({INTERNAL_TOKEN_HEADER.lower(): "other"})
    # Assert
    assert added == {INTERNAL_TOKEN_HEADER: "tok", "Content-Type": "application/json"}
    assert kept == {INTERNAL_TOKEN_HEADER.lower(): "other"}
    assert plain._function_headers(None) == {}
    assert INTERNAL_TOKEN_HEADER not in client._session.headers  # never on /system or /healthz
