"""/async-function: 202 with a call id, then the result POSTed to X-Callback-Url."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from fedfaas.devstack.faas import FaasClient

Received = tuple[dict[str, str], bytes]


@pytest.fixture()
def callback_server() -> Iterator[tuple[str, queue.Queue[Received]]]:
    """A real HTTP server on loopback that records every POST it receives."""
    received: queue.Queue[Received] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.put((dict(self.headers.items()), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/done", received
    finally:
        server.shutdown()
        server.server_close()


def test_async_call_posts_the_result_to_the_callback(
    faas: FaasClient, callback_server: tuple[str, queue.Queue[Received]]
) -> None:
    # Prepare
    url, received = callback_server
    # Execute
    call_id = faas.invoke_async("echo", b"later", path="/x", callback_url=url)
    headers, body = received.get(timeout=20)
    # Assert
    assert headers["X-Call-Id"] == call_id
    assert headers["X-Function-Status"] == "200"
    assert headers["X-Function-Name"] == "echo"
    assert float(headers["X-Duration-Seconds"]) >= 0
    assert b'"body":"later"' in body
    assert b'"path":"/x"' in body


def test_async_call_reports_a_failing_function_status(
    faas: FaasClient, callback_server: tuple[str, queue.Queue[Received]]
) -> None:
    # Prepare
    url, received = callback_server
    # Execute
    call_id = faas.invoke_async("echo", path="/boom", callback_url=url)
    headers, body = received.get(timeout=20)
    # Assert
    assert headers["X-Call-Id"] == call_id
    assert headers["X-Function-Status"] == "500"
    assert b"function_error" in body


def test_async_call_is_accepted_with_202_and_runs_without_callback(faas: FaasClient) -> None:
    # Prepare
    before = faas.function("counter")["invocationCount"]
    # Execute
    resp = requests.post(f"{faas.base_url}/async-function/counter", data=b"", timeout=5)
    # Assert
    assert resp.status_code == 202
    assert resp.headers["X-Call-Id"]
    faas_after = _wait_invocations(faas, "counter", before + 1)
    assert faas_after == before + 1


def test_async_call_refuses_a_bad_callback_url_and_get(faas: FaasClient) -> None:
    # Execute
    bad = requests.post(
        f"{faas.base_url}/async-function/echo", headers={"X-Callback-Url": "ftp://x"}, timeout=5
    )
    get = requests.get(f"{faas.base_url}/async-function/echo", timeout=5)
    # Assert
    assert bad.status_code == 400
    assert get.status_code == 405
    assert get.json()["error"] == "method_not_allowed"


def _wait_invocations(faas: FaasClient, name: str, wanted: int) -> int:
    import time

    deadline = time.monotonic() + 20
    count = faas.function(name)["invocationCount"]
    while count < wanted and time.monotonic() < deadline:
        time.sleep(0.05)
        count = faas.function(name)["invocationCount"]
    return int(count)
