"""Slow, stalled and malformed clients against the gateway's HTTP front (nginx before gunicorn), live.

Raw sockets on a real stack: held connections must not starve ``/healthz`` or a
normal upload, an oversized declared length is a JSON 413 before any body byte,
stalled requests are cut after the front's timeouts, and every malformed
request gets a JSON 4xx, never a 5xx or an HTML page.  The stack's timeouts
are shortened so that the cut-offs are observed in seconds.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml

from fedfaas import codec
from fedfaas.devstack.localstack import frontend
from fedfaas.devstack.localstack.faults import crash
from fedfaas.devstack.localstack.frontend import FrontendLimits
from fedfaas.devstack.localstack.procs import StartError
from fedfaas.devstack.localstack.stack import LocalStack, StackOptions
from tests.reliability.faults import admin_token

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

MAX_BODY = 1024 * 1024
HEADER_TIMEOUT_S = 8
BODY_TIMEOUT_S = 8
PER_ADDR = 48
IDLE = 200
STALLED = 40
HEALTH_BOUND_S = 1.0
# Past a timeout, how long the machine may take to act on it (2 shared cores).
SLACK_S = 4.0
ANSWER_S = 10.0
"""Ceiling on any answer the front gives at once."""


@dataclass
class Gateway:
    """The stack of this module, with its public address and operator token."""

    stack: LocalStack
    host: str
    port: int
    base: str
    admin: str


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Redis, S3 and the gateway behind its front, with short client timeouts."""
    stack = LocalStack(tmp_path_factory.mktemp("slow"))
    limits = FrontendLimits(client_header_timeout_s=HEADER_TIMEOUT_S, client_body_timeout_s=BODY_TIMEOUT_S,
                            max_conns_per_addr=PER_ADDR)
    stack.up(StackOptions(components=("redis", "s3", "gateway"), frontend=limits, extra_env={
        "FEDFAAS_MAX_BODY_BYTES": str(MAX_BODY),
        "FEDFAAS_RATE_LIMIT_PER_MIN": "0",
        "FEDFAAS_FLSTORE": "0",
        "FEDFAAS_DRIVER": "0",
    }))
    try:
        base = stack.env()["FEDFAAS_GATEWAY_URL"]
        host, _, port = base.removeprefix("http://").partition(":")
        yield Gateway(stack, host, int(port), base, admin_token(stack))
    finally:
        stack.down()


@dataclass
class Answer:
    """What came back on a raw connection."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    elapsed_s: float
    closed: bool

    def json(self) -> Any:
        return json.loads(self.body)


def _connect(gw: Gateway, timeout_s: float = ANSWER_S) -> socket.socket:
    return socket.create_connection((gw.host, gw.port), timeout=timeout_s)


def _read_answer(sock: socket.socket, started: float) -> Answer:
    """Read one response (or the connection's end) from ``sock``."""
    data = b""
    closed = False
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except ConnectionResetError:
        closed = True
    except TimeoutError:
        pass
    elapsed = time.monotonic() - started
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return Answer(None, {}, b"", elapsed, closed)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return Answer(int(lines[0].split()[1]), headers, body, elapsed, closed)


def _raw(gw: Gateway, data: bytes, timeout_s: float = ANSWER_S) -> Answer:
    """Send ``data`` on a fresh connection and read the answer."""
    with _connect(gw, timeout_s) as sock:
        started = time.monotonic()
        sock.sendall(data)
        return _read_answer(sock, started)


def _assert_json_error(answer: Answer, status: int, code: str | None = None) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    body: dict[str, Any] = answer.json()
    assert set(body) == {"error", "message"} and body["message"], body
    if code is not None:
        assert body["error"] == code, body
    return body


def _post_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _open_round(gw: Gateway) -> tuple[str, str]:
    """A job with one party and an open round; returns (upload path, party token)."""
    s = requests.Session()
    job = s.post(f"{gw.base}/v1/jobs", headers={"Authorization": f"Bearer {gw.admin}"}, timeout=30, json={
        "model": {"name": "m", "size_bytes": 64}, "quorum": 1, "rounds": 2, "t_wait_s": 600}).json()
    token = s.post(f"{gw.base}/v1/jobs/{job['job_id']}/parties", timeout=30,
                   headers={"Authorization": f"Bearer {job['enrollment_token']}"},
                   json={"party_id": "p0"}).json()["token"]
    opened = s.post(f"{gw.base}/v1/jobs/{job['job_id']}/rounds", timeout=30,
                    headers={"Authorization": f"Bearer {gw.admin}"})
    assert opened.status_code == 201, opened.text
    return f"/v1/jobs/{job['job_id']}/rounds/1/updates", token


def _still_open(sock: socket.socket) -> bool:
    """True when the server has neither closed nor answered on ``sock``."""
    sock.setblocking(False)
    try:
        return not sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def _stalled_upload(gw: Gateway, path: str = "/v1/jobs") -> socket.socket:
    """A connection that declared 100,000 body bytes, sent 10 and holds."""
    sock = _connect(gw)
    sock.sendall(_post_head(path, "Content-Type: application/octet-stream", "Content-Length: 100000")
                 + b"0123456789")
    return sock


@pytest.mark.stack
def test_held_connections_do_not_starve_health_or_uploads(gateway: Gateway) -> None:
    # Prepare
    path, token = _open_round(gateway)
    body = codec.encode({"w": np.arange(1000, dtype=np.float32)}, {"num_examples": 3})
    held: list[socket.socket] = []
    try:
        # Execute: 200 idle connections and 40 uploads stalled 10 bytes into 100,000
        held += [_connect(gateway) for _ in range(IDLE)]
        stalled = [_stalled_upload(gateway) for _ in range(STALLED)]
        held += stalled
        health = []
        for _ in range(5):
            started = time.monotonic()
            resp = requests.get(f"{gateway.base}/healthz", timeout=(HEALTH_BOUND_S, 5))
            health.append((resp.status_code, time.monotonic() - started))
        started = time.monotonic()
        upload = requests.post(f"{gateway.base}{path}", data=body, timeout=30,
                               headers={"Authorization": f"Bearer {token}"})
        upload_s = time.monotonic() - started
        open_after = sum(_still_open(sock) for sock in held)
    finally:
        for sock in held:
            sock.close()
    # Assert
    print(f"healthz under {IDLE} idle + {STALLED} stalled: "
          f"{', '.join(f'{s * 1000:.0f} ms' for _, s in health)}; upload {upload_s * 1000:.0f} ms")
    assert [status for status, _ in health] == [200] * 5
    assert max(seconds for _, seconds in health) < HEALTH_BOUND_S, health
    assert upload.status_code == 201, upload.text
    assert open_after == len(held), f"only {open_after} of {len(held)} held connections were still open"


@pytest.mark.stack
def test_an_oversized_declared_length_is_refused_at_once_without_a_body(gateway: Gateway) -> None:
    # Prepare
    path, token = _open_round(gateway)
    # Execute: headers only, then wait for the answer without sending a byte of body
    answer = _raw(gateway, _post_head(path, f"Authorization: Bearer {token}", "Content-Length: 300000000"))
    just_over = _raw(gateway, _post_head(path, f"Authorization: Bearer {token}",
                                         f"Content-Length: {MAX_BODY + 1}"))
    # Assert
    for refused in (answer, just_over):
        _assert_json_error(refused, 413, "payload_too_large")
        assert refused.elapsed_s < 2.0, refused.elapsed_s
    assert str(MAX_BODY) in answer.json()["message"]


@pytest.mark.stack
@pytest.mark.parametrize("framing, status", [
    (b"zz\r\nabc\r\n0\r\n\r\n", 400),
    (b"-5\r\nabc\r\n0\r\n\r\n", 400),
    (b"ffffffffffff\r\nabc", 413),
    (b"5\r\nhelloXY\r\n0\r\n\r\n", 400),  # a chunk whose data is not followed by CRLF
], ids=["zz", "minus-5", "ffffffffffff", "unterminated-chunk"])
def test_malformed_chunked_framing_is_a_json_4xx_at_once(gateway: Gateway, framing: bytes,
                                                         status: int) -> None:
    # Execute
    answer = _raw(gateway, _post_head("/v1/jobs", "Content-Type: application/json",
                                      "Transfer-Encoding: chunked") + framing)
    # Assert
    _assert_json_error(answer, status)
    assert answer.elapsed_s < 2.0, answer.elapsed_s


STALLS = {
    "stalled-chunk": _post_head("/v1/jobs", "Transfer-Encoding: chunked") + b"5\r\nhel",
    "stalled-body": _post_head("/v1/jobs", "Content-Length: 100000") + b"0123456789",
    "stalled-headers": b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Slow: 1",
}


@pytest.mark.stack
def test_stalled_requests_are_cut_after_the_front_timeouts_and_never_get_a_5xx(gateway: Gateway) -> None:
    # Prepare
    socks = {name: _connect(gateway, max(HEADER_TIMEOUT_S, BODY_TIMEOUT_S) + 2 * SLACK_S) for name in STALLS}
    try:
        # Execute: part of a request, then silence
        started = time.monotonic()
        for name, data in STALLS.items():
            socks[name].sendall(data)
        answers = {name: _read_answer(sock, started) for name, sock in socks.items()}
    finally:
        for sock in socks.values():
            sock.close()
    # Assert: nginx ends a timed-out request by closing the connection (no 408 is sent)
    for name, answer in answers.items():
        timeout_s = HEADER_TIMEOUT_S if name == "stalled-headers" else BODY_TIMEOUT_S
        assert answer.closed or answer.status is not None, name
        assert timeout_s - 1 <= answer.elapsed_s < timeout_s + SLACK_S, (name, answer.elapsed_s)
        if answer.status is not None:
            _assert_json_error(answer, 408)


@pytest.mark.stack
@pytest.mark.parametrize("request_bytes, status", [
    (_post_head("/v1/jobs", "Content-Length: abc") + b"{}", 400),
    (_post_head("/v1/jobs", "Content-Length: -1") + b"{}", 400),
    (_post_head("/v1/jobs", "Content-Length: 2", "Content-Length: 3") + b"{}", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Probe: a\x00b\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX\x00Probe: ab\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: gateway\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n"
     + b"".join(b"X-H%d: %s\r\n" % (i, b"a" * 1000) for i in range(40)) + b"\r\n", 431),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    (_post_head("/v1/jobs", "Transfer-Encoding: gzip") + b"{}", 400),
], ids=["cl-abc", "cl-negative", "cl-twice", "nul-in-value", "nul-in-name", "9k-request-line",
        "9k-header", "40k-of-headers", "tls-to-http", "unknown-transfer-encoding"])
def test_malformed_requests_get_a_json_4xx(gateway: Gateway, request_bytes: bytes, status: int) -> None:
    # Execute
    answer = _raw(gateway, request_bytes)
    # Assert
    _assert_json_error(answer, status)


@pytest.mark.stack
def test_requests_over_the_per_address_limit_get_429_json_and_health_still_answers(gateway: Gateway) -> None:
    # Prepare
    held = [_stalled_upload(gateway) for _ in range(PER_ADDR)]
    try:
        deadline = time.monotonic() + 5
        while sum(_still_open(s) for s in held) < PER_ADDR and time.monotonic() < deadline:
            time.sleep(0.05)
        # Execute
        over = _raw(gateway, b"GET /v1/jobs HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
        health = requests.get(f"{gateway.base}/healthz", timeout=(HEALTH_BOUND_S, 5))
    finally:
        for sock in held:
            sock.close()
    # Assert
    _assert_json_error(over, 429, "rate_limited")
    assert int(over.headers["retry-after"]) >= 1
    assert health.status_code == 200


@pytest.mark.stack
def test_the_gateway_down_behind_its_front_is_a_json_503_with_retry_after(gateway: Gateway) -> None:
    # Prepare
    crash(gateway.stack, "gateway")
    try:
        # Execute
        down = requests.post(f"{gateway.base}/v1/jobs", json={}, timeout=10)
    finally:
        gateway.stack.restart("gateway")
    after = requests.get(f"{gateway.base}/healthz", timeout=10)
    # Assert
    assert down.status_code == 503, down.text
    assert down.headers["Content-Type"].startswith("application/json")
    assert down.json()["error"] == "unavailable"
    assert int(down.headers["Retry-After"]) >= 1
    assert after.status_code == 200
    assert gateway.stack.status()["running"] is True


def test_the_deployed_front_configs_are_what_the_generator_writes(capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    configmap = next(doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / "gateway-frontend.yaml").read_text())
                     if doc["kind"] == "ConfigMap")
    # Execute
    frontend.main(["--listen", "8080", "--upstream", "fedfaas-gateway.fedfaas.svc.cluster.local:8000",
                   "--run-dir", "/tmp/nginx"])
    k8s = capsys.readouterr().out
    frontend.main(["--listen", "8080", "--upstream", "fedfaas-gateway:8000", "--run-dir", "/tmp"])
    faasd = capsys.readouterr().out
    # Assert
    assert configmap["data"]["nginx.conf"] == k8s
    assert (DEPLOY / "faasd" / "nginx.conf").read_text() == faasd
    assert "client_max_body_size 268435456;" in k8s  # the gateway's default FEDFAAS_MAX_BODY_BYTES


def test_the_launcher_names_the_package_when_nginx_is_missing(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a PATH and system folders without nginx
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(frontend, "SBIN_PATH", str(tmp_path))
    stack = LocalStack(tmp_path / "stack")
    # Execute
    with pytest.raises(StartError) as missing:
        stack.up(StackOptions(components=("gateway",)))
    # Assert
    assert frontend.NGINX_PACKAGE in str(missing.value)
    assert stack.read_state() is None
