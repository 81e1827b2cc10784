"""P3 (one client across rounds) and P4 (metadata of the last k rounds): placement,
prefetch and eviction on small hand-written traces."""

from __future__ import annotations

from cache_engine.catalog import InMemoryCatalog
from cache_engine.keys import DataKey
from cache_engine.policies import P3ClientAcrossRounds
from cache_engine.simulate import Ingest, Request, Simulator

T, J = "t", "j"
# Client "c" takes part in rounds 1, 4, 6 and 9; "d" in every round.
PARTICIPATION = {r: ("c", "d") if r in (1, 4, 6, 9) else ("d",) for r in range(10)}


def upd(rnd: int, client: str) -> DataKey:
    return DataKey.update(T, J, rnd, client)


def meta(rnd: int) -> DataKey:
    return DataKey.meta(T, J, rnd)


def resident(sim: Simulator, client: str | None = None) -> set[DataKey]:
    return {k for k in sim.cache.resident_of_job(T, J) if client is None or k.client == client}


def ingest(sim: Simulator, rounds: range) -> None:
    for r in rounds:
        for c in PARTICIPATION[r]:
            sim.feed(Ingest(upd(r, c)))
        sim.feed(Ingest(meta(r)))


def test_p3_prefetches_the_clients_previous_and_next_participation() -> None:
    # Prepare
    catalog = InMemoryCatalog()
    for r, clients in PARTICIPATION.items():
        for c in clients:
            catalog.add(upd(r, c))
    state: dict = {}

    # Execute
    plan = P3ClientAcrossRounds().on_request([upd(4, "c")], catalog, state, "provenance")

    # Assert
    assert plan.needed == (upd(4, "c"),)
    assert plan.prefetch == (upd(1, "c"), upd(6, "c"))
    assert state["tracked"] == [["c", "update", 4]]


ONLY_TRACKED = {"P3": {"keep_latest_rounds": 0}}


def test_p3_walk_backwards_hits_and_evicts_the_clients_data_outside_the_window() -> None:
    # Prepare
    sim = Simulator(100, policy_params=ONLY_TRACKED)
    sim.declare((T, J), ["lineage"])
    ingest(sim, range(10))

    # Execute
    outcomes = [sim.feed(Request("lineage", (upd(r, "c"),))) for r in (9, 6, 4, 1)]

    # Assert
    assert [o.hit for o in outcomes if o is not None] == [False, True, True, True]
    assert resident(sim) == {upd(1, "c"), upd(4, "c")}


def test_p3_a_followed_clients_next_update_is_hot_on_ingest_and_others_are_not() -> None:
    # Prepare
    sim = Simulator(100, policy_params=ONLY_TRACKED)
    sim.declare((T, J), ["provenance"])
    ingest(sim, range(2))
    sim.feed(Request("provenance", (upd(1, "c"),)))

    # Execute
    ingest(sim, range(2, 5))
    followed = sim.feed(Request("provenance", (upd(4, "c"),)))

    # Assert
    assert followed is not None and followed.hit
    assert resident(sim, "d") == set()
    assert resident(sim, "c") == {upd(1, "c"), upd(4, "c")}


def test_p3_follows_at_most_max_tracked_clients() -> None:
    # Prepare
    policy = P3ClientAcrossRounds(max_tracked=2, keep_latest_rounds=0)
    catalog = InMemoryCatalog()
    keys = [upd(0, c) for c in ("a", "b", "e")]
    for key in keys:
        catalog.add(key)
    state: dict = {}

    # Execute
    for key in keys:
        policy.on_request([key], catalog, state, "provenance")

    # Assert
    assert policy.wanted(keys, catalog, state) == {upd(0, "b"), upd(0, "e")}


def test_p3_keeps_the_latest_round_hot_so_a_new_session_on_it_hits() -> None:
    # Prepare
    sim = Simulator(100)
    sim.declare((T, J), ["provenance"])

    # Execute
    ingest(sim, range(9))
    before = resident(sim)
    first = sim.feed(Request("provenance", (upd(8, "d"),)))
    ingest(sim, range(9, 10))

    # Assert
    assert before == {upd(8, "d")}  # only the latest round; older untracked data is cold
    assert first is not None and first.hit
    # Round 9 is now the latest; "d" is followed: its window around round 8 stays.
    assert resident(sim) == {upd(8, "d"), upd(9, "c"), upd(9, "d"), upd(7, "d")}


def test_p4_keeps_metadata_of_the_last_k_rounds() -> None:
    # Prepare
    sim = Simulator(100, policy_params={"P4": {"k": 3}})
    sim.declare((T, J), ["hyperparameters"])

    # Execute
    ingest(sim, range(10))

    # Assert
    assert resident(sim) == {meta(7), meta(8), meta(9)}


def test_p4_request_refills_the_window_and_old_metadata_is_not_kept() -> None:
    # Prepare
    sim = Simulator(100, policy_params={"P4": {"k": 3}})
    sim.declare((T, J), ["hyperparameters"])
    ingest(sim, range(10))
    sim.cache.evict(meta(7))
    sim.cache.evict(meta(8))

    # Execute
    recent = sim.feed(Request("hyperparameters", (meta(9),)))
    refilled = resident(sim)
    old = sim.feed(Request("hyperparameters", (meta(2),)))
    sim.feed(Ingest(meta(10)))

    # Assert
    assert recent is not None and recent.hit and recent.prefetched == (meta(7), meta(8))
    assert refilled == {meta(7), meta(8), meta(9)}
    assert old is not None and not old.hit
    assert resident(sim) == {meta(8), meta(9), meta(10)}
