"""JIT's warm hold: when it applies, its window and pings by hand, and what it buys in a replay."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
import pytest

from bench.jit.cost import CostModel
from bench.jit.simulator import ExplicitWorkload, SimConfig, simulate
from fedfaas.errors import BadRequest
from fedfaas.jit.learning import CURVE_LEVELS
from fedfaas.jit.prewarm import Participation, WarmHold
from fedfaas.jit.service import JitService
from fedfaas.jit.spec import EstimatorJob, PartyTiming


@pytest.mark.parametrize(("keep_alive", "cold", "target", "expected"), [
    (None, 1.0, 0.3, None),              # instances never stop
    (3.0, 0.0, 0.3, None),               # nothing to wait for
    (3.0, 1.0, 1.5, None),               # a cold start and a step fit the allowance
    (3.0, 1.0, 0.3, WarmHold(1.0, 3.0, 1.0)),
    (3.0, 1.0, None, WarmHold(1.0, 3.0, 1.0)),  # "fastest"
    (0.3, 1.0, 0.3, WarmHold(1.0, 0.3, 0.2)),   # pings no faster than MIN_PING_S
    (2.0, 1.0, 0.3, WarmHold(1.0, 2.0, 1.0)),   # no faster than a cold start
    (2.0, 1.5, 0.3, WarmHold(1.5, 2.0, 1.0)),   # ...up to half the keep-alive
])
def test_plan(keep_alive: float | None, cold: float, target: float | None,
              expected: WarmHold | None) -> None:
    assert WarmHold.plan(cold_start_s=cold, keep_alive_s=keep_alive, target_latency=target,
                         step_s=0.2) == expected


def test_window_opens_a_cold_start_before_the_latest_early_bound_of_the_missing() -> None:
    hold = WarmHold(cold_start_s=1.0, keep_alive_s=3.0, ping_s=1.0)
    early, late = np.array([2.0, 5.0, 0.0]), np.array([3.0, 7.0, 10.0])
    everyone = np.array([True, True, True])
    assert hold.window(early, late, everyone) == (4.0, 10.0)
    assert hold.window(early, late, np.array([True, False, False])) == (1.0, 3.0)
    assert hold.window(early, late, np.array([False, False, False])) is None
    assert hold.due(4.0, early, late, everyone, last_arrival=2.0, since_ping=None)
    assert not hold.due(3.9, early, late, everyone, last_arrival=2.0, since_ping=None)


def test_the_hold_lasts_while_eagers_instance_would_be_warm() -> None:
    hold = WarmHold(cold_start_s=1.0, keep_alive_s=3.0, ping_s=1.0)
    early, late, everyone = np.array([5.0]), np.array([20.0]), np.array([True])
    # Cold: start it, if an update came within the keep-alive (eager would still be warm).
    assert hold.due(6.0, early, late, everyone, last_arrival=3.5, since_ping=None)
    assert not hold.due(6.6, early, late, everyone, last_arrival=3.5, since_ping=None)
    # Warm: ping again only if an update came since, to keep it as long as eager's.
    assert not hold.due(6.0, early, late, everyone, last_arrival=3.5, since_ping=1.0)
    assert hold.due(6.0, early, late, everyone, last_arrival=5.5, since_ping=1.0)


def test_pings_follow_the_window_and_the_updates() -> None:
    hold = WarmHold(cold_start_s=1.0, keep_alive_s=3.0, ping_s=1.0)
    early, late = np.array([2.0, 5.0, 0.0]), np.array([3.0, 7.0, 10.0])
    # Window (4, 10) once party 0 arrived at 2.5: a ping starts the instance at 4, warm
    # until 7; party 1 arrives at 6 and is pinged for, which keeps it warm until 9, past
    # the intermittent party 2 at 8, the last update.
    pings = hold.pings(np.array([2.5, 6.0, 8.0]), early, late)
    assert pings.tolist() == [4.0, 6.0]


def test_no_pings_where_eagers_instance_would_have_stopped() -> None:
    hold = WarmHold(cold_start_s=1.0, keep_alive_s=3.0, ping_s=1.0)
    # The window opens at 8, 7 s after the latest update: eager starts cold at 10 too.
    assert hold.pings(np.array([1.0, 10.0]), np.array([0.5, 9.0]),
                      np.array([2.0, 12.0])).size == 0


def test_pings_stop_at_the_late_bound_of_a_party_that_overruns_it() -> None:
    hold = WarmHold(cold_start_s=1.0, keep_alive_s=10.0, ping_s=1.0)
    # Window (4, 8) for both; party 1 arrives at 9, when party 0's window closed at 7.
    pings = hold.pings(np.array([20.0, 9.0]), np.array([5.0, 0.0]), np.array([7.0, 8.0]))
    assert pings.tolist() == [4.0]


@pytest.mark.parametrize(("p_skipper", "expected"), [(0.6, [3.0, 5.0]), (0.4, [])])
def test_the_hold_waits_only_for_a_round_likely_to_complete_by_an_update(
        p_skipper: float, expected: list[float]) -> None:
    hold = WarmHold(cold_start_s=1.0, keep_alive_s=3.0, ping_s=1.0)
    # An active party due at 4-6 s (arrives at 5), and two intermittent ones (t_wait 100 s,
    # so hardly any of their usual arrival time passes): one that arrives at 2 and one that
    # skips this round (NaN), sending in a share p_skipper of rounds.
    actual = np.array([5.0, np.nan, 2.0])
    early, late = np.array([4.0, 0.0, 0.0]), np.array([6.0, 100.0, 100.0])
    participation = Participation(np.array([1.0, p_skipper, 0.9]),
                                  np.array([False, True, True]), t_wait=100.0)
    # Execute / Assert: p_skipper 0.6 -> the round completes by an update with odds ~0.54
    # at the start, so the hold opens at 3 and pings once more after the update at 5;
    # 0.4 -> at most 0.4: the round is left to end at t_wait (JIT's timer).
    assert hold.pings(actual, early, late, participation).tolist() == expected


def test_a_missing_intermittent_party_is_less_likely_to_send_as_its_time_passes() -> None:
    # p = 0.75, arrivals uniform over t_wait = 10 s: p (1 - F) / (1 - p F)
    uniform = Participation(np.array([0.75]), np.array([True]), t_wait=10.0)
    missing = np.array([True])
    assert uniform.completion_odds(0.0, missing) == pytest.approx(0.75)
    assert uniform.completion_odds(5.0, missing) == pytest.approx(0.375 / 0.625)
    assert uniform.completion_odds(8.0, missing) == pytest.approx(0.15 / 0.4)
    assert uniform.completion_odds(10.0, missing) == 0.0
    # A learned curve: every update by 40% of t_wait, so at 4 s a missing party skips.
    early = Participation(np.array([0.75]), np.array([True]),
                          curve=np.linspace(0.0, 0.4, CURVE_LEVELS.size), t_wait=10.0)
    assert early.completion_odds(2.0, missing) == pytest.approx(0.375 / 0.625)
    assert early.completion_odds(4.0, missing) == 0.0
    # ...unless it has always sent: then its update is late, not skipped.
    always = dataclasses.replace(early, rate=np.array([1.0]))
    assert always.completion_odds(6.0, missing) == 1.0
    # Active parties count at their rate; parties not missing do not count.
    mixed = Participation(np.array([0.9, 0.5]), np.array([False, True]), t_wait=10.0)
    assert mixed.completion_odds(5.0, np.array([True, False])) == pytest.approx(0.9)
    restored = Participation.from_dict(json.loads(json.dumps(early.to_dict())))
    assert restored.completion_odds(2.0, missing) == early.completion_odds(2.0, missing)


def test_the_timers_launch_is_prewarmed_when_a_cold_one_would_be_late() -> None:
    # Prepare: party 0 came at 2; intermittent party 1 sends in one round of five, so
    # the round will likely end at t_wait = 10 and the hold never pings for it. The
    # timer launches at 9.5: a cold start (1 s) from there ends after 10.
    hold = WarmHold(cold_start_s=1.0, keep_alive_s=3.0, ping_s=1.0)
    part = Participation(np.array([1.0, 0.2]), np.array([False, True]), t_wait=10.0)
    early, late = np.array([1.5, 0.0]), np.array([2.5, 10.0])
    actual = np.array([2.0, np.nan])
    missing = np.array([False, True])
    launch = hold.prewarmed_launch(9.5, 10.0)
    # Execute / Assert: one ping a cold start before the launch, and only then.
    assert launch == 9.5
    assert hold.pings(actual, early, late, part).size == 0
    assert hold.pings(actual, early, late, part, launch=launch).tolist() == [8.5]
    due = functools.partial(hold.due, early=early, late=late, missing=missing, last_arrival=2.0,
                            participation=part, launch=launch)
    assert [due(t, since_ping=None) for t in (8.4, 8.6, 9.4, 9.6)] == [False, True, True, False]
    assert not due(8.6, since_ping=0.1)  # pinged at 8.5: warm for the launch
    # A launch with a cold start to spare before the close needs none.
    assert hold.prewarmed_launch(5.0, 10.0) is None
    # Nor does a launch that a ping keeps warm: the hold's ping at 4.5 (a cold start
    # before party 1's early bound) keeps the instance until 7.5, past the launch.
    assert hold.pings(np.array([2.0, 6.0]), np.array([1.5, 5.5]), np.array([2.5, 6.5]),
                      launch=hold.prewarmed_launch(5.8, 6.0)).tolist() == [4.5]


def test_a_hold_is_validated() -> None:
    with pytest.raises(BadRequest):
        WarmHold(cold_start_s=1.0, keep_alive_s=3.0, ping_s=0.0)
    with pytest.raises(BadRequest):
        WarmHold(cold_start_s=float("nan"), keep_alive_s=3.0, ping_s=1.0)
    with pytest.raises(BadRequest):
        WarmHold(cold_start_s=1.0, keep_alive_s=-1.0, ping_s=1.0)


# io = M / b_dc = 0.1 s, fusion negligible
COST = CostModel(cold_start_s=1.0, keep_alive_s=2.0, b_dc=1e4, fusion_bw=1e15)


def test_the_hold_buys_a_warm_last_update_in_the_keep_alive_replay() -> None:
    # Prepare: three parties with known epochs, due 4, 5 and 6 s into each round (eager's
    # instance stays warm between them), rounds far enough apart that the instance of one
    # round has gone by the next.
    parties = tuple(PartyTiming(party_id=f"p{i}", t_epoch=t, b_down=1e6, b_up=1e6)
                    for i, t in enumerate((4.0, 5.0, 6.0)))
    offsets = np.tile([4.0, 5.0, 6.0], (4, 1)) + np.array(
        [[0.0, 0.1, -0.1], [0.05, -0.1, 0.1], [0.0, 0.0, 0.0], [-0.05, 0.1, 0.05]])
    wl = ExplicitWorkload(parties, offsets, model_bytes=1000, open_delay_s=5.0)
    held = SimConfig.replay(wl, "jit", cost=COST)
    # A numeric target that a cold start fits: no hold.
    unheld = dataclasses.replace(held, latency_target=5.0)
    # Execute
    with_hold, without = simulate(held), simulate(unheld)
    # Assert: with the hold no round pays a cold start after its last update
    assert with_hold.latencies.max() < COST.cold_start_s
    assert without.latencies.mean() > COST.cold_start_s
    # ...for a little warm waiting per round, less than eager's instance is alive
    eager = simulate(SimConfig.replay(wl, "eager-serverless", cost=COST))
    assert without.container_s < with_hold.container_s < eager.container_s


MB = 10**6


def test_service_says_when_a_round_is_due_a_ping(service: JitService) -> None:
    # Prepare: a 1 MB model over 10 MB/s links (t_comm 0.2 s) and epochs of 5 and 7 s, close
    # enough for eager's instance to be warm for the last update
    job = EstimatorJob(job_id="job-w", model_bytes=MB, strategy="jit", cold_start_s=1.0,
                  keep_alive_s=3.0)
    parties = [PartyTiming(party_id=p, t_epoch=t, b_down=10 * MB, b_up=10 * MB)
               for p, t in (("fast", 5.0), ("slow", 7.0))]
    _, est = service.start_round(job, parties, 0, now=100.0, t_pair=0.0)
    begin = float(est.t_upd_early.max()) - 1.0
    assert 0 < begin < 7.0
    # Execute / Assert: the window opens a cold start before the slow party's early bound
    assert service.warm_due("job-w", 0, now=100.0 + begin - 0.1) is None
    service.record_arrival("job-w", 0, "fast", "fast", now=105.2)
    t = 100.0 + max(begin, 5.2) + 0.1
    assert service.warm_due("job-w", 0, now=t) == pytest.approx(1.0)
    # ...pings a warm instance again only for a new update...
    assert service.warm_due("job-w", 0, now=t + 1.5, last_ping=t) is None
    # ...and closes with the round's last update
    service.record_arrival("job-w", 0, "slow", "slow", now=107.2)
    assert service.warm_due("job-w", 0, now=107.3) is None
    # Other strategies, and a target a cold start fits, hold nothing.
    service.start_round(dataclasses.replace(job, job_id="job-l", strategy="lazy"), parties, 0,
                        now=100.0, t_pair=0.0)
    service.start_round(dataclasses.replace(job, job_id="job-n", latency_target=5.0), parties, 0,
                        now=100.0, t_pair=0.0)
    for job_id in ("job-l", "job-n"):
        service.record_arrival(job_id, 0, "fast", "fast", now=105.2)
        assert service.warm_due(job_id, 0, now=t) is None


def test_service_prewarms_the_launch_of_a_round_likely_to_end_at_t_wait(
        service: JitService) -> None:
    # Prepare: an intermittent party that skipped the last three rounds; its round will
    # likely end at t_wait = 10 s, so the hold does not wait for it, and the timer
    # launches shortly before t_wait, too late for a cold start. Eager's instance,
    # called at 2.2 s, would still be warm then (keep-alive 10 s).
    job = EstimatorJob(job_id="job-p", model_bytes=MB, strategy="jit", cold_start_s=1.5,
                  keep_alive_s=10.0, t_wait=10.0)
    parties = [PartyTiming(party_id="fast", t_epoch=2.0, b_down=10 * MB, b_up=10 * MB),
               PartyTiming(party_id="int", mode="intermittent", b_down=10 * MB, b_up=10 * MB)]
    for rnd in range(3):
        t0 = 100.0 * (rnd + 1)
        service.start_round(job, parties, rnd, now=t0, t_pair=0.0)
        service.record_arrival("job-p", rnd, "fast", "fast", now=t0 + 2.2)
        service.finish_round("job-p", rnd, published_at=t0 + 10.1, closable_at=t0 + 10.0)
    # Execute
    _, est = service.start_round(job, parties, 3, now=400.0, t_pair=0.0)
    service.record_arrival("job-p", 3, "fast", "fast", now=402.2)
    # Assert: one ping a cold start before the launch, none before, none once pinged.
    assert est.t_rnd == 10.0 and est.deadline + 1.5 > est.t_rnd
    launch = 400.0 + est.deadline
    assert service.warm_due("job-p", 3, now=launch - 1.6) is None
    assert service.warm_due("job-p", 3, now=launch - 1.4) is not None
    assert service.warm_due("job-p", 3, now=launch - 0.5, last_ping=launch - 1.4) is None
