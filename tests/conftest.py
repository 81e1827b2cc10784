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
from fedfaas.localstack.stack import LocalStack, StackOptions

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
