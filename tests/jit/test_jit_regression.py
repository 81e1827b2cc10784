"""Training-time regression and its fallback (JIT paper 4.2, 5.2)."""

from __future__ import annotations

import pytest

from fedfaas.errors import BadRequest
from fedfaas.jit.estimator import DeadlineEstimator
from fedfaas.jit.regression import TimeRegression, TrainingSample, fit_line
from fedfaas.jit.spec import EstimatorJob, PartyTiming

MB = 10**6


def _p(pid: str, **kw: object) -> PartyTiming:
    return PartyTiming(party_id=pid, b_down=10 * MB, b_up=10 * MB, **kw)  # type: ignore[arg-type]


def test_fit_line_recovers_a_line_and_falls_back_to_proportional() -> None:
    # Execute
    line = fit_line([1, 2, 3], [5, 7, 9])
    prop = fit_line([4, 4], [8, 10])
    # Assert: y = 3 + 2x; one design point -> y = (18 / 8) x
    assert line is not None and line.intercept == pytest.approx(3) and line.slope == pytest.approx(2)
    assert prop is not None and prop.predict(8) == pytest.approx(18.0)
    assert fit_line([], []) is None


def test_epoch_time_regressed_on_dataset_size_from_other_parties() -> None:
    # Prepare: t_ep = 0.1 s per item for two reporting parties; a third reports only its size
    job = EstimatorJob(job_id="j", model_bytes=10 * MB)
    parties = [_p("a", t_epoch=10.0, dataset_size=100), _p("b", t_epoch=20.0, dataset_size=200),
               _p("c", dataset_size=300)]
    # Execute
    e = DeadlineEstimator(job, parties, t_pair=0.0).estimate()
    # Assert: 30 s of training + 2 s of communication
    assert e.t_train[2] == pytest.approx(30.0)
    assert e.sources[2] == "regression:t_ep~dataset_size"


def test_regression_uses_hardware_when_known() -> None:
    # Prepare: time is 0.1 s per item per core; the target has 4 cores
    reg = TimeRegression([TrainingSample(100, None, 1.0, t_epoch=10.0),
                          TrainingSample(400, None, 2.0, t_epoch=20.0)])
    # Execute
    t = reg.epoch_time(_p("x", dataset_size=800, cores=4.0))
    # Assert: 800 / 4 = 200 items per core -> 20 s
    assert t == pytest.approx(20.0)


def test_minibatch_time_from_batch_size_and_history() -> None:
    # Prepare: past observations give t_mb = 0.01 s per item; epoch sync over 10 steps
    job = EstimatorJob(job_id="j", model_bytes=10 * MB)
    history = [TrainingSample(None, 16, None, t_mb=0.16), TrainingSample(None, 64, None, t_mb=0.64)]
    party = _p("a", dataset_size=320, batch_size=32)
    # Execute
    e = DeadlineEstimator(job, [party], t_pair=0.0, history=history).estimate()
    # Assert: 0.32 s per minibatch x 10 minibatches
    assert e.t_train[0] == pytest.approx(3.2)
    assert e.sources[0] == "regression:t_mb~batch_size"


def test_fallbacks_median_then_t_wait_then_error() -> None:
    # Prepare
    job = EstimatorJob(job_id="j", model_bytes=10 * MB, t_wait=500.0)
    known = [_p("a", t_epoch=10.0), _p("b", t_epoch=30.0), _p("c", t_epoch=50.0)]
    # Execute / Assert: nothing to regress on (no sizes) -> median of the known parties
    e = DeadlineEstimator(job, [*known, _p("d")], t_pair=0.0).estimate()
    assert (e.t_train[3], e.sources[3]) == (30.0, "fallback:median")
    # only an unknown party -> t_wait
    e = DeadlineEstimator(job, [_p("d")], t_pair=0.0).estimate()
    assert (e.t_train[0], e.sources[0]) == (500.0, "fallback:t_wait")
    # nothing at all -> a 400 that says why
    with pytest.raises(BadRequest, match="no training time"):
        DeadlineEstimator(EstimatorJob(job_id="j", model_bytes=10), [_p("d")], t_pair=0.0)
