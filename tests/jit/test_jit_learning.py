"""Learning from observed arrivals round by round, and the per-round report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fedfaas.errors import BadRequest
from fedfaas.jit.estimator import DeadlineEstimator
from fedfaas.jit.learning import (
    LATENCY_AIM,
    LATENCY_GAIN,
    TIMER_SHARE_BOUNDS,
    TIMER_SHARE_PRIOR,
    ArrivalLearner,
)
from fedfaas.jit.spec import EstimatorJob, PartyTiming

MB = 10**6


def _estimator() -> DeadlineEstimator:
    # The paper's plan: the timer follows the arrival forecast alone, not a latency budget.
    job = EstimatorJob(job_id="j", model_bytes=100 * MB, latency_target="fastest")
    parties = [PartyTiming(party_id=p, t_epoch=60.0, b_down=10 * MB, b_up=10 * MB)
               for p in ("late", "punctual")]
    return DeadlineEstimator(job, parties, t_pair=0.0)


def test_party_always_20_percent_late_is_predicted_20_percent_late() -> None:
    # Prepare: both predicted at t_upd = 80 s; "late" always arrives at 96 s
    est, learner = _estimator(), ArrivalLearner(alpha=0.5)
    # Execute
    for r in range(3):
        learner.observe_round(r, est.estimate(learner), np.array([96.0, 80.0]))
    e = est.estimate(learner)
    # Assert
    assert e.t_upd.tolist() == pytest.approx([96.0, 80.0])
    assert e.t_upd_base.tolist() == pytest.approx([80.0, 80.0])
    assert e.t_rnd == pytest.approx(96.0)


def test_arrival_ratio_and_spread_are_running_means_then_an_ewma() -> None:
    # Prepare: both predicted at t_upd = 80 s; "late" at 88, 96, 104 s (ratios 1.1, 1.2, 1.3)
    est, learner = _estimator(), ArrivalLearner(arrival_alpha=0.1)
    # Execute
    for r, t in enumerate((88.0, 96.0, 104.0)):
        learner.observe_round(r, est.estimate(learner), np.array([t, 80.0]))
    # Assert: the mean of 1.1, 1.2, 1.3; the spread the mean of |1.2 - 1.1| and
    # |1.3 - 1.15| (each surprise against the mean before it)
    assert learner.ratios(["late"]).tolist() == pytest.approx([1.2])
    assert learner.sigma_factors(["late"]).tolist() == pytest.approx([1.25 * 0.125 / 1.2])
    # Execute: 30 more rounds at ratio 1.2 (past 1 / arrival_alpha), then one at 2.2
    for r in range(3, 33):
        learner.observe_round(r, est.estimate(learner), np.array([96.0, 80.0]))
    learner.observe_round(33, est.estimate(learner), np.array([176.0, 80.0]))
    # Assert: the newest observation weighs arrival_alpha, not 1 / 34
    assert learner.ratios(["late"]).tolist() == pytest.approx([0.9 * 1.2 + 0.1 * 2.2])
    restored = ArrivalLearner.from_dict(json.loads(json.dumps(learner.to_dict())))
    assert restored.arrival_alpha == 0.1
    with pytest.raises(BadRequest):
        ArrivalLearner(arrival_alpha=0.0)


def test_round_report_records_prediction_and_error() -> None:
    # Prepare
    est, learner = _estimator(), ArrivalLearner()
    # Execute: the first round is scheduled with the paper's estimate
    report = learner.observe_round(0, est.estimate(learner), np.array([96.0, np.nan]),
                                   t_agg_obs=5.0)
    out = json.loads(json.dumps(report.to_dict()))
    # Assert
    assert out["parties"][0] == {"party_id": "late", "predicted_t_upd": 80.0,
                                 "observed_t_upd": 96.0, "error": 16.0}
    assert out["parties"][1]["observed_t_upd"] is None
    assert out["n_observed"] == 1 and out["t_rnd_obs"] == 96.0 and out["t_rnd_error"] == 16.0
    assert out["t_agg_obs"] == 5.0


def test_aggregation_overhead_is_learned_and_becomes_slack() -> None:
    # Prepare: the formula says 2 s, the platform takes 3.5 s then 4.5 s (cold start etc.)
    learner = ArrivalLearner(alpha=0.5, z=2.0)
    # Execute
    learner.observe_aggregation(2.0, 3.5)
    learner.observe_aggregation(2.0, 4.5)
    # Assert: residual 1.5 then EWMA -> 2.0; deviation |2.5 - 1.5| = 1 halved -> 0.5; slack 2 x 0.5
    assert learner.agg_residual == pytest.approx(2.0)
    assert learner.slack() == pytest.approx(1.0)


def test_deadline_uses_spread_learned_from_second_observation_on() -> None:
    # Prepare: one party arriving at 80, 84, 76, 80 s around its prediction of 80 s
    est, learner = _estimator(), ArrivalLearner(alpha=0.5, prior_dev=0.1, z=2.0)
    first = est.estimate(learner)
    # Execute
    for r, t in enumerate([80.0, 84.0, 76.0, 80.0]):
        learner.observe_round(r, est.estimate(learner), np.array([t, 80.0]))
    later = est.estimate(learner)
    # Assert: before any observation the timer aims at the early bound of parties that
    # measured their epoch, 80 x (1 - 2 x 0.05); afterwards at a low quantile of the
    # last arrival: at least the punctual party's 80 s
    assert first.t_rnd_early == pytest.approx(72.0)
    assert later.t_rnd_early == pytest.approx(80.0, abs=0.01)


def test_learner_state_round_trips_through_json() -> None:
    # Prepare
    est, learner = _estimator(), ArrivalLearner()
    learner.observe_round(0, est.estimate(learner), np.array([90.0, 70.0]))
    learner.observe_aggregation(1.0, 2.0)
    learner.observe_latency(0.5, 2.0)
    # Execute
    restored = ArrivalLearner.from_dict(json.loads(json.dumps(learner.to_dict())))
    assert restored.timer_share == learner.timer_share
    assert restored.latency_ratio == learner.latency_ratio
    # Assert
    assert restored.ratios(["late", "punctual"]).tolist() == learner.ratios(
        ["late", "punctual"]).tolist()
    assert restored.agg_residual == learner.agg_residual
    assert restored.report_history() == learner.report_history()
    with pytest.raises(BadRequest):
        ArrivalLearner.from_dict({"alpha": 0.3})


def test_observe_round_validates_shape() -> None:
    learner = ArrivalLearner()
    with pytest.raises(BadRequest):
        learner.observe_round(0, _estimator().estimate(), np.array([1.0]))


def test_intermittent_arrival_curve_is_learned_and_persisted() -> None:
    # Prepare: four intermittent parties that always send at 10%, 20%, 30%, 40% of t_wait
    job = EstimatorJob(job_id="j", model_bytes=100 * MB, t_wait=100.0, n_agg=4)
    parties = [PartyTiming(party_id=f"p{i}", mode="intermittent", b_down=10 * MB,
                            b_up=10 * MB) for i in range(4)]
    est, learner = DeadlineEstimator(job, parties, t_pair=1.0), ArrivalLearner(alpha=1.0)
    assert learner.intermittent_arrivals(4) is None
    before = est.estimate(learner)

    # Execute
    learner.observe_round(0, before, np.array([10.0, 20.0, 30.0, 40.0]))
    after = est.estimate(learner)
    restored = ArrivalLearner.from_dict(json.loads(json.dumps(learner.to_dict())))

    # Assert
    frac = learner.intermittent_arrivals(4)
    assert frac is not None and np.all(np.diff(frac) >= 0)
    assert frac[0] >= 0.1 and frac[-1] <= 0.4
    # Before: every party assumed at t_wait, a burst (all four aggregators).
    # After: the updates come well before t_wait, and fewer aggregators suffice.
    assert before.n_agg == 4 and after.n_agg is not None and after.n_agg < 4
    assert restored.intermittent_arrivals(4) == pytest.approx(frac)


def test_timer_share_follows_observed_over_target_latency() -> None:
    est, learner = _estimator(), ArrivalLearner(timer_share=0.2)
    # Rounds scheduled before the parties were seen twice do not move the share.
    learner.observe_latency(5.0, 1.0)
    assert learner.timer_share == 0.2
    for r in range(2):
        learner.observe_round(r, est.estimate(learner), np.array([80.0, 80.0]))
    # Then each round multiplies it by exp(gain x (aim - observed / target)).
    learner.observe_latency(0.5, 1.0)
    assert learner.timer_share == pytest.approx(0.2 * math.exp(LATENCY_GAIN * (LATENCY_AIM - 0.5)))
    for _ in range(30):                    # always early: the share saturates at its bound
        learner.observe_latency(0.1, 1.0)
    assert learner.timer_share == TIMER_SHARE_BOUNDS[1]
    learner.observe_latency(100.0, 1.0)    # one outlier divides it by 4 at most
    assert learner.timer_share == pytest.approx(TIMER_SHARE_BOUNDS[1] / 4)
    for _ in range(30):                    # far too late: it falls to its floor
        learner.observe_latency(5.0, 1.0)
    assert learner.timer_share == TIMER_SHARE_BOUNDS[0]
    # On time one round in two, a cold start late in the other: what moves the share
    # is the mean ratio against the aim (0.9), not the many rounds on time.
    learner.timer_share = 0.3
    learner.observe_latency(0.2, 1.0)
    learner.observe_latency(1.8, 1.0)      # mean 1.0: too late on average
    assert learner.timer_share < 0.3
    learner.timer_share = 0.3
    learner.observe_latency(0.2, 1.0)
    learner.observe_latency(1.4, 1.0)      # mean 0.8: room to spare
    assert learner.timer_share > 0.3
    with pytest.raises(BadRequest):
        learner.observe_latency(1.0, 0.0)
    with pytest.raises(BadRequest):
        ArrivalLearner(timer_share=2.0)


def test_state_saved_before_the_latency_target_loads_with_priors() -> None:
    learner = ArrivalLearner()
    state = learner.to_dict()
    for key in ("timer_share", "latency_ratio", "lat_seen"):
        del state[key]
    restored = ArrivalLearner.from_dict(state)
    assert restored.timer_share == TIMER_SHARE_PRIOR and restored.latency_ratio == 0.0


def test_regressed_parties_keep_the_wider_spread_prior() -> None:
    # "guess" reports no times: its 60 s epoch is filled in (median of the others),
    # so until seen twice its early bound is 80 x (1 - 3 x 0.1) against the measured
    # party's 80 x (1 - 3 x 0.05).
    job = EstimatorJob(job_id="j", model_bytes=100 * MB, latency_target="fastest")
    parties = [PartyTiming(party_id="measured", t_epoch=60.0, b_down=10 * MB, b_up=10 * MB),
               PartyTiming(party_id="guess", b_down=10 * MB, b_up=10 * MB)]
    est = DeadlineEstimator(job, parties, t_pair=0.0).estimate(ArrivalLearner())
    assert est.sources == ("t_ep", "fallback:median")
    assert est.t_upd_early.tolist() == pytest.approx([68.0, 56.0])


def test_participation_is_learned_per_party_and_persisted() -> None:
    # Prepare
    est, learner = _estimator(), ArrivalLearner(alpha=0.3)
    assert learner.participation(["late", "punctual"]).tolist() == [1.0, 1.0]
    # Execute: "late" skips the second round
    learner.observe_round(0, est.estimate(learner), np.array([90.0, 70.0]))
    learner.observe_round(1, est.estimate(learner), np.array([np.nan, 70.0]))
    state = json.loads(json.dumps(learner.to_dict()))
    # Assert
    assert learner.participation(["late", "punctual"]).tolist() == pytest.approx([0.7, 1.0])
    assert ArrivalLearner.from_dict(state).participation(["late"]).tolist() == pytest.approx([0.7])
    del state["participation"]  # state saved before participation was learned
    assert ArrivalLearner.from_dict(state).participation(["late"]).tolist() == [1.0]
