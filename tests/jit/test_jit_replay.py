"""Replaying a live job: explicit workloads and the keep-alive platform, computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from bench.jit.cost import CostModel
from bench.jit.keepalive import KeepAlivePool
from bench.jit.simulator import ExplicitWorkload, SimConfig, simulate
from fedfaas.errors import BadRequest
from fedfaas.jit.spec import PartyTiming

# io = M / b_dc = 0.1 s, fusion negligible: every stateless step keeps a container 0.2 s busy
COST = CostModel(cold_start_s=1.0, keep_alive_s=2.0, b_dc=1e4, fusion_bw=1e15)
PARTIES = tuple(PartyTiming(party_id=f"p{i}", t_epoch=2.0, b_down=1e6, b_up=1e6)
                for i in range(2))


def _workload() -> ExplicitWorkload:
    return ExplicitWorkload(PARTIES, np.array([[1.0, 5.0], [1.0, 2.0]]), model_bytes=1000,
                            open_delay_s=0.5)


def test_pool_reuses_a_warm_container_and_cold_starts_after_the_keep_alive() -> None:
    # Prepare
    pool = KeepAlivePool(cap=1, cold_s=1.0, keep_alive_s=2.0)
    # Execute
    finish = pool.run(np.array([0.0, 2.0, 10.0]), np.array([0.5, 0.5, 0.5]))
    # Assert: cold 0-1.5, warm 2-2.5, dead at 4.5; cold again 10-11.5, dead at 13.5
    assert finish.tolist() == [1.5, 2.5, 11.5]
    assert pool.cold_starts == 2
    assert pool.container_s() == pytest.approx(4.5 + 3.5)


def test_pool_queues_on_a_busy_container_that_frees_sooner_than_a_cold_start() -> None:
    # Prepare
    pool = KeepAlivePool(cap=2, cold_s=1.0, keep_alive_s=5.0)
    # Execute: the second call waits 0.9 s for the first container instead of a new one
    finish = pool.run(np.array([0.0, 0.2]), np.array([0.1, 0.1]))
    # Assert
    assert finish.tolist() == pytest.approx([1.1, 1.2])
    assert pool.cold_starts == 1
    assert pool.container_s() == pytest.approx(1.2 + 5.0)


def test_pool_refuses_calls_out_of_order() -> None:
    pool = KeepAlivePool(cap=1, cold_s=1.0, keep_alive_s=2.0)
    pool.run(np.array([3.0]), np.array([0.1]))
    with pytest.raises(BadRequest):
        pool.run(np.array([2.0]), np.array([0.1]))


def test_eager_replay_on_the_keep_alive_platform() -> None:
    # Execute
    res = simulate(SimConfig.replay(_workload(), "eager-serverless", cost=COST))
    # Assert: round 0 - cold call 1-2.2, dies 4.2; cold call 5-6.2, finalise 6.2-6.4;
    # round 1 opens 6.9 - warm calls 7.9-8.1 and 8.9-9.1, finalise 9.1-9.3, dies 11.3
    assert res.container_s == pytest.approx(3.2 + 6.3)
    assert res.cold_starts == 2 and res.invocations == 6
    assert res.latencies == pytest.approx([6.4 - 5.0, 9.3 - 8.9])


def test_always_on_replay_is_alive_for_the_job_and_the_keep_alive() -> None:
    # Execute
    res = simulate(SimConfig.replay(_workload(), "eager-always-on", cost=COST))
    # Assert: calls 1-1.2, 5-5.2, model 5.4; round 1 opens 5.9, calls end 8.1, model 8.3
    assert res.container_s == pytest.approx(8.3 + 2.0)
    assert res.latencies == pytest.approx([0.4, 0.4])


def test_explicit_workload_is_validated() -> None:
    with pytest.raises(BadRequest):
        ExplicitWorkload(PARTIES, np.array([[1.0, 2.0, 3.0]]), model_bytes=1000)
    with pytest.raises(BadRequest):
        ExplicitWorkload(PARTIES, np.array([[1.0, 9.0]]), model_bytes=1000, t_wait=8.0)
    with pytest.raises(BadRequest):
        SimConfig.replay(_workload(), "jit", cost=COST, platform="kubernetes")
