"""CacheEngine.plan_request: resident data, misses, prefetch, counters (real Redis)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cache_engine.engine import CacheEngine
from cache_engine.keys import DataKey
from cache_engine.results import Fetch
from fedfaas.errors import BadRequest

T, J = "acme", "job-1"


def upd(rnd: int, client: str) -> DataKey:
    return DataKey.update(T, J, rnd, client)


def ingest_rounds(engine: CacheEngine, rounds: range) -> None:
    for r in rounds:
        for c in ("a", "b"):
            engine.ingest(upd(r, c), 100)


def test_latest_round_is_resident_for_a_p2_workload(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare
    engine = make_engine(replicas=0)
    engine.register_workloads(T, J, ["malicious-filter"])
    ingest_rounds(engine, range(3))

    # Execute
    plan = engine.plan_request("malicious-filter", [upd(2, "a")])

    # Assert
    assert plan.hit and plan.policy == "P2"
    assert set(plan.resident) == {upd(2, "a"), upd(2, "b")}
    assert plan.resident[upd(2, "a")] == tuple(engine.lookup(upd(2, "a")))
    assert plan.misses == () and plan.prefetch == ()
    assert engine.stats(T) == {"P2": {"hits": 1, "misses": 0}}


def test_debugging_an_old_round_fetches_it_and_prefetches_the_next(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare
    engine = make_engine(replicas=0)
    engine.register_workloads(T, J, ["debugging"])
    ingest_rounds(engine, range(6))

    # Execute
    first = engine.plan_request("debugging", [upd(1, "a"), upd(1, "b")])
    second = engine.plan_request("debugging", [upd(2, "a"), upd(2, "b")])

    # Assert
    assert not first.hit
    assert [f.key for f in first.misses] == [upd(1, "a"), upd(1, "b")]
    assert [f.key for f in first.prefetch] == [upd(2, "a"), upd(2, "b")]
    assert all(len(f.functions) == 1 for f in first.misses + first.prefetch)
    assert second.hit
    assert [f.key for f in second.prefetch] == [upd(3, "a"), upd(3, "b")]
    assert sorted(m.key for m in second.evictions) == [upd(1, "a"), upd(1, "b")]
    assert engine.lookup(upd(1, "a")) == []
    assert engine.stats(T) == {"P2": {"hits": 1, "misses": 1}}
    body = second.to_json()
    assert body["hit"] and sorted(body["resident"]) == ["acme:job-1:update:2:a",
                                                        "acme:job-1:update:2:b"]
    assert [f["key"] for f in body["prefetch"]] == ["acme:job-1:update:3:a",
                                                    "acme:job-1:update:3:b"]


def test_first_request_registers_the_workload_and_later_ingests_follow_its_policy(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare
    engine = make_engine()
    engine.ingest(upd(0, "a"), 100)

    # Execute
    plan = engine.plan_request("provenance", [upd(0, "a")])
    followed = engine.ingest(upd(5, "a"), 100)
    latest = engine.ingest(upd(5, "b"), 100)
    older = engine.ingest(upd(3, "b"), 100)

    # Assert
    assert not plan.hit and plan.misses == (Fetch(upd(0, "a"), ("cache-0", "cache-1")),)
    # P3 follows the requested client; the latest round is hot for new sessions;
    # an untracked client's older update is not.
    assert followed.cached and latest.cached and not older.cached


def test_job_overrides_change_the_policy_of_a_workload(
    make_engine: Callable[..., CacheEngine],
) -> None:
    # Prepare
    engine = make_engine()
    mapping = engine.register_workloads(T, J, ["debugging"], overrides={"debugging": "lru"})
    ingest_rounds(engine, range(2))

    # Execute
    plan = engine.plan_request("debugging", [upd(0, "a")])

    # Assert
    assert mapping == {"debugging": "lru"}
    assert plan.policy == "lru" and [f.key for f in plan.misses] == [upd(0, "a")]


def test_data_never_ingested_cannot_be_placed(make_engine: Callable[..., CacheEngine]) -> None:
    # Execute
    plan = make_engine().plan_request("inference", [DataKey.model(T, J, 9)])

    # Assert
    assert not plan.hit and plan.unplaced == (DataKey.model(T, J, 9),) and plan.misses == ()


def test_bad_requests_are_rejected(make_engine: Callable[..., CacheEngine]) -> None:
    engine = make_engine()
    with pytest.raises(BadRequest):
        engine.plan_request("no-such-workload", [upd(0, "a")])
    with pytest.raises(BadRequest):
        engine.plan_request("debugging", [])
    with pytest.raises(BadRequest):
        engine.plan_request("debugging", [upd(0, "a"), DataKey.update(T, "job-2", 0, "a")])
