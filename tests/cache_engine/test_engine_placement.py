"""CacheEngine ingest: hot/cold split, primary + replica placement, memory accounting (real Redis)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from cache_engine.engine import CacheEngine
from cache_engine.keys import DataKey
from fedfaas.errors import BadRequest

T, J = "acme", "job-1"


def upd(rnd: int, client: str) -> DataKey:
    return DataKey.update(T, J, rnd, client)


def test_hot_update_gets_a_least_loaded_primary_and_a_replica_elsewhere(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare
    engine = make_engine()
    engine.register_workloads(T, J, ["malicious-filter"])

    # Execute
    first = engine.ingest(upd(0, "a"), 300)
    second = engine.ingest(upd(0, "b"), 100)

    # Assert: all empty, so names break the tie; then cache-2 is the least loaded and
    # cache-0 wins the tie with cache-1 for the replica.
    assert first.functions == ("cache-0", "cache-1")
    assert second.functions == ("cache-2", "cache-0")
    assert engine.lookup(upd(0, "a")) == ["cache-0", "cache-1"]
    assert engine.usage() == {"cache-0": 400, "cache-1": 300, "cache-2": 100}
    assert first.cached and not first.evictions


def test_data_no_active_policy_calls_hot_stays_cold(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare
    engine = make_engine()
    engine.register_workloads(T, J, ["hyperparameters"])

    # Execute
    update = engine.ingest(upd(0, "a"), 100)
    meta = engine.ingest(DataKey.meta(T, J, 0), 10)

    # Assert
    assert not update.cached and engine.lookup(upd(0, "a")) == []
    assert meta.cached and len(meta.functions) == 2


def test_replicas_setting_and_decoding_clients_are_honoured(redis_url: str) -> None:
    # Prepare
    client = redis.Redis.from_url(redis_url, socket_timeout=5, decode_responses=True)
    client.flushdb()
    engine = CacheEngine(client, ["f-a", "f-b", "f-c"], budget_bytes=500, replicas=2)
    engine.register_workloads(T, J, ["inference"])

    # Execute
    result = engine.ingest(DataKey.model(T, J, 3), 50)

    # Assert
    assert sorted(result.functions) == ["f-a", "f-b", "f-c"]
    assert engine.usage() == {"f-a": 50, "f-b": 50, "f-c": 50}
    client.close()


@pytest.mark.parametrize("size", [0, -5, 2.5, True])
def test_bad_sizes_are_rejected(make_engine: Callable[..., CacheEngine], size: object) -> None:
    with pytest.raises(BadRequest):
        make_engine().ingest(upd(0, "a"), size)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [
    {"functions": []}, {"functions": ["a", "a"]}, {"functions": ["bad:id"]},
    {"budget_bytes": 0}, {"replicas": 3}, {"overrides": {"debugging": "P9"}},
])
def test_bad_configurations_are_rejected(
    make_engine: Callable[..., CacheEngine], kwargs: dict[str, object]
) -> None:
    with pytest.raises(BadRequest):
        make_engine(**kwargs)
