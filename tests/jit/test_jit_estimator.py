"""Deadline calculator against the paper's formulas (JIT paper 5.3, 5.4), worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas.errors import BadRequest
from fedfaas.jit.calibration import calibrate_t_pair
from fedfaas.jit.estimator import DeadlineEstimator
from fedfaas.jit.formulas import t_agg, t_comm
from fedfaas.jit.last_arrival import latest_ready_time
from fedfaas.jit.planning import (
    choose_aggregators,
    eager_completion,
    eager_instances,
    fluid_completion,
    merge_time,
)
from fedfaas.jit.spec import EstimatorJob, PartyTiming

MB = 10**6


def _party(pid: str, **kw: object) -> PartyTiming:
    kw.setdefault("b_down", 10 * MB)
    kw.setdefault("b_up", 10 * MB)
    return PartyTiming(party_id=pid, **kw)  # type: ignore[arg-type]


def test_t_upd_of_active_party_per_epoch() -> None:
    # Prepare: M = 100 MB, B_d = B_u = 10 MB/s, t_ep = 60 s
    job = EstimatorJob(job_id="j", model_bytes=100 * MB)
    est = DeadlineEstimator(job, [_party("a", t_epoch=60.0)], t_pair=0.0)
    # Execute
    e = est.estimate()
    # Assert: t_comm = 100/10 + 100/10 = 20, t_upd = 60 + 20 = 80
    assert e.t_comm[0] == pytest.approx(20.0)
    assert e.t_upd[0] == pytest.approx(80.0)
    assert e.t_rnd == pytest.approx(80.0)


def test_minibatch_sync_and_intermittent_and_t_rnd_is_max() -> None:
    # Prepare: fusion every 5 minibatches; one active party with t_mb = 2 s, one intermittent
    job = EstimatorJob(job_id="j", model_bytes=100 * MB, sync="minibatch", n_mb=5, t_wait=300.0)
    parties = [_party("a", t_mb=2.0), _party("b", mode="intermittent")]
    # Execute
    e = DeadlineEstimator(job, parties, t_pair=0.0).estimate()
    # Assert: a: 5 x 2 + 20 = 30; b: t_train = t_wait, capped at t_wait = 300
    assert e.t_train.tolist() == pytest.approx([10.0, 300.0])
    assert e.t_upd.tolist() == pytest.approx([30.0, 300.0])
    assert e.t_rnd == pytest.approx(300.0)
    assert e.sources == ("N_mb x t_mb", "t_wait")


def test_epoch_time_from_minibatch_time_and_steps() -> None:
    # Prepare: no epoch time, but t_mb = 0.5 s over ceil(1000 / 32) = 32 steps
    job = EstimatorJob(job_id="j", model_bytes=100 * MB)
    party = _party("a", t_mb=0.5, dataset_size=1000, batch_size=32)
    # Execute
    e = DeadlineEstimator(job, [party], t_pair=0.0).estimate()
    # Assert: 0.5 x 32 = 16, + 20 communication
    assert e.t_upd[0] == pytest.approx(36.0)


def test_t_agg_formula() -> None:
    # Execute: N = 100 parties, t_pair = 0.5 s, C_agg = 2, N_agg = 5, M = B_dc = 1 GB(/s)
    value = t_agg(100, 0.5, 2, 5, 1e9, 1e9)
    # Assert: 100 x 0.5 / (2 x 5) + 1 = 6
    assert value == pytest.approx(6.0)


def test_estimator_t_agg_and_deadline_for_job() -> None:
    # Prepare: 4 parties, t_pair 1 s, C_agg 2, N_agg 1, M/B_dc = 100 MB / 100 MB/s = 1 s
    job = EstimatorJob(job_id="j", model_bytes=100 * MB, c_agg=2, n_agg=1, b_dc=100 * MB)
    parties = [_party(f"p{i}", t_epoch=60.0 + 10 * i) for i in range(4)]
    # Execute
    e = DeadlineEstimator(job, parties, t_pair=1.0).estimate()
    # Assert: t_agg = 4 x 1 / 2 + 1 = 3; t_rnd = 90 + 20 = 110; deadline = 107
    assert e.t_agg == pytest.approx(3.0)
    assert e.t_rnd == pytest.approx(110.0)
    assert e.deadline == pytest.approx(107.0)


def test_comm_rejects_zero_bandwidth() -> None:
    with pytest.raises(BadRequest):
        t_comm(1.0, 0.0, 1.0)


@pytest.mark.parametrize("kwargs", [
    {"model_bytes": 0}, {"model_bytes": 10, "sync": "hourly"}, {"model_bytes": 10, "t_wait": -1.0},
    {"model_bytes": 10, "strategy": "greedy"}, {"model_bytes": 10, "n_agg": 0},
])
def test_job_spec_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(BadRequest):
        EstimatorJob(job_id="j", **kwargs)  # type: ignore[arg-type]


def test_party_validation_and_job_level_checks() -> None:
    with pytest.raises(BadRequest):
        PartyTiming(party_id="p", t_epoch=-3.0)
    with pytest.raises(BadRequest):
        PartyTiming(party_id="p", mode="sometimes")  # type: ignore[arg-type]
    job = EstimatorJob(job_id="j", model_bytes=10)
    with pytest.raises(BadRequest, match="t_wait"):
        DeadlineEstimator(job, [_party("a", mode="intermittent")], t_pair=0.0)
    with pytest.raises(BadRequest, match="duplicate"):
        DeadlineEstimator(job, [_party("a", t_epoch=1.0), _party("a", t_epoch=2.0)], t_pair=0.0)
    with pytest.raises(BadRequest, match="bandwidth"):
        DeadlineEstimator(job, [PartyTiming(party_id="a", t_epoch=1.0)], t_pair=0.0)


def test_from_api_converts_bits_to_bytes() -> None:
    # Prepare: the gateway's JSON profile with bandwidth in bits per second
    raw = {"party_id": "p1", "mode": "active", "epoch_time_s": 30.0, "dataset_size": 100,
           "hardware": {"cpus": 4, "gpus": 1}, "bandwidth_down_bps": 8e6, "bandwidth_up_bps": 16e6}
    # Execute
    p = PartyTiming.from_api(raw)
    # Assert
    assert (p.b_down, p.b_up, p.t_epoch, p.cores, p.gpus) == (1e6, 2e6, 30.0, 4, 1)


def test_calibrate_t_pair_scales_large_models_linearly() -> None:
    # Execute: a 4 MB model, and a 4 GB one calibrated on at most 4 MB
    small = calibrate_t_pair(4 * MB, repeats=2, max_bytes=4 * MB)
    big = calibrate_t_pair(4000 * MB, repeats=2, max_bytes=4 * MB)
    # Assert: both measured something; the big one is a pure scale-up (no timing bound asserted)
    assert small > 0 and big > 0
    with pytest.raises(BadRequest):
        calibrate_t_pair(2)


def test_fluid_completion_by_hand() -> None:
    # Two aggregators from t=10 fuse an update per 0.5 s: the two early ones are
    # done by 11, the third (at 20) by 20.5, and the last two, in by 21.2, take
    # 1 s from 21: the round ends at 22.0. One aggregator from 30: 30 + 5 x 1 s.
    a = np.array([0.0, 5.0, 20.0, 21.0, 21.2])
    assert fluid_completion(a, 10.0, 1.0, 2) == pytest.approx(22.0)
    assert fluid_completion(a, 30.0, 1.0, 1) == pytest.approx(35.0)


def test_choose_aggregators_keeps_all_for_a_burst_and_fewer_for_spread_arrivals() -> None:
    kw = {"t_pair": 0.2, "c_agg": 2, "n_agg": 10, "model_bytes": 1e6, "b_dc": 1e9}
    burst = np.full(1000, 100.0)
    spread = np.linspace(0.0, 100.0, 1000)
    # A burst: fewer aggregators would finish later than the paper's ten.
    k, agg, end = choose_aggregators(burst, 100.0, **kw)
    assert k == 10 and agg == pytest.approx(1000 * 0.2 / (2 * 10) + 1e-3)
    assert end == pytest.approx(100 + 1000 * 0.1 / 10)
    # Arrivals spread over 100 s, 0.1 s of work each: one aggregator keeps up
    # with 10 updates/s from the start, so it suffices.
    k, agg, end = choose_aggregators(spread, 100.0, **kw)
    assert k == 1 and agg == pytest.approx(1000 * 0.1 * 1.2 + 1e-3)
    assert end == pytest.approx(100.1)


def test_eager_completion_queues_a_burst_by_hand() -> None:
    # Each eager step loads and checkpoints 1 MB at 1 GB/s (2 ms) and fuses in
    # 0.2 / 2 s: 0.102 s. Four updates at t=10 on two instances: 10 + 4 x 0.102 / 2.
    a = np.full(4, 10.0)
    done = eager_completion(a, t_pair=0.2, c_agg=2, n_agg=2, model_bytes=1e6, b_dc=1e9)
    assert done == pytest.approx(10.204)


def test_done_by_lets_fewer_aggregators_take_a_burst() -> None:
    kw = {"t_pair": 0.2, "c_agg": 2, "n_agg": 10, "model_bytes": 1e6, "b_dc": 1e9}
    burst = np.full(1000, 100.0)
    # k aggregators started before the burst finish at 100 + 1000 x 0.1 / k:
    # allowed until 160, two suffice (150); until 100.5, the paper's ten stay.
    k, agg, end = choose_aggregators(burst, 100.0, done_by=160.0, **kw)
    assert k == 2 and agg == pytest.approx(1000 * 0.1 / 2 * 1.2 + 1e-3)
    assert end == pytest.approx(150.0)
    assert choose_aggregators(burst, 100.0, done_by=100.5, **kw)[0] == 10


@pytest.mark.parametrize("target, expected", [("fastest", None), (30.0, 129.9), ("eager", 100.75)])
def test_latency_target_sets_done_by(target: object, expected: float | None) -> None:
    # Three updates in at 100 s. Eager: three steps of 2 x 100 MB / (1 GB/s) +
    # 0.1 / 2 s on one instance, 0.75 s, one partial to merge; 30 s: published 30 s
    # after the last update, so fusion ends before the 0.1 s write.
    job = EstimatorJob(job_id="j", model_bytes=100 * MB, n_agg=1, c_agg=2, b_dc=1e9,
                  latency_target=target)  # type: ignore[arg-type]
    est = DeadlineEstimator(job, [_party(p, t_epoch=80.0) for p in "abc"], t_pair=0.1)
    assert est.done_by(np.full(3, 100.0)) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize("bad", ["soon", 0, -1.0, float("nan")])
def test_latency_target_is_validated(bad: object) -> None:
    with pytest.raises(BadRequest, match="latency_target"):
        EstimatorJob(job_id="j", model_bytes=MB, latency_target=bad)  # type: ignore[arg-type]


def test_latency_target_comes_from_the_job_api() -> None:
    from fedfaas import spec as api

    raw = {"job_id": "j", "model": {"name": "m", "size_bytes": MB},
           "strategy": {"name": "jit", "n_agg": 4, "latency_target": 12.5}}
    assert EstimatorJob.from_api(api.JobSpec.model_validate(raw)).latency_target == 12.5
    raw["strategy"] = {"name": "jit"}
    assert EstimatorJob.from_api(api.JobSpec.model_validate(raw)).latency_target == "eager"


def test_latest_ready_time_by_hand() -> None:
    # One party due at exactly 10 s: ready at x is x - 10 late, so a budget of
    # 0.5 s allows 10.5 s.
    assert latest_ready_time(np.array([10.0]), np.array([0.0]), 0.5) == pytest.approx(10.5)
    # One party N(0, 1): E[(x - T)+] = phi(x) + x Phi(x); at x = 0 that is
    # 1 / sqrt(2 pi) = 0.3989, at x = -1 it is 0.0833.
    mean, sigma = np.array([0.0]), np.array([1.0])
    assert latest_ready_time(mean, sigma, 0.3989) == pytest.approx(0.0, abs=0.01)
    assert latest_ready_time(mean, sigma, 0.0833) == pytest.approx(-1.0, abs=0.01)
    # A second, independent party makes the last arrival later: the same budget
    # allows a later start.
    two = latest_ready_time(np.array([0.0, 0.0]), np.array([1.0, 1.0]), 0.0833)
    assert two > -1.0 + 0.3
    with pytest.raises(BadRequest):
        latest_ready_time(mean, sigma, -1.0)


def test_latest_ready_time_caps_lateness_at_a_launch() -> None:
    # A last update before the timer launches the round at once: late by the
    # launch's own time (cap), never more. One party due at exactly 10 s, cap 2 s:
    # the lateness of x is min((x - 10)+, 2).
    one = (np.array([10.0]), np.array([0.0]))
    assert latest_ready_time(*one, 0.5, cap=2.0) == pytest.approx(10.5)
    assert latest_ready_time(*one, 1.9, cap=2.0) == pytest.approx(11.9)
    # A budget of a whole launch allows any time: past every arrival.
    assert latest_ready_time(*one, 2.0, cap=2.0) >= 12.0
    # N(0, 1), cap 1: E[min((x - T)+, 1)] = g(x) - g(x - 1), g(x) = phi(x) + x Phi(x);
    # at x = 0 that is 0.3989 - 0.0833 = 0.3156. Uncapped, the same budget allows
    # only x = -0.18 (g(-0.18) = 0.3925 - 0.18 * 0.4286 = 0.3154).
    mean, sigma = np.array([0.0]), np.array([1.0])
    assert latest_ready_time(mean, sigma, 0.3156, cap=1.0) == pytest.approx(0.0, abs=0.01)
    assert latest_ready_time(mean, sigma, 0.3156) == pytest.approx(-0.18, abs=0.01)
    with pytest.raises(BadRequest):
        latest_ready_time(mean, sigma, 0.1, cap=-1.0)


def test_eager_target_arms_the_timer_later_when_eager_would_queue() -> None:
    # Ten parties due together on one aggregator: eager serverless queues their
    # ten stateless steps (2 x 1 s of state I/O each), JIT fuses them in memory.
    # With that headroom, the timer waits longer for the last update.
    from fedfaas.jit.learning import ArrivalLearner

    parties = [_party(f"p{i}", t_epoch=60.0 + i * 0.1) for i in range(10)]
    timers = {}
    for target in ("fastest", "eager"):
        job = EstimatorJob(job_id="j", model_bytes=100 * MB, n_agg=1, c_agg=2, b_dc=100 * MB,
                      latency_target=target)
        learner = ArrivalLearner()
        est = DeadlineEstimator(job, parties, t_pair=0.1)
        for r in range(3):
            e = est.estimate(learner)
            noise = 1 + 0.02 * np.sin(np.arange(10) + r)
            learner.observe_round(r, e, e.t_upd_base * noise, detail=False)
        timers[target] = est.estimate(learner)
    fast, eager = timers["fastest"], timers["eager"]
    assert fast.done_by is None and eager.done_by is not None
    assert eager.t_rnd_early > fast.t_rnd_early
    assert eager.deadline > fast.deadline


def test_eager_allowance_counts_the_spread_of_parties_due_together() -> None:
    # Ten parties due at 100 s, eager steps of 0.25 s on one instance: at the means
    # eager would queue all ten (2.5 s); with 2 s of spread each, arrivals are far
    # enough apart that it mostly keeps up.
    job = EstimatorJob(job_id="j", model_bytes=100 * MB, n_agg=1, c_agg=2, b_dc=1e9)
    est = DeadlineEstimator(job, [_party(f"p{i}", t_epoch=80.0) for i in range(10)], t_pair=0.1)
    a = np.full(10, 100.0)
    assert est.done_by(a) == pytest.approx(102.5)
    spread = est.done_by(a, np.full(10, 2.0))
    assert spread is not None and 100.25 <= spread < 101.0
    assert est.done_by(a, np.full(10, 2.0)) == spread  # seeded: the same plan every round


def test_eager_pays_a_cold_start_after_the_platform_stopped_its_instance() -> None:
    # Steps of 0.102 s; the last update comes 100 s after the first step ended,
    # past a 60 s keep-alive: 1.5 s of cold start before its step.
    kw = {"t_pair": 0.2, "c_agg": 2, "n_agg": 1, "model_bytes": 1e6, "b_dc": 1e9}
    a = np.array([0.0, 100.102])
    assert eager_completion(a, **kw) == pytest.approx(100.204)
    assert eager_completion(a, cold_start_s=1.5, keep_alive_s=60.0, **kw) == pytest.approx(101.704)
    assert eager_completion(a, cold_start_s=1.5, keep_alive_s=120.0, **kw) == pytest.approx(100.204)
    with pytest.raises(BadRequest, match="keep_alive_s"):
        EstimatorJob(job_id="j", model_bytes=MB, keep_alive_s=-1.0)


def test_eager_first_step_pays_a_cold_start_when_the_round_idled_past_keep_alive() -> None:
    # The previous round's last step ran at the round's start (offset 0). Three
    # updates at 80, 80.1 and 80.2 s, one instance, steps of 0.102 s: warm, the
    # queue ends at 80.0 + 3 x 0.102; cold (80 s > 60 s idle), 1.5 s later, and
    # that backlog reaches the last update.
    kw = {"t_pair": 0.2, "c_agg": 2, "n_agg": 1, "model_bytes": 1e6, "b_dc": 1e9}
    a = np.array([80.0, 80.1, 80.2])
    assert eager_completion(a, **kw) == pytest.approx(80.306)
    assert eager_completion(a, cold_start_s=1.5, keep_alive_s=60.0, **kw) == pytest.approx(81.806)
    # Within the keep-alive the instance is still warm.
    assert eager_completion(a, cold_start_s=1.5, keep_alive_s=90.0, **kw) == pytest.approx(80.306)


def test_eager_instances_and_the_merge_of_their_partials_by_hand() -> None:
    # Three updates within one 0.5 s step overlap: three instances, capped at n_agg.
    a = np.array([0.0, 0.1, 0.2, 5.0])
    assert eager_instances(a, step=0.5, n_agg=8) == 3
    assert eager_instances(a, step=0.5, n_agg=2) == 2
    assert eager_instances(a, step=0.05, n_agg=8) == 1
    # A tree merges 4 partials in 2 rounds of merges, 5 in 3, 1 in none.
    assert merge_time(4, 0.5) == 1.0 and merge_time(5, 0.5) == 1.5 and merge_time(1, 0.5) == 0.0


def test_a_round_a_party_is_likely_to_skip_is_planned_to_end_at_t_wait() -> None:
    # Prepare: two active parties due at 80 s (10 MB/s links, 60 s epochs), t_wait 200 s
    from fedfaas.jit.learning import ArrivalLearner

    job = EstimatorJob(job_id="j", model_bytes=100 * MB, t_wait=200.0)
    est = DeadlineEstimator(job, [_party(p, t_epoch=60.0) for p in ("steady", "flaky")],
                            t_pair=0.0)
    learner = ArrivalLearner(alpha=0.5)
    t_rnd = []
    # Execute: "flaky" sends, skips twice, sends (participation 1, 0.5, 0.25, 0.625)
    for r, flaky in enumerate((80.0, np.nan, np.nan, 80.0)):
        learner.observe_round(r, est.estimate(learner), np.array([80.0, flaky]))
        t_rnd.append(est.estimate(learner).t_rnd)
    # Assert: planned by the updates while both are at least as likely as not to send,
    # at t_wait otherwise
    assert learner.participation(["steady", "flaky"]).tolist() == pytest.approx([1.0, 0.625])
    assert t_rnd == pytest.approx([80.0, 80.0, 200.0, 80.0], rel=0.05)
