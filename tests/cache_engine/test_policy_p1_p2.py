"""P1 (single client or aggregated model) and P2 (all updates in a round): placement,
prefetch and eviction on small hand-written traces."""

from __future__ import annotations

from cache_engine.catalog import InMemoryCatalog
from cache_engine.keys import DataKey
from cache_engine.policies import P2AllUpdatesInRound
from cache_engine.simulate import Ingest, Request, Simulator

T, J = "t", "j"


def upd(rnd: int, client: str) -> DataKey:
    return DataKey.update(T, J, rnd, client)


def model(rnd: int) -> DataKey:
    return DataKey.model(T, J, rnd)


def resident(sim: Simulator) -> set[DataKey]:
    return set(sim.cache.resident_of_job(T, J))


def ingest_rounds(sim: Simulator, rounds: range, clients: tuple[str, ...] = ("a", "b")) -> None:
    for r in rounds:
        for c in clients:
            sim.feed(Ingest(upd(r, c)))
        sim.feed(Ingest(model(r)))


def test_p2_request_needs_the_whole_round_and_prefetches_the_next() -> None:
    # Prepare
    catalog = InMemoryCatalog()
    for key in (upd(1, "a"), upd(1, "b"), upd(2, "a"), upd(2, "c"), upd(3, "d")):
        catalog.add(key)
    state: dict = {}

    # Execute
    plan = P2AllUpdatesInRound().on_request([upd(1, "a")], catalog, state, "malicious-filter")

    # Assert
    assert plan.needed == (upd(1, "a"), upd(1, "b"))
    assert plan.prefetch == (upd(2, "a"), upd(2, "c"))
    assert state["windows"] == [["malicious-filter", 1, 3]]


def test_p2_keeps_the_latest_rounds_hot_on_ingest_and_evicts_older_ones() -> None:
    # Prepare
    sim = Simulator(100)
    sim.declare((T, J), ["malicious-filter"])

    # Execute
    ingest_rounds(sim, range(4))

    # Assert: latest two rounds of updates; models are not P2's business.
    assert resident(sim) == {upd(2, "a"), upd(2, "b"), upd(3, "a"), upd(3, "b")}


def test_p2_window_follows_a_debugging_walk_and_evicts_rounds_behind_it() -> None:
    # Prepare
    sim = Simulator(100)
    sim.declare((T, J), ["debugging"])
    ingest_rounds(sim, range(6))

    # Execute
    first = sim.feed(Request("debugging", (upd(1, "a"), upd(1, "b"))))
    after_first = resident(sim)
    second = sim.feed(Request("debugging", (upd(2, "a"), upd(2, "b"))))

    # Assert
    assert first is not None and not first.hit
    assert after_first == {upd(r, c) for r in (1, 2, 4, 5) for c in "ab"}
    assert second is not None and second.hit
    assert resident(sim) == {upd(r, c) for r in (2, 3, 4, 5) for c in "ab"}


def test_p2_idle_window_stops_protecting_its_rounds() -> None:
    # Prepare
    policy = P2AllUpdatesInRound(keep_latest_rounds=1, window_idle_rounds=2)
    catalog = InMemoryCatalog()
    catalog.add(upd(0, "a"))
    state: dict = {}
    policy.on_request([upd(0, "a")], catalog, state, "debugging")

    # Execute
    catalog.add(upd(2, "a"))
    kept_while_fresh = policy.wanted([upd(0, "a")], catalog, state)
    catalog.add(upd(3, "a"))
    kept_when_idle = policy.wanted([upd(0, "a")], catalog, state)

    # Assert
    assert kept_while_fresh == {upd(0, "a")}
    assert kept_when_idle == set()


def test_p1_keeps_the_latest_aggregated_models_hot() -> None:
    # Prepare
    sim = Simulator(100)
    sim.declare((T, J), ["inference"])

    # Execute
    ingest_rounds(sim, range(4))

    # Assert
    assert resident(sim) == {model(2), model(3)}


def test_p1_keeps_the_most_recently_requested_single_updates() -> None:
    # Prepare
    sim = Simulator(100, policy_params={"P1": {"max_singles": 2}})
    ingest_rounds(sim, range(2))

    # Execute
    outcomes = [sim.feed(Request("inference", (key,)))
                for key in (upd(0, "a"), upd(0, "b"), upd(0, "a"), upd(1, "a"))]

    # Assert: the third request hits; upd(0,b) is evicted once two newer singles exist.
    # The models arrived before the job issued any P1 workload, so they stayed cold.
    assert [o.hit for o in outcomes if o is not None] == [False, False, True, False]
    assert resident(sim) == {upd(0, "a"), upd(1, "a")}
