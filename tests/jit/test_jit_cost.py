"""The platform model behind the simulator's container-seconds, on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from bench.jit.cost import ArrivalForecast, CostModel, PoolRun, always_on_finish, run_pool


def _pool(ready: list[float], work: list[float], *, cap: int, cold_s: float, idle_limit_s: float,
          forecast: ArrivalForecast | None = None) -> PoolRun:
    return run_pool(np.array(ready), np.array(work), cap=cap, cold_s=cold_s,
                    idle_limit_s=idle_limit_s, forecast=forecast)


def test_keep_alive_reuses_a_warm_container_or_lets_it_die() -> None:
    # Execute: cold start 1 s, work 1 s, keep-alive 60 s
    far = _pool([0.0, 100.0], [1.0, 1.0], cap=4, cold_s=1.0, idle_limit_s=60.0)
    near = _pool([0.0, 30.0], [1.0, 1.0], cap=4, cold_s=1.0, idle_limit_s=60.0)
    # Assert: far apart: alive 0..62 (died idle), then 100..102; near: one container 0..31
    assert far.finish.tolist() == [2.0, 102.0] and far.cold_starts == 2
    assert far.container_s == pytest.approx(62.0 + 2.0)
    assert near.finish.tolist() == [2.0, 31.0] and near.cold_starts == 1
    assert near.container_s == pytest.approx(31.0)


def test_queueing_at_capacity_and_waiting_for_a_container_about_to_free() -> None:
    # Execute: one container, three invocations at once
    queued = _pool([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], cap=1, cold_s=1.0, idle_limit_s=0.0)
    # a busy container frees at 6 s; an invocation at 5.5 s waits 0.5 s rather than cold-start 1 s
    waits = _pool([0.0, 5.5], [5.0, 1.0], cap=2, cold_s=1.0, idle_limit_s=0.0)
    # Assert
    assert queued.finish.tolist() == [2.0, 3.0, 4.0]
    assert waits.finish.tolist() == [6.0, 7.0] and waits.cold_starts == 1


def test_forecast_keeps_one_container_warm_or_prewarms_it_just_in_time() -> None:
    # Prepare: drain runs, cold 1 s, relaunch break-even 2 s
    near = ArrivalForecast.of(np.array([0.0, 3.0]), np.array([0.0, 2.5]), np.array([0.0, 4.0]))
    far = ArrivalForecast.of(np.array([0.0, 30.0]), np.array([0.0, 29.0]), np.array([0.0, 31.0]))
    # Execute
    held = _pool([0.0, 3.0], [1.0, 1.0], cap=2, cold_s=1.0, idle_limit_s=2.0, forecast=near)
    warmed = _pool([0.0, 30.0], [1.0, 1.0], cap=2, cold_s=1.0, idle_limit_s=2.0, forecast=far)
    # Assert: next update expected at 2.5 s: stay warm, fuse at once on arrival at 3 s
    assert held.finish.tolist() == [2.0, 4.0] and held.cold_starts == 1
    # expected at 29 s: release at 2 s, pre-warm from 28 s, ready when the update comes at 30 s
    assert warmed.finish.tolist() == [2.0, 31.0] and warmed.cold_starts == 2
    assert warmed.container_s == pytest.approx(2.0 + 3.0)


def test_always_on_lanes_are_fifo_queues() -> None:
    # Execute: lane 0 gets arrivals at 0, 0, 0, 5; lane 1 one at 1; service 1 s
    finish = always_on_finish(np.array([0.0, 0.0, 1.0, 0.0, 5.0]), np.array([0, 0, 1, 0, 0]), 2, 1.0)
    # Assert
    assert finish.tolist() == [1.0, 2.0, 2.0, 3.0, 6.0]


def test_finalise_merges_partials_by_a_tree() -> None:
    # Prepare: M / B_dc = 1 s, t_fuse = 0.5 s -> one merge step = 1.5 s
    cost = CostModel(b_dc=1.0, fusion_bw=1.0, c_agg=2)
    # Execute
    duration, work = cost.finalise(1.0, 4)
    # Assert: 2 tree levels + write the model; 3 merges + write
    assert duration == pytest.approx(2 * 1.5 + 1.0)
    assert work == pytest.approx(3 * 1.5 + 1.0)
    assert cost.cost_usd(1000.0) == pytest.approx(0.2692)
