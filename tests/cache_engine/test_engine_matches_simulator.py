"""The Redis engine and the in-memory simulator make the same decisions on the same trace."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from bench.flstore_trace import (
    JOB,
    TENANT,
    build_trace,
    p2_requests,
    p3_requests,
    p4_requests,
    participants,
)
from cache_engine.engine import CacheEngine
from cache_engine.registry import static_mapping
from cache_engine.simulate import Ingest, Simulator


@pytest.mark.parametrize("policy", [None, "lru", "lfu", "fifo"])
def test_engine_hits_match_the_simulator_on_a_mixed_trace(
    make_engine: Callable[..., CacheEngine], policy: str | None
) -> None:
    # Prepare: 24 rounds of 4 clients from a pool of 12; one function of 30 entries.
    rounds = 24
    parts = [p[:4] for p in participants(rounds, random.Random(3))]
    streams = [fn(parts, random.Random(4)) for fn in (p2_requests, p3_requests, p4_requests)]
    merged = [[req for s in streams for req in s[r]] for r in range(rounds)]
    trace = build_trace(parts, merged)
    workloads = sorted({e.workload for e in trace if not isinstance(e, Ingest)})
    capacity = 30
    sim = Simulator(capacity, policy=policy)
    sim.declare((TENANT, JOB), workloads)
    overrides = static_mapping(policy) if policy else None
    engine = make_engine(functions=["cache-0"], budget_bytes=capacity, replicas=0,
                         overrides=overrides)
    engine.register_workloads(TENANT, JOB, workloads)

    # Execute
    sim_hits, engine_hits = [], []
    for event in trace:
        if isinstance(event, Ingest):
            sim.feed(event)
            engine.ingest(event.key, event.size)
            continue
        outcome = sim.feed(event)
        assert outcome is not None
        sim_hits.append(outcome.hit)
        engine_hits.append(engine.plan_request(event.workload, event.keys).hit)

    # Assert
    assert engine_hits == sim_hits
    assert set(engine.resident(TENANT, JOB)) == set(sim.cache.resident_of_job(TENANT, JOB))
    assert 0 < sum(sim_hits) < len(sim_hits)
