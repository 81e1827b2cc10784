"""JIT's warm hold: when it applies, its window and pings by hand, and what it buys in a replay."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from fedfaas.errors import BadRequest
from fedfaas.jit.clock import VirtualClock
from fedfaas.jit.cost import CostModel
from fedfaas.jit.prewarm import WarmHold
from fedfaas.jit.service import JitService
from fedfaas.jit.simulator import ExplicitWorkload, SimConfig, simulate
from fedfaas.jit.spec import JobSpec, PartyProfile


@pytest.mark.parametrize(("keep_alive", "cold", "target", "expected"), [
    (None, 1.0, 0.3, None),              # instances never stop
    (3.0, 0.0, 0.3, None),               # nothing to wait for
    (3.0, 1.0, 1.5, None),               # a cold start and a step fit the allowance
    (3.0, 1.0, 0.3, WarmHold(1.0, 1.0)),
    (3.0, 1.0, None, WarmHold(1.0, 1.0)),  # "fastest"
    (0.3, 1.0, 0.3, WarmHold(1.0, 0.2)),   # pings no faster than MIN_PING_S
])
def test_plan(keep_alive: float | None, cold: float, target: float | None,
              expected: WarmHold | None) -> None:
    assert WarmHold.plan(cold_start_s=cold, keep_alive_s=keep_alive, target_latency=target,
                         step_s=0.2) == expected


def test_window_opens_a_cold_start_before_the_latest_early_bound_of_the_missing() -> None:
    hold = WarmHold(cold_start_s=1.0, ping_s=1.0)
    early, late = np.array([2.0, 5.0, 0.0]), np.array([3.0, 7.0, 10.0])
    assert hold.window(early, late, np.array([True, True, True])) == (4.0, 10.0)
    assert hold.window(early, late, np.array([True, False, False])) == (1.0, 3.0)
    assert hold.window(early, late, np.array([False, False, False])) is None
    assert hold.due(4.0, early, late, np.array([True, True, True]))
    assert not hold.due(3.9, early, late, np.array([True, True, True]))


def test_pings_follow_the_window_as_parties_arrive() -> None:
    hold = WarmHold(cold_start_s=1.0, ping_s=1.0)
    early, late = np.array([2.0, 5.0, 0.0]), np.array([3.0, 7.0, 10.0])
    # Window (4, 10) until party 1 arrives at 6; then (-1, 10) for the intermittent party 2,
    # which arrives at 8 and closes the round.
    pings = hold.pings(np.array([2.5, 6.0, 8.0]), early, late)
    assert pings.tolist() == [4.0, 5.0, 6.0, 7.0]


def test_pings_stop_at_the_late_bound_of_a_party_that_overruns_it() -> None:
    hold = WarmHold(cold_start_s=1.0, ping_s=1.0)
    pings = hold.pings(np.array([20.0]), np.array([5.0]), np.array([7.0]))
    assert pings.tolist() == [4.0, 5.0, 6.0, 7.0]


def test_a_hold_is_validated() -> None:
    with pytest.raises(BadRequest):
        WarmHold(cold_start_s=1.0, ping_s=0.0)
    with pytest.raises(BadRequest):
        WarmHold(cold_start_s=float("nan"), ping_s=1.0)


# io = M / b_dc = 0.1 s, fusion negligible
COST = CostModel(cold_start_s=1.0, keep_alive_s=2.0, b_dc=1e4, fusion_bw=1e15)


def test_the_hold_buys_a_warm_last_update_in_the_keep_alive_replay() -> None:
    # Prepare: two parties with known epochs, due 4 s and 10 s into each round, rounds
    # far enough apart that the instance of one round has gone by the next.
    parties = tuple(PartyProfile(party_id=f"p{i}", t_epoch=t, b_down=1e6, b_up=1e6)
                    for i, t in enumerate((4.0, 10.0)))
    offsets = np.tile([4.0, 10.0], (4, 1)) + np.array([[0.0, 0.1], [0.05, -0.1], [0.0, 0.0],
                                                         [-0.05, 0.1]])
    wl = ExplicitWorkload(parties, offsets, model_bytes=1000, open_delay_s=5.0)
    held = SimConfig.replay(wl, "jit", cost=COST)
    # A numeric target that a cold start fits: no hold.
    unheld = dataclasses.replace(held, latency_target=5.0)
    # Execute
    with_hold, without = simulate(held), simulate(unheld)
    # Assert: with the hold no round pays a cold start after its last update
    assert with_hold.latencies.max() < COST.cold_start_s
    assert without.latencies.mean() > COST.cold_start_s
    # ...for a little warm waiting per round, far from eager's cost
    eager = simulate(SimConfig.replay(wl, "eager-serverless", cost=COST))
    assert without.container_s < with_hold.container_s < 0.6 * eager.container_s


MB = 10**6


@pytest.fixture()
def service(redis_url: str) -> Iterator[JitService]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    ns = f"jit-warm-{uuid.uuid4().hex[:8]}"
    try:
        yield JitService(client, namespace=ns, clock=VirtualClock(), owner="gw-1")
    finally:
        for key in client.scan_iter(f"{ns}:*"):
            client.delete(key)
        client.close()


def test_service_says_when_a_round_is_due_a_ping(service: JitService) -> None:
    # Prepare: a 1 MB model over 10 MB/s links (t_comm 0.2 s) and epochs of 5 and 7 s, close
    # enough for eager's instance to be warm for the last update
    job = JobSpec(job_id="job-w", model_bytes=MB, strategy="jit", cold_start_s=1.0,
                  keep_alive_s=3.0)
    parties = [PartyProfile(party_id=p, t_epoch=t, b_down=10 * MB, b_up=10 * MB)
               for p, t in (("fast", 5.0), ("slow", 7.0))]
    _, est = service.start_round(job, parties, 0, now=100.0, t_pair=0.0)
    begin = float(est.t_upd_early.max()) - 1.0
    # Execute / Assert: the window opens a cold start before the slow party's early bound
    assert service.warm_due("job-w", 0, now=100.0 + begin - 0.1) is None
    assert service.warm_due("job-w", 0, now=100.0 + begin + 0.1) == pytest.approx(1.0)
    # ...and closes with the round's last update
    for pid, off in (("fast", 5.2), ("slow", 7.2)):
        service.record_arrival("job-w", 0, pid, pid, now=100.0 + off)
    assert service.warm_due("job-w", 0, now=100.0 + 7.3) is None
    # Other strategies, and a target a cold start fits, hold nothing.
    service.start_round(dataclasses.replace(job, job_id="job-l", strategy="lazy"), parties, 0,
                        now=100.0, t_pair=0.0)
    service.start_round(dataclasses.replace(job, job_id="job-n", latency_target=5.0), parties, 0,
                        now=100.0, t_pair=0.0)
    assert service.warm_due("job-l", 0, now=100.0 + begin + 0.1) is None
    assert service.warm_due("job-n", 0, now=100.0 + begin + 0.1) is None
