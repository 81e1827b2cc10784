"""The round work lease: one holder at a time, released only by its holder, gone when it dies."""

from __future__ import annotations

import uuid

import pytest
import redis

from fedfaas.contracts import StepAnswer, StepRequest
from fedfaas.store import ObjectStore
from gateway.registry import Registry
from gateway.rounds import LOCK_MS, RoundCoordinator
from tests.reliability.conftest import FaultStack

pytestmark = pytest.mark.stack


def _never(request: StepRequest) -> StepAnswer:
    raise AssertionError("no step is run here")


def test_lease_is_exclusive_short_lived_and_released_only_by_its_holder(fs: FaultStack) -> None:
    # Prepare
    settings = fs.stack.settings()
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    registry = Registry(client, ObjectStore(settings))
    a, b = (RoundCoordinator(registry, _never, owner=name) for name in ("replica-a", "replica-b"))
    job = f"lease-{uuid.uuid4().hex[:8]}"
    key = f"ff:job:{job}:round:1:lock"
    # Execute
    first = a.acquire(job, 1)
    second = b.acquire(job, 1)
    ttl = client.pttl(key)
    b.release(job, 1)
    holder_after_foreign_release = client.get(key)
    a.release(job, 1)
    after_release = client.exists(key)
    third = b.acquire(job, 1)
    b.release(job, 1)
    # Assert
    assert (first, second, third) == (True, False, True)
    assert 0 < ttl <= LOCK_MS <= 60_000
    assert holder_after_foreign_release == b"replica-a"
    assert after_release == 0
