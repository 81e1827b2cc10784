"""An arrival event handled twice (a replica died before acknowledging it) counts once."""

from __future__ import annotations

import uuid

import redis

from fedfaas.jit.clock import VirtualClock
from fedfaas.jit.redis_state import RedisState
from fedfaas.jit.scheduler import Scheduler
from fedfaas.jit.spec import EstimatorJob
from fedfaas.jit.state import InMemoryState, SchedulerState, task_key


def _arrive_twice(state: SchedulerState) -> tuple[int, list[str] | None, list[bool]]:
    sched = Scheduler(state, VirtualClock(), owner="s0")
    sched.open_round(EstimatorJob(job_id="j", model_bytes=1, strategy="eager-serverless"), 1,
                     n_expected=3, now=0.0)
    accepted = [sched.record_arrival("j", 1, party, now=t)
                for t, party in ((1.0, "p0"), (2.0, "p1"), (3.0, "p0"))]
    task = state.get_task(task_key("j", 1))
    assert task is not None
    return task.n_arrived, state.update_ids(task_key("j", 1), 0, task.n_arrived), accepted


def test_a_repeated_update_id_is_not_counted_again_in_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    n, ids, accepted = _arrive_twice(RedisState(client, f"jit-once-{uuid.uuid4().hex[:8]}"))
    assert (n, ids, accepted) == (2, ["p0", "p1"], [True, True, False])


def test_a_repeated_update_id_is_not_counted_again_in_memory() -> None:
    n, ids, accepted = _arrive_twice(InMemoryState())
    assert (n, ids, accepted) == (2, ["p0", "p1"], [True, True, False])
