"""Synchronous calls through the router: the python3-http contract end to end."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import requests

from fedfaas.devstack.faas import FaasClient


def test_sync_call_passes_method_path_query_body_and_headers(faas: FaasClient) -> None:
    # Prepare
    headers = {"X-Test": "abc"}
    # Execute
    resp = faas.invoke("echo", b"hello", path="/a/b%20c", headers=headers, params={"q": "x y"}, method="PUT")
    # Assert
    assert resp.status_code == 200
    body = resp.json()
    assert body["method"] == "PUT"
    assert body["path"] == "/a/b c"
    assert body["query"] == {"q": ["x y"]}
    assert body["body"] == "hello"
    assert body["x_test"] == "abc"
    assert resp.headers["X-Echo"] == "1"


def test_gateway_headers_are_added_and_an_incoming_call_id_is_kept(faas: FaasClient) -> None:
    # Prepare
    call_id = "call-42"
    # Execute
    fresh = faas.invoke("echo", method="GET")
    kept = faas.invoke("echo", method="GET", headers={"X-Call-Id": call_id})
    # Assert
    assert uuid.UUID(fresh.headers["X-Call-Id"]).version == 4
    assert fresh.json()["x_call_id"] == fresh.headers["X-Call-Id"]
    assert float(fresh.headers["X-Duration-Seconds"]) >= 0
    assert int(fresh.headers["X-Start-Time"]) > 0
    assert kept.headers["X-Call-Id"] == call_id
    assert kept.json()["x_call_id"] == call_id


def test_environment_and_declared_secrets_reach_the_handler(faas: FaasClient) -> None:
    # Execute
    body = faas.invoke("echo", method="GET").json()
    # Assert
    assert body["greeting"] == "hello"
    assert body["api_key"] == "key-123"
    assert body["gateway_password"] is None  # not listed under the function's secrets
    assert body["hostname"].startswith("echo-")


def test_module_state_survives_between_calls(faas: FaasClient) -> None:
    # Execute
    first = int(faas.invoke("counter").text)
    second = int(faas.invoke("counter").text)
    # Assert
    assert second == first + 1


@pytest.mark.parametrize(
    ("path", "status", "content"),
    [("/bytes", 201, b"\x00\x01\xff"), ("/text", 200, b"plain"), ("/none", 200, b"")],
)
def test_body_types_are_sent_as_the_template_does(
    faas: FaasClient, path: str, status: int, content: bytes
) -> None:
    # Execute
    resp = faas.invoke("echo", path=path, method="GET")
    # Assert
    assert resp.status_code == status
    assert resp.content == content


def test_large_and_chunked_bodies_stream_through_unchanged(faas: FaasClient) -> None:
    # Prepare
    payload = bytes(range(256)) * (8 * 4096 + 3)
    chunks = (payload[i : i + 100_000] for i in range(0, len(payload), 100_000))
    expected = {"length": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    # Execute
    sized = faas.invoke("echo", payload, path="/digest").json()
    chunked = requests.post(f"{faas.base_url}/function/echo/digest", data=chunks, timeout=30).json()
    # Assert
    assert sized == expected
    assert chunked == expected


def test_handler_exception_is_a_json_500(faas: FaasClient) -> None:
    # Execute
    resp = faas.invoke("echo", path="/boom", method="GET")
    # Assert
    assert resp.status_code == 500
    assert resp.json() == {"error": "function_error", "message": "RuntimeError: boom"}


def test_unknown_function_is_a_json_404(faas: FaasClient) -> None:
    # Execute
    sync = faas.invoke("nope")
    system = requests.get(f"{faas.base_url}/system/function/nope", auth=("admin", "s3cret-pass"), timeout=5)
    queued = requests.post(f"{faas.base_url}/async-function/nope", timeout=5)
    # Assert
    for resp in (sync, system, queued):
        assert resp.status_code == 404
        assert resp.json()["error"] == "not_found"


def test_namespaced_name_reaches_the_same_function(faas: FaasClient) -> None:
    # Execute
    resp = faas.invoke("echo.openfaas-fn", method="GET")
    # Assert
    assert resp.status_code == 200
    assert resp.json()["hostname"].startswith("echo-")


def test_exec_timeout_is_a_json_504(faas: FaasClient) -> None:
    # Execute
    resp = faas.invoke("sleeper", path="/sleep", params={"s": "3"}, method="GET")
    # Assert
    assert resp.status_code == 504
    assert resp.json()["error"] == "function_timeout"
    assert "X-Call-Id" in resp.headers
