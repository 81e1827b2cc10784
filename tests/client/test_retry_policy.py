"""The one HTTP retry policy (fedfaas.retry) on real loopback servers: SDK and OpenFaaS client."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from fedfaas.client import Backoff, FedfaasClient, Retry
from fedfaas.errors import Unavailable
from fedfaas.openfaas.client import FaasClient
from fedfaas.retry import ALL_METHODS
from gateway.rounds import STEP_RETRY
from tests.client.conftest import ScriptedServer

NO_BACKOFF = Retry(retries=3, backoff=Backoff(base_s=0.0))


def test_503_with_retry_after_twice_then_200(scripted_server: ScriptedServer) -> None:
    # Prepare
    busy = (503, {"Retry-After": "2"}, {"error": "unavailable", "message": "busy"})
    scripted_server.script(busy, busy, (200, {}, {"ok": True}))
    sleeps: list[float] = []
    client = FedfaasClient(scripted_server.url, "tok", retry=NO_BACKOFF, sleep=sleeps.append)
    # Execute: a POST, since 503 says the request was not acted upon
    body = client.json("POST", "/v1/jobs", json_body={"x": 1})
    # Assert
    assert body == {"ok": True} and sleeps == [2.0, 2.0]
    assert [h.body for h in scripted_server.hits] == [b'{"x": 1}'] * 3


def test_retry_after_is_capped_and_a_bad_one_falls_back_to_backoff(
        scripted_server: ScriptedServer) -> None:
    # Prepare
    scripted_server.script((429, {"Retry-After": "3600"}, {}), (429, {"Retry-After": "soon"}, {}),
                           (200, {}, {}))
    sleeps: list[float] = []
    retry = Retry(retries=3, backoff=Backoff(base_s=0.5, jitter=0.0), max_retry_after_s=7)
    # Execute
    FedfaasClient(scripted_server.url, retry=retry, sleep=sleeps.append).json("GET", "/v1/jobs/j")
    # Assert
    assert sleeps == [7.0, 1.0]


@pytest.fixture()
def resetting_server() -> Iterator[tuple[str, list[bytes]]]:
    """Reads each request's head, then resets the connection without answering."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()
    seen: list[bytes] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                seen.append(conn.recv(65536))
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", seen
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize(("method", "idempotent", "attempts"), [
    ("POST", None, 1),   # creating something: the server may have acted
    ("POST", False, 1),
    ("POST", True, 4),   # an update upload: idempotent by the project's rule
    ("GET", None, 4),
    ("PUT", False, 1),   # the caller's word beats the method's
])
def test_a_reset_after_sending_is_retried_only_when_idempotent(
        resetting_server: tuple[str, list[bytes]], method: str, idempotent: bool | None,
        attempts: int) -> None:
    # Prepare
    url, seen = resetting_server
    client = FedfaasClient(url, retry=NO_BACKOFF, sleep=lambda s: None)
    # Execute
    with pytest.raises(Unavailable) as caught:
        client.request(method, "/v1/x", data=b"body", idempotent=idempotent)
    # Assert
    assert len(seen) == attempts and caught.value.code == "connection_error"


def test_aggregation_steps_are_retried_on_502_and_503_but_not_on_the_functions_500(
        scripted_server: ScriptedServer) -> None:
    # Prepare: the gateway's aggregate client, with the step policy minus its waits
    retry = Retry(retries=STEP_RETRY.retries, backoff=Backoff(base_s=0.0), statuses=STEP_RETRY.statuses)
    client = FaasClient(scripted_server.url, retry=retry, idempotent=ALL_METHODS)
    scripted_server.script((502, {}, b"gone"), (503, {}, b"cold"), (200, {}, {"partial": "p"}))
    # Execute
    ok = client.invoke("aggregate", b"{}")
    scripted_server.script((500, {"X-Fedfaas-Function-Error": "1"}, {"error": "x"}))
    failed = client.invoke("aggregate", b"{}")
    # Assert
    assert ok.status_code == 200 and ok.json() == {"partial": "p"}
    assert failed.status_code == 500 and len(scripted_server.hits) == 1


def test_the_openfaas_client_does_not_retry_by_default(scripted_server: ScriptedServer) -> None:
    # Prepare
    scripted_server.script((503, {}, b"busy"), (200, {}, {}))
    # Execute
    resp = FaasClient(scripted_server.url).invoke("cache-0", b"{}")
    # Assert: the Request Tracker classifies the platform's answers itself
    assert resp.status_code == 503 and len(scripted_server.hits) == 1
