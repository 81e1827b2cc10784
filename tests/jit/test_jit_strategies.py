"""Each strategy's launches on a tiny job, through the scheduler on a virtual clock."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas.jit.clock import VirtualClock
from fedfaas.jit.estimator import DeadlineEstimator
from fedfaas.jit.scheduler import Scheduler
from fedfaas.jit.spec import EstimatorJob, PartyTiming
from fedfaas.jit.state import InMemoryState
from fedfaas.jit.strategies import LaunchPlan, TaskView, split_chunks, strategy_for

ARRIVALS = [1.0, 2.0, 3.0, 4.0, 5.0]


def _run(strategy: str, timer_at: float | None = None) -> list[tuple[list[int], list[int],
                                                                     list[float], str]]:
    """Five updates arriving at 1..5 s; the scheduler ticks on every arrival."""
    clock = VirtualClock()
    sched = Scheduler(InMemoryState(), clock)
    job = EstimatorJob(job_id="j", model_bytes=10**6, strategy=strategy, batch_size=2, n_agg=2)
    estimate = None
    if strategy == "jit":
        parties = [PartyTiming(party_id=f"p{i}", t_epoch=3.5, b_down=1e9, b_up=1e9)
                   for i in range(5)]
        estimate = DeadlineEstimator(job, parties, t_pair=0.0).estimate()
    sched.open_round(job, 0, n_expected=5, estimate=estimate, now=0.0)
    out = []
    for t in ARRIVALS:
        clock.advance_to(t)
        sched.record_arrival("j", 0, f"u{t:g}")
        out += [(d.first, d.count, d.ready_at, d.mode) for d in sched.tick()
                if d.kind == "aggregate"]
    return out


def test_eager_serverless_one_invocation_per_update() -> None:
    launches = _run("eager-serverless")
    assert [(f, c) for f, c, _, _ in launches] == [([i], [1]) for i in range(5)]
    assert {m for *_, m in launches} == {"stateless"}


def test_eager_always_on_handles_each_update_on_the_always_on_aggregator() -> None:
    launches = _run("eager-always-on")
    assert len(launches) == 5 and {m for *_, m in launches} == {"always-on"}


def test_batched_serverless_batches_of_k_plus_remainder_at_close() -> None:
    launches = _run("batched-serverless")
    # k = 2: [0, 1] at 2 s, [2, 3] at 4 s, the remainder [4] when the round closes at 5 s
    assert [(f, c, r) for f, c, r, _ in launches] == [([0], [2], [2.0]), ([2], [2], [4.0]),
                                                      ([4], [1], [5.0])]


def test_lazy_runs_everything_after_the_last_update_split_over_n_agg() -> None:
    launches = _run("lazy")
    assert [(f, c, r) for f, c, r, _ in launches] == [([0, 3], [3, 2], [5.0, 5.0])]


def test_jit_waits_for_its_timer_then_joins_later_updates() -> None:
    # t_upd = 3.5 + 2 x 1 MB / (1 GB/s) = 3.502 s, t_agg = M / B_dc = 0.0008 s -> timer 3.5012 s
    launches = _run("jit")
    # at the 4 s tick: three updates in by the timer, split over two instances, ready at the
    # timer; the 4th joins on arrival; the 5th at the next tick
    assert len(launches) == 2
    first, count, ready, mode = launches[0]
    assert (first, count, mode) == ([0, 2, 3], [2, 1, 1], "drain")
    assert ready == pytest.approx([3.5012, 3.5012, 4.0])
    assert launches[1][:2] == ([4], [1])


def test_split_chunks_and_plan_validation() -> None:
    firsts, counts = split_chunks(10, 7, 3)
    assert firsts.tolist() == [10, 13, 15] and counts.tolist() == [3, 2, 2]
    with pytest.raises(Exception, match="same length"):
        LaunchPlan(np.zeros(2, dtype=np.int64), np.zeros(1, dtype=np.int64), np.zeros(2),
                   "drain", "x")


def test_jit_runs_opportunistically_only_when_told_capacity_is_idle() -> None:
    # Prepare: 3 pending updates, timer far away
    view = TaskView("j", 0, 0.0, 100.0, 10, 10, None, 100.0, None, None, 3, 0, 0, 1, 1)
    jit = strategy_for("jit")
    times = np.array([1.0, 2.0, 3.0])
    # Execute / Assert
    assert jit.plan(view, times, 4.0, idle=False).size == 0
    plan = jit.plan(view, times, 4.0, idle=True)
    assert (plan.first.tolist(), plan.count.tolist(), plan.reason) == ([0], [3], "opportunistic")
