"""Reclaimed functions: lookups fall back to replicas, lost data is re-placed (section 4.5)."""

from __future__ import annotations

from collections.abc import Callable

from cache_engine.engine import CacheEngine
from cache_engine.keys import DataKey
from cache_engine.results import Fetch

T, J = "acme", "job-1"
KEY = DataKey.update(T, J, 0, "a")


def test_lost_primary_falls_back_to_the_replica(make_engine: Callable[..., CacheEngine]) -> None:
    # Prepare
    engine = make_engine()
    engine.register_workloads(T, J, ["malicious-filter"])
    engine.ingest(KEY, 100)
    primary, replica = engine.lookup(KEY)

    # Execute
    lost = engine.mark_function_lost(primary)
    plan = engine.plan_request("malicious-filter", [KEY])

    # Assert
    assert lost.degraded == (KEY,) and lost.dropped == ()
    assert engine.lookup(KEY) == [replica]
    assert plan.hit and plan.resident == {KEY: (replica,)}
    assert engine.usage()[primary] == 0


def test_data_lost_with_its_only_copy_is_a_miss_and_restore_refills_it(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare
    engine = make_engine(replicas=0)
    engine.register_workloads(T, J, ["malicious-filter"])
    engine.ingest(KEY, 100)
    [holder] = engine.lookup(KEY)

    # Execute
    lost = engine.mark_function_lost(holder)
    holders_after_loss = engine.lookup(KEY)
    fetches = engine.restore(lost.dropped)

    # Assert: the empty function is the least loaded again, so it is refilled.
    assert lost.dropped == (KEY,) and holders_after_loss == []
    assert fetches == (Fetch(KEY, (holder,)),)
    assert engine.lookup(KEY) == [holder]


def test_restore_tops_up_replicas_and_skips_data_no_policy_wants(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare
    engine = make_engine()
    engine.register_workloads(T, J, ["malicious-filter"])
    engine.ingest(KEY, 100)
    for r in (1, 2):
        engine.ingest(DataKey.update(T, J, r, "a"), 100)
    primary, replica = engine.lookup(DataKey.update(T, J, 2, "a"))
    engine.mark_function_lost(primary)

    # Execute
    fetches = engine.restore([DataKey.update(T, J, 2, "a"), KEY])

    # Assert: round 0 was evicted as old; round 2 gets its second copy back.
    assert len(fetches) == 1 and fetches[0].key == DataKey.update(T, J, 2, "a")
    assert replica not in fetches[0].functions
    assert len(engine.lookup(DataKey.update(T, J, 2, "a"))) == 2
    assert engine.lookup(KEY) == []


def test_release_forgets_one_copy(make_engine: Callable[..., CacheEngine]) -> None:
    # Prepare
    engine = make_engine()
    engine.register_workloads(T, J, ["malicious-filter"])
    engine.ingest(KEY, 100)
    primary, replica = engine.lookup(KEY)

    # Execute
    engine.release(KEY, primary)

    # Assert
    assert engine.lookup(KEY) == [replica]
    assert engine.usage()[primary] == 0
