"""Arrivals recorded out of order (two gateway replicas racing) keep the arrival log sorted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from fedfaas.jit.clock import VirtualClock
from fedfaas.jit.redis_state import RedisState
from fedfaas.jit.scheduler import Scheduler
from fedfaas.jit.spec import EstimatorJob
from fedfaas.jit.state import InMemoryState, SchedulerState


@pytest.fixture(params=["memory", "redis"])
def state(request: pytest.FixtureRequest) -> Iterator[SchedulerState]:
    if request.param == "memory":
        yield InMemoryState()
        return
    client = redis.Redis.from_url(request.getfixturevalue("redis_url"), socket_timeout=5)
    ns = f"jit-order-{uuid.uuid4().hex[:8]}"
    try:
        yield RedisState(client, ns)
    finally:
        for key in client.scan_iter(f"{ns}:*"):
            client.delete(key)
        client.close()


def test_late_recorded_earlier_update_joins_the_same_lazy_launch(state: SchedulerState) -> None:
    # Prepare: three parties; the third update is stamped 4.9 s but recorded after one of 5.0 s
    sched = Scheduler(state, VirtualClock(), owner="s")
    sched.open_round(EstimatorJob(job_id="j", model_bytes=1, strategy="lazy"), 0, n_expected=3, now=0.0)
    sched.record_arrival("j", 0, "a", now=1.0)
    sched.record_arrival("j", 0, "b", now=5.0)
    # Execute
    sched.record_arrival("j", 0, "c", now=4.9)
    decisions = sched.tick(6.0)
    # Assert: sorted log, closed at the last recorded time, one launch with all three updates
    assert state.arrival_times("j/0", 0, 3).tolist() == [1.0, 5.0, 5.0]
    task = state.get_task("j/0")
    assert task is not None and task.closed_at == 5.0
    assert [(d.kind, d.count, d.update_ids) for d in decisions] == [
        ("aggregate", [3], [["a", "b", "c"]])]


def test_close_at_an_epoch_timestamp_includes_the_last_arrival(state: SchedulerState) -> None:
    # Prepare: wall-clock times whose 14-digit rounding goes down (the task is stored as JSON)
    sched = Scheduler(state, VirtualClock(), owner="s")
    sched.open_round(EstimatorJob(job_id="j", model_bytes=1, strategy="lazy"), 0, n_expected=2, now=0.0)
    sched.record_arrival("j", 0, "a", now=1795253980.0)
    # Execute
    sched.record_arrival("j", 0, "b", now=1795253986.91534)
    decisions = sched.tick(1795253987.0)
    # Assert: the close is the last logged arrival, and one launch takes both updates
    task = state.get_task("j/0")
    assert task is not None and task.closed_at == state.arrival_times("j/0", 0, 2)[-1]
    assert [(d.kind, d.count) for d in decisions] == [("aggregate", [2])]
