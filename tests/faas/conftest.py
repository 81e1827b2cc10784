"""A tiny stack of test functions run by the real router and replica processes on loopback."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedfaas.devstack.faas import FaasClient, RouterOptions, RouterProcess, start_router

AUTH = ("admin", "s3cret-pass")

ECHO = """
import hashlib
import os
import time
from pathlib import Path

from fedfaas.config import read_secret


def handle(event, context):
    if event.path == "/boom":
        raise RuntimeError("boom")
    if event.path == "/bytes":
        headers = {"Content-Type": "application/octet-stream"}
        return {"statusCode": 201, "body": b"\\x00\\x01\\xff", "headers": headers}
    if event.path == "/text":
        return {"body": "plain"}
    if event.path == "/none":
        return None
    if event.path == "/digest":
        return {"body": {"length": len(event.body), "sha256": hashlib.sha256(event.body).hexdigest()}}
    if event.path == "/sleep":
        time.sleep(float(event.query["s"]))
    if event.path == "/wait":
        flag = Path(event.query["flag"])
        deadline = time.monotonic() + 20
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return {
        "statusCode": 200,
        "body": {
            "method": event.method,
            "path": event.path,
            "query": {k: event.query.getlist(k) for k in event.query},
            "body": event.body.decode(errors="replace"),
            "x_test": event.headers.get("X-Test"),
            "x_call_id": event.headers.get("X-Call-Id"),
            "hostname": context.hostname,
            "greeting": os.environ.get("GREETING"),
            "api_key": read_secret("api-key"),
            "gateway_password": read_secret("basic-auth-password"),
            "pid": os.getpid(),
        },
        "headers": {"X-Echo": "1"},
    }
"""

COUNTER = """
import time

from .helper import step

count = 0


def handle(event, context):
    global count
    count += step()
    if event.path == "/sleep":
        time.sleep(float(event.query["s"]))
    return {"statusCode": 200, "body": str(count)}
"""

HELPER = """
def step():
    return 1
"""

STACK = """
version: 1.0
provider:
  name: openfaas
  gateway: http://127.0.0.1:8080
functions:
  echo:
    lang: python3-http
    handler: ./echo
    image: ${REGISTRY:-ttl.sh}/echo:latest
    environment:
      GREETING: hello
      exec_timeout: 30s
    secrets:
      - api-key
  counter:
    lang: python3-http
    handler: ./counter
    image: counter:latest
    labels:
      com.openfaas.scale.min: "1"
      com.openfaas.scale.zero: "true"
      com.openfaas.scale.zero-duration: "1s"
  victim:
    lang: python3-http
    handler: ./counter
    image: counter:latest
    environment:
      exec_timeout: 20s
    labels:
      com.openfaas.scale.min: "1"
  sleeper:
    lang: python3-http
    handler: ./echo
    image: echo:latest
    environment:
      exec_timeout: 1s
    secrets:
      - api-key
  napper:
    lang: python3-http
    handler: ./counter
    image: counter:latest
    labels:
      com.openfaas.scale.zero: "true"
      com.openfaas.scale.zero-duration: "1s"
  single:
    lang: python3-http
    handler: ./echo
    image: echo:latest
    environment:
      max_inflight: 1
      exec_timeout: 30s
    labels:
      com.openfaas.scale.max: "2"
    secrets:
      - api-key
  scaler:
    lang: python3-http
    handler: ./counter
    image: counter:latest
    labels:
      com.openfaas.scale.max: "3"
"""


def write_function(folder: Path, files: dict[str, str]) -> None:
    """Write a handler folder (``handler.py`` and friends)."""
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))


def write_stack(root: Path, stack: str = STACK) -> Path:
    """Write the test functions, their secrets and ``stack.yml`` under ``root``; returns the stack."""
    write_function(root / "echo", {"handler.py": ECHO})
    write_function(root / "counter", {"handler.py": COUNTER, "helper.py": HELPER})
    secrets = root / "secrets"
    secrets.mkdir()
    (secrets / "api-key").write_text("key-123\n")
    (secrets / "basic-auth-user").write_text(AUTH[0])
    (secrets / "basic-auth-password").write_text(AUTH[1])
    path = root / "stack.yml"
    path.write_text(stack)
    return path


@pytest.fixture(scope="session")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    """The router on a free loopback port, serving the test stack; stopped at the end."""
    root = tmp_path_factory.mktemp("faas")
    stack = write_stack(root)
    options = RouterOptions(idle_s=60.0, grace_s=2.0, callback_retries=1)
    process = start_router(stack, 0, root / "state", secrets_dir=root / "secrets", options=options)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def faas(router: RouterProcess) -> Iterator[FaasClient]:
    """A client of the test router with its basic-auth credentials."""
    with router.client(auth=AUTH, timeout=30.0) as client:
        yield client
