"""The simulator's hit definition and capacity accounting."""

from __future__ import annotations

import random

import pytest

from cache_engine.keys import DataKey
from cache_engine.simulate import Ingest, Request, Simulator, TraceEvent, simulate
from fedfaas.errors import BadRequest

T, J = "t", "j"


def upd(rnd: int, client: str) -> DataKey:
    return DataKey.update(T, J, rnd, client)


def test_a_request_hits_only_when_all_it_needs_is_resident() -> None:
    # Prepare: demand-filled LRU holds only upd(0,a) when the two-key request arrives.
    trace: list[TraceEvent] = [Ingest(upd(0, "a")), Ingest(upd(0, "b")),
             Request("debugging", (upd(0, "a"),)),
             Request("debugging", (upd(0, "a"), upd(0, "b"))),
             Request("debugging", (upd(0, "a"), upd(0, "b")))]

    # Execute
    result = simulate(trace, 10, policy="lru")

    # Assert
    assert (result.hits, result.requests) == (1, 3)
    assert result.per_workload == {"debugging": [1, 3]}
    assert result.fetched == 2


def test_usage_never_exceeds_capacity_and_sizes_are_counted() -> None:
    # Prepare
    rng = random.Random(1)
    sim = Simulator(5, policy="lfu")
    keys = [upd(r, c) for r in range(6) for c in "abc"]
    peak = 0

    # Execute
    for key in keys:
        sim.feed(Ingest(key, size=2))
    for _ in range(200):
        sim.feed(Request("debugging", (rng.choice(keys),)))
        peak = max(peak, sim.cache.used)

    # Assert
    assert peak == 4
    assert sum(1 for _ in sim.cache.resident_of_job(T, J)) == 2


def test_declared_workloads_are_active_before_their_first_request() -> None:
    # Prepare
    trace: list[TraceEvent] = [Ingest(upd(0, "a")), Request("malicious-filter", (upd(0, "a"),))]

    # Execute
    declared = simulate(trace, 4)
    undeclared = simulate(trace, 4, declared=[])

    # Assert
    assert declared.hit_rate == 1.0
    assert undeclared.hit_rate == 0.0


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(BadRequest):
        simulate([], 0)
    with pytest.raises(BadRequest):
        simulate([], 4, policy="belady")
    with pytest.raises(BadRequest):
        Request("debugging", ())
