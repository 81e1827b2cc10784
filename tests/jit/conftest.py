"""Fixtures of the JIT tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from fedfaas.jit.clock import VirtualClock
from fedfaas.jit.service import JitService


@pytest.fixture()
def service(redis_url: str) -> Iterator[JitService]:
    """A :class:`JitService` on the real Redis, on a virtual clock, in a namespace of its own."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    ns = f"jit-svc-{uuid.uuid4().hex[:8]}"
    try:
        yield JitService(client, namespace=ns, clock=VirtualClock(), owner="gw-1")
    finally:
        for key in client.scan_iter(f"{ns}:*"):
            client.delete(key)
        client.close()
