"""Scheduler ordering, timers, deferral, opportunistic runs and preemption on a virtual clock."""

from __future__ import annotations

import threading

import pytest

from fedfaas.errors import Conflict
from fedfaas.jit.clock import VirtualClock
from fedfaas.jit.estimate import JobEstimate
from fedfaas.jit.estimator import DeadlineEstimator
from fedfaas.jit.scheduler import Scheduler, SchedulerConfig
from fedfaas.jit.spec import EstimatorJob, PartyTiming
from fedfaas.jit.state import DONE, FAILED, Decision, InMemoryState


def _jit_job(job_id: str, deadline: float, n: int,
             t_wait: float | None = None) -> tuple[EstimatorJob, JobEstimate]:
    """A JIT job whose aggregation timer is ``deadline`` seconds after round start."""
    job = EstimatorJob(job_id=job_id, model_bytes=1, strategy="jit", t_wait=t_wait, b_dc=1e12)
    parties = [PartyTiming(party_id=f"p{i}", t_epoch=deadline, b_down=1e12, b_up=1e12)
               for i in range(n)]
    return job, DeadlineEstimator(job, parties, t_pair=0.0).estimate()


def _setup(capacity: int | None) -> Scheduler:
    return Scheduler(InMemoryState(), VirtualClock(), config=SchedulerConfig(capacity=capacity))


def _aggregates(ds: list[Decision]) -> list[Decision]:
    return [d for d in ds if d.kind == "aggregate"]


def test_timer_forces_the_task_and_nothing_runs_before_it() -> None:
    # Prepare: unbounded capacity (idleness unknown), timer at 10 s
    sched = _setup(None)
    job, est = _jit_job("a", 10.0, 3)
    sched.open_round(job, 0, n_expected=3, estimate=est, now=0.0)
    sched.record_arrivals("a", 0, [1.0, 2.0])
    # Execute / Assert: deferred until the timer
    assert sched.tick(5.0) == []
    launched = _aggregates(sched.tick(10.5))
    assert [(d.first, d.count, d.reason) for d in launched] == [([0], [2], "deadline")]


def test_deferred_task_keeps_priority_and_runs_on_next_arrival() -> None:
    # Prepare: no update when the timer fires
    sched = _setup(None)
    job, est = _jit_job("a", 10.0, 2)
    sched.open_round(job, 0, n_expected=2, estimate=est, now=0.0)
    # Execute
    nothing = sched.tick(10.5)
    sched.record_arrivals("a", 0, [12.0])
    later = _aggregates(sched.tick(12.0))
    # Assert
    assert nothing == []
    assert [(d.first, d.ready_at) for d in later] == [([0], [12.0])]
    task = sched.state.get_task("a/0")
    assert task is not None and task.priority == pytest.approx(10.0)


def test_higher_priority_runs_first_when_capacity_is_short() -> None:
    # Prepare: one slot; both timers passed; b's deadline (5 s) is earlier than a's (10 s)
    sched = _setup(1)
    for jid, deadline in (("a", 10.0), ("b", 5.0)):
        job, est = _jit_job(jid, deadline, 2)
        sched.open_round(job, 0, n_expected=2, estimate=est, now=0.0)
        sched.record_arrivals(jid, 0, [1.0])
    # Execute
    first = _aggregates(sched.tick(20.0))
    sched.complete(first[0].decision_id)
    second = _aggregates(sched.tick(21.0))
    # Assert
    assert [d.job_id for d in first] == ["b"]
    assert [d.job_id for d in second] == ["a"]


def test_opportunistic_run_only_with_idle_capacity() -> None:
    # Prepare: one slot, idle; the timer is far away
    sched = _setup(1)
    job, est = _jit_job("a", 100.0, 3)
    sched.open_round(job, 0, n_expected=3, estimate=est, now=0.0)
    sched.record_arrivals("a", 0, [1.0, 2.0])
    # Execute: the one slot is idle -> run early
    early = _aggregates(sched.tick(3.0))
    # Assert
    assert [(d.first, d.count, d.reason) for d in early] == [([0], [2], "opportunistic")]
    sched.record_arrivals("a", 0, [4.0])
    assert sched.tick(4.5) == []  # the only slot is busy with the early run


def test_preemption_checkpoints_and_resumes_the_remainder() -> None:
    # Prepare: one slot; low-priority job "low" (timer 100 s) runs opportunistically on 4 updates
    sched = _setup(1)
    low, low_est = _jit_job("low", 100.0, 5)
    high, high_est = _jit_job("high", 10.0, 2)
    sched.open_round(low, 0, n_expected=5, estimate=low_est, now=0.0)
    sched.open_round(high, 0, n_expected=2, estimate=high_est, now=0.0)
    sched.record_arrivals("low", 0, [1.0, 2.0, 3.0, 4.0])
    (run_low,) = _aggregates(sched.tick(5.0))
    sched.record_arrivals("high", 0, [6.0, 7.0])
    # Execute: high closes (both updates in) with capacity full -> low is asked to stop
    notices = sched.tick(10.0)
    # Assert
    assert [(d.kind, d.target) for d in notices] == [("preempt", run_low.decision_id)]
    # low checkpointed after fusing 1 of its 4 updates
    sched.complete(run_low.decision_id, part=0, n_fused=1)
    (run_high,) = _aggregates(sched.tick(11.0))
    assert run_high.job_id == "high"
    sched.complete(run_high.decision_id)
    (final_high,) = sched.tick(12.0)
    assert (final_high.kind, final_high.job_id) == ("finalise", "high")
    sched.complete(final_high.decision_id)
    (resumed,) = _aggregates(sched.tick(13.0))
    assert (resumed.job_id, resumed.first, resumed.count, resumed.reason) == (
        "low", [1], [3], "resume")


def test_finalise_once_then_done() -> None:
    # Prepare: eager job, two updates
    sched = _setup(None)
    job = EstimatorJob(job_id="e", model_bytes=1, strategy="eager-serverless")
    sched.open_round(job, 0, n_expected=2, now=0.0)
    sched.record_arrivals("e", 0, [1.0, 2.0], ["u1", "u2"])
    (run,) = _aggregates(sched.tick(2.0))
    # Execute
    assert run.update_ids == [["u1"], ["u2"]]
    assert sched.tick(2.5) == []  # still running: no finalise yet
    sched.complete(run.decision_id, part=0)
    sched.complete(run.decision_id, part=1)
    sched.complete(run.decision_id, part=1)  # a repeated report changes nothing
    (final,) = sched.tick(3.0)
    sched.complete(final.decision_id)
    # Assert
    assert final.kind == "finalise"
    task = sched.state.get_task("e/0")
    assert task is not None and task.status == DONE and sched.tick(4.0) == []
    assert sched.state.running_total() == 0
    with pytest.raises(Conflict):
        sched.open_round(job, 0, n_expected=2, now=5.0)


def test_t_wait_closes_with_quorum_or_fails_and_late_updates_are_refused() -> None:
    # Prepare: two lazy jobs with t_wait 60 s, quorum 2 of 3
    sched = _setup(None)
    for jid in ("ok", "short"):
        job = EstimatorJob(job_id=jid, model_bytes=1, strategy="lazy", t_wait=60.0, quorum=2)
        sched.open_round(job, 0, n_expected=3, now=0.0)
    sched.record_arrivals("ok", 0, [10.0, 20.0])
    sched.record_arrivals("short", 0, [10.0])
    # Execute
    out = sched.tick(61.0)
    # Assert: "ok" runs its 2 updates (closed at t_wait); "short" failed its round
    kinds = sorted((d.job_id, d.kind) for d in out)
    assert kinds == [("ok", "aggregate"), ("short", "round_failed")]
    failed = sched.state.get_task("short/0")
    assert failed is not None and failed.status == FAILED
    assert sched.record_arrivals("ok", 0, [59.0]) == 0  # closed: refused
    assert sched.record_arrivals("short", 0, [70.0]) == 0  # after t_wait: ignored


def test_background_loop_hands_out_decisions_and_stops() -> None:
    # Prepare
    sched = Scheduler(InMemoryState(), VirtualClock(), config=SchedulerConfig(delta=0.01))
    sched.open_round(EstimatorJob(job_id="e", model_bytes=1, strategy="eager-serverless"), 0,
                     n_expected=1, now=0.0)
    sched.record_arrivals("e", 0, [0.0])
    stop = threading.Event()
    seen: list[Decision] = []

    def handle(decisions: list[Decision]) -> None:
        seen.extend(decisions)
        stop.set()

    # Execute: returns once ``stop`` is set
    sched.run(handle, stop)
    # Assert
    assert [d.kind for d in seen] == ["aggregate"]
