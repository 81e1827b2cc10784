"""The scheduler on a real Redis: claims are exactly-once across replicas and survive a crash."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from fedfaas.jit.clock import VirtualClock
from fedfaas.jit.estimator import DeadlineEstimator
from fedfaas.jit.redis_state import RedisState
from fedfaas.jit.scheduler import Scheduler, SchedulerConfig
from fedfaas.jit.spec import EstimatorJob, PartyTiming
from fedfaas.jit.state import DONE, Decision


@pytest.fixture()
def states(redis_url: str) -> Iterator[list[RedisState]]:
    """Three independent clients on one fresh namespace (as three gateway replicas)."""
    ns = f"jit-test-{uuid.uuid4().hex[:8]}"
    clients = [redis.Redis.from_url(redis_url, socket_timeout=5) for _ in range(3)]
    try:
        yield [RedisState(c, ns) for c in clients]
    finally:
        for key in clients[0].scan_iter(f"{ns}:*"):
            clients[0].delete(key)
        for c in clients:
            c.close()


def _jit_estimate(job: EstimatorJob, deadline: float, n: int) -> object:
    parties = [PartyTiming(party_id=f"p{i}", t_epoch=deadline, b_down=1e12, b_up=1e12)
               for i in range(n)]
    return DeadlineEstimator(job, parties, t_pair=0.0).estimate()


def test_two_schedulers_launch_every_update_exactly_once(states: list[RedisState]) -> None:
    # Prepare: four jobs, one per strategy family, 30 updates each; replicas s0 and s1 tick
    # concurrently while a third client records arrivals
    clock = VirtualClock()
    scheds = [Scheduler(states[i], clock, owner=f"s{i}") for i in range(3)]
    n = 30
    jobs = [EstimatorJob(job_id="eager", model_bytes=1, strategy="eager-serverless"),
            EstimatorJob(job_id="batch", model_bytes=1, strategy="batched-serverless", batch_size=4),
            EstimatorJob(job_id="lazy", model_bytes=1, strategy="lazy", n_agg=3),
            EstimatorJob(job_id="jit", model_bytes=1, strategy="jit", n_agg=2, b_dc=1e12)]
    for job in jobs:
        est = _jit_estimate(job, 12.0, n) if job.strategy == "jit" else None
        scheds[2].open_round(job, 0, n_expected=n, estimate=est, now=0.0)  # type: ignore[arg-type]
    now = [0.0]
    fed = threading.Event()
    got: list[list[Decision]] = [[], []]

    def feed() -> None:
        for t in range(1, n + 1):
            for job in jobs:
                scheds[2].record_arrival(job.job_id, 0, f"{job.job_id}-{t}", now=float(t))
            now[0] = float(t)
        fed.set()

    def replica(i: int) -> None:
        for _ in range(400):
            done = fed.is_set()
            for d in scheds[i].tick(now[0] if not done else n + 1.0):  # leases stay valid
                got[i].append(d)
                if d.kind in ("aggregate", "finalise"):
                    scheds[i].complete(d.decision_id)
            if done and all(getattr(states[i].get_task(f"{j.job_id}/0"), "status", None) == DONE
                            for j in jobs):
                return

    threads = [threading.Thread(target=feed)] + [
        threading.Thread(target=replica, args=(i,)) for i in (0, 1)]
    # Execute
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    # Assert: every update in exactly one launch, one finalise per job, every task done
    decisions = got[0] + got[1]
    ids = Counter(u for d in decisions if d.kind == "aggregate"
                  for part in (d.update_ids or []) for u in part)
    expected = {f"{j.job_id}-{t}" for j in jobs for t in range(1, n + 1)}
    assert set(ids) == expected
    assert max(ids.values()) == 1
    finals = Counter(d.job_id for d in decisions if d.kind == "finalise")
    assert finals == Counter({j.job_id: 1 for j in jobs})
    for j in jobs:
        task = states[0].get_task(f"{j.job_id}/0")
        assert task is not None and task.status == DONE
    assert states[0].running_total() == 0


def test_crashed_replica_claims_are_taken_over_after_the_lease(states: list[RedisState]) -> None:
    # Prepare: replica A claims the launch of two updates with a 10 s lease
    clock = VirtualClock()
    cfg = SchedulerConfig(lease_s=10.0)
    a = Scheduler(states[0], clock, owner="A", config=cfg)
    b = Scheduler(states[1], clock, owner="B", config=cfg)
    job = EstimatorJob(job_id="e", model_bytes=1, strategy="lazy")
    a.open_round(job, 0, n_expected=2, now=0.0)
    a.record_arrivals("e", 0, [1.0, 2.0], ["u1", "u2"])
    (claimed,) = a.tick(2.0)
    # Execute / Assert: while A renews, B takes nothing
    assert b.tick(5.0) == []
    assert a.renew_leases(now=8.0) == 1
    assert b.tick(15.0) == []
    # A stops renewing (crashed); after its lease B re-issues the same work
    (taken,) = b.tick(19.0)
    assert (taken.decision_id, taken.owner, taken.update_ids) == (
        claimed.decision_id, "B", [["u1", "u2"]])
    assert a.renew_leases(now=20.0) == 0
    assert a.tick(21.0) == []
    b.complete(taken.decision_id)
    (final,) = b.tick(22.0)
    assert final.kind == "finalise"


def test_timer_fires_once_and_preempted_work_resumes(states: list[RedisState]) -> None:
    # Prepare
    clock = VirtualClock()
    sched = Scheduler(states[0], clock, owner="A", config=SchedulerConfig(capacity=4))
    job = EstimatorJob(job_id="j", model_bytes=1, strategy="jit", b_dc=1e12)
    sched.open_round(job, 0, n_expected=5, estimate=_jit_estimate(job, 10.0, 5),  # type: ignore[arg-type]
                     now=0.0)
    sched.record_arrivals("j", 0, [1.0, 2.0, 3.0], ["a", "b", "c"])
    # Execute: both clients see the due timer; only one fires it
    assert states[0].due_timers(11.0) == states[1].due_timers(11.0) == ["j/0"]
    assert [states[0].fire_timer("j/0"), states[1].fire_timer("j/0")] == [True, False]
    (run,) = sched.tick(11.0)
    assert states[1].request_preempt(run.decision_id) is True
    assert states[0].request_preempt(run.decision_id) is False
    (notice,) = sched.tick(11.5)
    sched.complete(run.decision_id, part=0, n_fused=2)
    (resumed,) = sched.tick(12.0)
    # Assert
    assert (run.first, run.count, run.reason) == ([0], [3], "deadline")
    assert (notice.kind, notice.target) == ("preempt", run.decision_id)
    assert (resumed.first, resumed.count, resumed.update_ids) == ([2], [1], [["c"]])
