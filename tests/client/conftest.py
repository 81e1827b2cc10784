"""Fixtures of the SDK tests: an admin on the real local stack, and a real scripted HTTP server."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fedfaas.client import AdminClient
from tests.conftest import Api


@pytest.fixture(scope="session")
def admin(stack_api: Api) -> Iterator[AdminClient]:
    """The operator's admin client on the full local stack."""
    client = AdminClient(stack_api.base, stack_api.admin_token, timeout=(5, 60))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture()
def new_job(admin: AdminClient) -> Callable[..., dict[str, Any]]:
    """Create a job with a unique id; keyword arguments override the job spec."""

    def create(**spec: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"job_id": f"sdk-{uuid.uuid4().hex[:10]}",
                                "model": {"name": "mlp", "size_bytes": 1000},
                                "t_wait_s": 120, "quorum": 1, "rounds": 3}
        body.update(spec)
        return admin.create_job(body)

    return create


@dataclass
class Hit:
    """One request the scripted server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedServer:
    """A real HTTP server on loopback that answers from a script, then repeats the last answer."""

    url: str
    answers: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)

    def script(self, *answers: tuple[int, dict[str, str], Any]) -> None:
        self.answers = list(answers)
        self.hits.clear()

    def next_answer(self) -> tuple[int, dict[str, str], Any]:
        index = min(len(self.hits) - 1, len(self.answers) - 1)
        return self.answers[index]


@pytest.fixture()
def scripted_server() -> Iterator[ScriptedServer]:
    """Answers each request with the next scripted ``(status, headers, json_body)``."""
    server_ref: list[ScriptedServer] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state = server_ref[0]
            state.hits.append(Hit(self.command, self.path, dict(self.headers), body))
            status, headers, payload = state.next_answer()
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = _answer  # noqa: N815 - http.server's naming

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_ref.append(ScriptedServer(f"http://127.0.0.1:{httpd.server_address[1]}"))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server_ref[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
