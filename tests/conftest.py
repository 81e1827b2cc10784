"""Session fixtures: the real local stack, started by the same launcher as ``fedfaas up``.

``backing_stack`` runs only Redis and S3 (fast, for store and engine tests);
``local_stack`` runs everything, gateway and functions included.  Both talk to
real servers on loopback; nothing here is a mock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fedfaas.config import Settings
from fedfaas.devstack.localstack.stack import LocalStack, StackOptions

# Keep torch and BLAS from oversubscribing the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _start(tmp: Path, components: tuple[str, ...], **kwargs: object) -> LocalStack:
    stack = LocalStack(tmp)
    stack.up(StackOptions(components=components, **kwargs))  # type: ignore[arg-type]
    return stack


@pytest.fixture(scope="session")
def backing_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Real Redis and real S3 (SeaweedFS) for the whole session."""
    stack = _start(tmp_path_factory.mktemp("backing"), ("redis", "s3"))
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def redis_url(backing_stack: LocalStack) -> str:
    """URL of a real redis-server on loopback."""
    return backing_stack.env()["FEDFAAS_REDIS_URL"]


@pytest.fixture()
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on a freshly flushed database."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def s3_settings(backing_stack: LocalStack) -> Settings:
    """Settings pointing at the real S3 server (bucket already created)."""
    return backing_stack.settings()


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole stack: Redis, S3, the function router with stack.yml, and the gateway."""
    stack = _start(tmp_path_factory.mktemp("stack"), ("redis", "s3", "router", "gateway"))
    try:
        yield stack
    finally:
        stack.down()


class Api:
    """A tiny HTTP helper bound to a gateway URL (tests use real HTTP, never a test client)."""

    def __init__(self, base: str, admin_token: str) -> None:
        import requests

        self.base = base
        self.admin_token = admin_token
        self.session = requests.Session()

    def call(self, method: str, path: str, token: str | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
        headers = dict(kwargs.pop("headers", {}) or {})  # type: ignore[call-overload]
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, self.base + path, headers=headers, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def api_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Redis, S3 and the gateway (no functions): enough for the API v1 tests."""
    stack = _start(tmp_path_factory.mktemp("api"), ("redis", "s3", "gateway"))
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def api(api_stack: LocalStack) -> Api:
    """HTTP helper for the gateway of ``api_stack`` with the operator's admin token."""
    env = api_stack.env()
    token = (Path(env["FEDFAAS_SECRETS_DIR"]) / "fedfaas-admin-token").read_text().strip()
    return Api(env["FEDFAAS_GATEWAY_URL"], token)


@pytest.fixture(scope="session")
def stack_api(local_stack: LocalStack) -> Api:
    """HTTP helper for the gateway of the full ``local_stack``."""
    env = local_stack.env()
    token = (Path(env["FEDFAAS_SECRETS_DIR"]) / "fedfaas-admin-token").read_text().strip()
    return Api(env["FEDFAAS_GATEWAY_URL"], token)


@pytest.fixture(scope="session")
def faas(local_stack: LocalStack):  # type: ignore[no-untyped-def]
    """Client of the local OpenFaaS router, with its basic auth and the gateway's internal token."""
    from fedfaas.openfaas.client import FaasClient

    return FaasClient.from_settings(local_stack.settings(), timeout=30)
