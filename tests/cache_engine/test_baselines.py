"""Baselines (section 5.4, appendix C): LRU, LFU and FIFO eviction order, static fill, random choice."""

from __future__ import annotations

import pytest

from cache_engine.baselines import RandomPolicy
from cache_engine.catalog import InMemoryCatalog
from cache_engine.keys import DataKey
from cache_engine.policies import PolicyState
from cache_engine.simulate import Ingest, Request, Simulator

T, J = "t", "j"
A, B, C, D = (DataKey.update(T, J, 0, c) for c in "abcd")


def replay(policy: str, capacity: int, requested: list[DataKey], **params: object) -> Simulator:
    sim = Simulator(capacity, policy=policy, policy_params={policy: params} if params else None)
    sim.declare((T, J), ["debugging"])
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
        ("lru", [A, B, A, C], {A, C}),  # B is the least recently used
        ("lru", [A, A, B, C], {B, C}),  # A is older, however often used
        ("lfu", [A, A, B, C], {A, C}),  # B is used least often
        ("lfu", [A, B, C], {B, C}),  # equal counts: the least recently used goes
        ("fifo", [A, B, A, C], {B, C}),  # A came first, however recently used
    ],
)
def test_traditional_policies_evict_in_their_order(
    policy: str, requests: list[DataKey], expected: set[DataKey]
) -> None:
    # Execute
    sim = replay(policy, 2, requests)

    # Assert
    assert resident(sim) == expected


def test_traditional_policies_fill_on_demand_unless_write_allocate() -> None:
    # Execute
    demand = replay("lru", 3, [])
    write_allocate = replay("lru", 3, [], admit_on_ingest=True)

    # Assert
    assert resident(demand) == set()
    assert resident(write_allocate) == {B, C, D}


def test_static_fills_first_come_then_never_changes() -> None:
    # Execute
    sim = replay("static", 2, [D, A])
    outcome = sim.feed(Request("debugging", (C,)))

    # Assert
    assert resident(sim) == {A, B}
    assert outcome is not None and not outcome.hit and outcome.unplaced == (C,)


def test_random_choice_is_seeded_and_delegates_to_one_of_p1_to_p4() -> None:
    # Prepare
    catalog = InMemoryCatalog()
    for key in (A, B):
        catalog.add(key)

    def draws(seed: int) -> list[str]:
        policy, state = RandomPolicy(seed=seed), PolicyState()
        picks = []
        for _ in range(40):
            policy.on_request([A], catalog, state, "inference")
            picks.append(state["current"])
        return picks

    # Execute
    first, again, other = draws(7), draws(7), draws(8)

    # Assert
    assert first == again
    assert first != other
    assert set(first) == {"P1", "P2", "P3", "P4"}


def test_random_choice_plans_like_the_policy_it_picked() -> None:
    # Prepare
    catalog = InMemoryCatalog()
    for key in (A, B):
        catalog.add(key)
    policy, state = RandomPolicy(seed=3), PolicyState()

    # Execute
    plans = {}
    for _ in range(40):
        plan = policy.on_request([A], catalog, state, "inference")
        plans[state["current"]] = plan.needed

    # Assert: P2 needs the whole round, the others only the requested update.
    assert plans == {"P1": (A,), "P2": (A, B), "P3": (A,), "P4": (A,)}
