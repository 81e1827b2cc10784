"""Dropping a job and Redis failures."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cache_engine.engine import CacheEngine
from cache_engine.keys import DataKey
from fedfaas.devstack.localstack.procs import free_port
from fedfaas.errors import Unavailable
from fedfaas.keys import CE_PREFIX, ce_job_pattern


def test_drop_job_returns_its_copies_and_leaves_other_jobs_alone(
    make_engine: Callable[..., CacheEngine], redis_client: redis.Redis,
) -> None:
    # Prepare
    engine = make_engine()
    for job in ("job-1", "job-10"):
        engine.register_workloads("acme", job, ["malicious-filter"])
        engine.ingest(DataKey.update("acme", job, 0, "a"), 100)
    kept = DataKey.update("acme", "job-10", 0, "a")

    # Execute
    dropped = engine.drop_job("acme", "job-1")

    # Assert
    assert sorted(m.key.job for m in dropped) == ["job-1", "job-1"]
    assert redis_client.keys(ce_job_pattern(CE_PREFIX, "acme", "job-1")) == []
    assert len(engine.lookup(kept)) == 2
    assert sum(engine.usage().values()) == 200


def test_unreachable_redis_is_reported_as_unavailable() -> None:
    # Prepare: nothing listens on this port.
    client = redis.Redis(port=free_port(), socket_timeout=0.5, socket_connect_timeout=0.5,
                         retry=Retry(NoBackoff(), 0))
    engine = CacheEngine(client, ["cache-0"], budget_bytes=100, replicas=0)

    # Execute / Assert
    with pytest.raises(Unavailable):
        engine.ingest(DataKey.model("acme", "job", 0), 10)
    with pytest.raises(Unavailable):
        engine.lookup(DataKey.model("acme", "job", 0))
