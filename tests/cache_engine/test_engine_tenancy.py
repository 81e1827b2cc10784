"""Tenant isolation: one tenant's lookups and requests never see another tenant's entries."""

from __future__ import annotations

from collections.abc import Callable

from cache_engine.engine import CacheEngine
from cache_engine.keys import DataKey


def test_same_ids_under_two_tenants_are_separate_entries(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare: identical job, round and client ids; only tenant "a" caches updates.
    engine = make_engine()
    engine.register_workloads("tenant-a", "job", ["malicious-filter"])
    engine.register_workloads("tenant-b", "job", ["hyperparameters"])
    key_a = DataKey.update("tenant-a", "job", 0, "c1")
    key_b = DataKey.update("tenant-b", "job", 0, "c1")
    engine.ingest(key_a, 100)
    engine.ingest(key_b, 100)

    # Execute
    holders_a, holders_b = engine.lookup(key_a), engine.lookup(key_b)
    plan_b = engine.plan_request("malicious-filter", [key_b])

    # Assert
    assert holders_a and holders_b == []
    assert not plan_b.hit and set(plan_b.resident) == set()
    assert [f.key for f in plan_b.misses] == [key_b]
    assert set(engine.resident("tenant-a", "job")) == {key_a}
    assert set(engine.resident("tenant-b", "job")) == {key_b}
    assert engine.stats("tenant-a") == {}
    assert engine.stats("tenant-b") == {"P2": {"misses": 1, "hits": 0}}


def test_a_tenants_round_catalog_does_not_include_another_tenants_clients(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare
    engine = make_engine()
    engine.ingest(DataKey.update("tenant-a", "job", 0, "c1"), 100)
    engine.ingest(DataKey.update("tenant-b", "job", 0, "c2"), 100)

    # Execute: P2 needs every update of the round, from the requesting tenant's catalog only.
    plan = engine.plan_request("contribution", [DataKey.update("tenant-a", "job", 0, "c1")])

    # Assert
    assert [f.key for f in plan.misses] == [DataKey.update("tenant-a", "job", 0, "c1")]
