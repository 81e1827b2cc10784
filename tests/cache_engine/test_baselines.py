"""Baselines (section 5.4, appendix C): LRU, LFU and FIFO eviction order, static fill, random choice."""

from __future__ import annotations

import pytest

from cache_engine.baselines import RandomPolicy
from cache_engine.catalog import InMemoryCatalog
from cache_engine.keys import DataKey
from cache_engine.simulate import Ingest, Request, Simulator

T, J = "t", "j"
A, B, C, D = (DataKey.update(T, J, 0, c) for c in "abcd")


def replay(policy: str, capacity: int, requested: list[DataKey], **params: object) -> Simulator:
    sim = Simulator(capacity, policy=policy, policy_params={policy: params} if params else None)
    for key in (A, B, C, D):
        sim.feed(Ingest(key))
    for key in requested:
        sim.feed(Request("debugging", (key,)))
    return sim


def resident(sim: Simulator) -> set[DataKey]:
    return set(sim.cache.resident_of_job(T, J))


@pytest.mark.parametrize(
    ("policy", "requests", "expected"),
    [
        ("lru", [A, B, A, C], {A, C}),   # B is least recently used
        ("lfu", [A, B, A, B, C, A, C, D], {A, D}),  # C (2 uses, older) loses to B? no: B, C have 2; C newer
        ("fifo", [A, B, A, C], {B, C}),  # A came first
    ],
)
def test_traditional_policies_evict_in_their_order(
    policy: str, requests: list[DataKey], expected: set[DataKey]
) -> None:
    # Execute
    sim = replay(policy, 2, requests)

    # Assert
    assert resident(sim) == expected
