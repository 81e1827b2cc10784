"""Per-function memory budgets: LRU fallback eviction, static never evicts, oversized data."""

from __future__ import annotations

from collections.abc import Callable

from cache_engine.engine import CacheEngine
from cache_engine.keys import DataKey

T, J = "acme", "job-1"


def key(client: str) -> DataKey:
    return DataKey.update(T, J, 0, client)


def test_a_full_function_evicts_the_least_recently_used_copy(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare: one function with room for two updates; P1 wants every requested single.
    engine = make_engine(functions=["cache-0"], budget_bytes=250, replicas=0)
    for c in "abc":
        engine.ingest(key(c), 100)
    engine.plan_request("inference", [key("a")])
    engine.plan_request("inference", [key("b")])
    engine.plan_request("inference", [key("a")])

    # Execute
    plan = engine.plan_request("inference", [key("c")])

    # Assert
    assert [(m.key, m.function_id) for m in plan.evictions] == [(key("b"), "cache-0")]
    assert [f.key for f in plan.misses] == [key("c")]
    assert engine.lookup(key("b")) == [] and engine.lookup(key("a")) == ["cache-0"]
    assert engine.usage() == {"cache-0": 200}


def test_static_policy_never_evicts_and_leaves_the_rest_unplaced(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare
    engine = make_engine(functions=["cache-0"], budget_bytes=250, replicas=0,
                         overrides={"inference": "static"})
    engine.register_workloads(T, J, ["inference"])
    for c in "abc":
        engine.ingest(key(c), 100)

    # Execute
    plan = engine.plan_request("inference", [key("c")])

    # Assert
    assert set(engine.resident(T, J)) == {key("a"), key("b")}
    assert plan.unplaced == (key("c"),) and plan.evictions == ()


def test_data_larger_than_any_budget_stays_in_the_persistent_store(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare
    engine = make_engine(budget_bytes=250)
    engine.register_workloads(T, J, ["malicious-filter"])

    # Execute
    result = engine.ingest(key("a"), 251)

    # Assert
    assert not result.cached and engine.usage() == {"cache-0": 0, "cache-1": 0, "cache-2": 0}


def test_replica_is_skipped_when_no_other_function_has_room(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare: cache-1 is too small for the update.
    engine = make_engine(functions=["cache-0", "cache-1"],
                         budget_bytes={"cache-0": 1000, "cache-1": 50})
    engine.register_workloads(T, J, ["malicious-filter"])

    # Execute
    result = engine.ingest(key("a"), 100)

    # Assert
    assert result.functions == ("cache-0",)
