"""The JIT scheduler: priorities, timers, capacity, preemption and claims (JIT paper 5.5, Fig. 6).

At round start (Fig. 6 lines 14-18) a task gets the priority and timer its
strategy asks for (``t_rnd - t_agg`` for JIT).  Every ``delta`` seconds (or on
an arrival) :meth:`Scheduler.tick`

1. takes over decisions whose owner's lease expired (a crashed replica);
2. fires due timers (lines 19-21: the task must run now);
3. closes rounds whose ``t_wait`` passed (quorum met) or fails them;
4. walks tasks by priority and admits each strategy's launches while
   capacity (aggregate instances running at once, shared by all jobs) lasts;
   a task that must run and finds capacity full flags lower-priority
   running decisions for preemption (their owners checkpoint the partial
   aggregate and report how far they got; the rest is resumed later);
5. with capacity still idle, runs waiting tasks that have pending updates
   opportunistically, by priority; tasks without pending updates are left
   deferred with their priority;
6. issues ``finalise`` once a closed round's updates are all fused.

All state goes through a :class:`~fedfaas.jit.state.SchedulerState`; each
launch is an atomic compare-and-set on the task's ``epoch`` (bumped by every
launch, resume and close), so any number of schedulers may tick the same
state and each update is launched exactly once while its claim's lease is
renewed (after a lease expires the work is re-issued: aggregate functions
must be idempotent).
"""

from __future__ import annotations

import math
import operator
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedfaas.errors import BadRequest, Conflict, NotFound
from fedfaas.jit.clock import Clock
from fedfaas.jit.estimate import JobEstimate
from fedfaas.jit.spec import EstimatorJob
from fedfaas.jit.state import (
    FAILED,
    FINALISING,
    OPEN,
    Decision,
    SchedulerState,
    TaskRecord,
    task_key,
)
from fedfaas.jit.strategies import (
    STRATEGY_CLASSES,
    AggregationStrategy,
    LaunchPlan,
    TaskView,
)


@dataclass(frozen=True)
class SchedulerConfig:
    """Scheduler knobs.

    Parameters
    ----------
    capacity
        Aggregate instances that may run at once across all jobs (None: unbounded).
    delta
        Seconds between scheduling decisions (paper 5.5's delta) for :meth:`Scheduler.run`.
    lease_s
        How long a claim stays valid without renewal.
    max_tasks_per_tick
        Upper bound on tasks examined per tick (highest priority first).
    opportunistic
        Run waiting tasks early when capacity is idle (paper 5.5).  Needs a
        ``capacity``: with an unbounded one, idleness is unknown and nothing
        runs before its timer.
    """

    capacity: int | None = None
    delta: float = 1.0
    lease_s: float = 30.0
    max_tasks_per_tick: int = 10_000
    opportunistic: bool = True

    def __post_init__(self) -> None:
        if self.capacity is not None and self.capacity < 1:
            raise BadRequest(f"capacity must be >= 1 or None, got {self.capacity}")
        if self.delta <= 0 or self.lease_s <= 0 or self.max_tasks_per_tick < 1:
            raise BadRequest("delta and lease_s must be > 0 and max_tasks_per_tick >= 1")


class Scheduler:
    """Runs aggregation tasks of many jobs on shared capacity (see the module docstring)."""

    def __init__(self, state: SchedulerState, clock: Clock, *, owner: str | None = None,
                 config: SchedulerConfig | None = None,
                 strategies: Mapping[str, AggregationStrategy] | None = None) -> None:
        self.state = state
        self.clock = clock
        self.owner = owner or f"sched-{uuid.uuid4().hex[:12]}"
        self.config = config or SchedulerConfig()
        self.strategies = dict(strategies) if strategies is not None else {
            name: cls() for name, cls in STRATEGY_CLASSES.items()}

    def _now(self, now: float | None) -> float:
        return self.clock.now() if now is None else float(now)

    def _strategy(self, name: str) -> AggregationStrategy:
        try:
            return self.strategies[name]
        except KeyError:
            raise BadRequest(f"unknown strategy {name!r}") from None

    # -- rounds and arrivals ------------------------------------------------------------

    def open_round(self, job: EstimatorJob, round_no: int, *, n_expected: int,
                   estimate: JobEstimate | None = None, now: float | None = None,
                   min_chunk: int = 1) -> TaskRecord:
        """Create the round's aggregation task with its priority and timer (Fig. 6 lines 14-18).

        ``min_chunk`` is the fewest updates worth a separate drain instance.
        """
        if n_expected < 1 or round_no < 0 or min_chunk < 1:
            raise BadRequest("n_expected and min_chunk must be >= 1 and round_no >= 0")
        t0 = self._now(now)
        priority, timer = self._strategy(job.strategy).schedule(t0, estimate)
        task = TaskRecord(
            job_id=job.job_id, round=round_no, strategy=job.strategy, round_start=t0,
            priority=priority, n_expected=n_expected, quorum=min(job.quorum or n_expected, n_expected),
            due=None if job.t_wait is None else t0 + job.t_wait, timer_at=timer,
            n_agg=estimate.n_agg if estimate is not None and estimate.n_agg else job.n_agg,
            batch_size=job.batch_size, min_chunk=min_chunk,
        )
        if not self.state.create_task(task):
            raise Conflict(f"round {round_no} of job {job.job_id} is already open")
        return task

    def record_arrivals(self, job_id: str, round_no: int, times: Sequence[float] | np.ndarray,
                        update_ids: Sequence[str] | None = None) -> int:
        """Record updates that arrived at ``times`` (sorted); returns how many were accepted.

        Updates after the round closed (all in, or ``t_wait`` passed) are refused.
        """
        t = np.asarray(times, dtype=np.float64)
        if t.ndim != 1 or (t.size > 1 and np.any(np.diff(t) < 0)) or not np.all(np.isfinite(t)):
            raise BadRequest("arrival times must be a finite, sorted 1-d sequence")
        if update_ids is not None and len(update_ids) != t.size:
            raise BadRequest("update_ids and times differ in length")
        key = task_key(job_id, round_no)
        task = self.state.get_task(key)
        if task is None:
            raise NotFound(f"round {round_no} of job {job_id} is not open")
        if task.due is not None and t.size and t[-1] > task.due:
            t = t[t <= task.due]  # later than t_wait: ignored (paper 4.3)
            update_ids = None if update_ids is None else update_ids[: t.size]
        accepted, _ = self.state.record_arrivals(key, t, update_ids)
        return accepted

    def record_arrival(self, job_id: str, round_no: int, update_id: str | None = None,
                       now: float | None = None) -> bool:
        """Record one update arriving now; False if the round no longer takes updates."""
        ids = None if update_id is None else [update_id]
        return self.record_arrivals(job_id, round_no, [self._now(now)], ids) == 1

    # -- decisions ------------------------------------------------------------------------

    def _view(self, t: TaskRecord) -> TaskView:
        return TaskView(t.job_id, t.round, t.round_start, t.priority, t.n_expected, t.quorum,
                        t.due, t.timer_at, t.forced_at, t.closed_at, t.n_arrived, t.n_launched,
                        t.running, t.n_agg, t.batch_size, t.min_chunk)

    def _decision(self, task: TaskRecord, kind: str, now: float, plan: LaunchPlan | None = None,
                  target: str | None = None) -> Decision:
        d = Decision(self.state.new_id(), kind, task.job_id, task.round, task.priority,
                     self.owner, now + self.config.lease_s, target=target)
        if plan is not None:
            d.first, d.count = plan.first.tolist(), plan.count.tolist()
            d.ready_at, d.mode, d.reason = plan.ready_at.tolist(), plan.mode, plan.reason
        return d

    def _with_ids(self, d: Decision) -> Decision:
        """Resolve each invocation's update ids with one read of the arrival log."""
        if d.kind == "aggregate" and d.first:
            lo = min(d.first)
            hi = max(map(operator.add, d.first, d.count))
            ids = self.state.update_ids(d.task_key, lo, hi)
            d.update_ids = None if ids is None or len(ids) != hi - lo else [
                ids[f - lo:f - lo + c] for f, c in zip(d.first, d.count, strict=True)]
        return d

    def _preempt_for(self, task: TaskRecord, needed: int) -> None:
        """Flag lower-priority running aggregations until ``needed`` invocations will free up."""
        victims = [d for d in self.state.inflight()
                   if d.kind == "aggregate" and not d.preempt and d.priority > task.priority]
        victims.sort(key=lambda d: -d.priority)
        freed = 0
        for d in victims:
            if freed >= needed:
                break
            if self.state.request_preempt(d.decision_id):
                freed += d.n_invocations - len(d.parts_done)

    def _plan(self, task: TaskRecord, now: float, idle: bool) -> tuple[LaunchPlan, LaunchPlan]:
        """Resumed remainders (ready now) and the strategy's plan for pending updates."""
        strategy = self._strategy(task.strategy)
        resumed = LaunchPlan.empty(strategy.mode)
        if task.resume:
            r = np.asarray(task.resume, dtype=np.int64).reshape(-1, 2)
            resumed = LaunchPlan(r[:, 0], r[:, 1], np.full(len(r), now), strategy.mode, "resume")
        plan = LaunchPlan.empty(strategy.mode)
        if task.n_arrived > task.n_launched:
            times = self.state.arrival_times(task.key, task.n_launched, task.n_arrived)
            plan = strategy.plan(self._view(task), times, now, idle)
        return resumed, plan

    def _admit(self, task: TaskRecord, now: float, free: float, idle: bool,
               out: list[Decision]) -> tuple[int, bool]:
        """Plan and commit launches for one task; returns (invocations started, planned any)."""
        resumed, plan = self._plan(task, now, idle)
        if plan.size and (plan.first[0] != task.n_launched
                          or plan.n_updates != int(plan.first[-1] + plan.count[-1] - plan.first[0])):
            raise Conflict(f"strategy {task.strategy} planned a non-contiguous launch")
        wanted = resumed.size + plan.size
        if wanted == 0:
            return self._maybe_finalise(task, now, free, out), False
        room = max(0, int(min(wanted, free))) if math.isfinite(free) else wanted
        if room < wanted and not idle:
            self._preempt_for(task, wanted - room)
        if room == 0:
            return 0, True
        take_resumed = resumed.head(room)
        take_plan = plan.head(room - take_resumed.size)
        launch = take_resumed.concat(take_plan) if take_resumed.size else take_plan
        leftover = task.resume[take_resumed.size:]
        d = self._decision(task, "aggregate", now, launch)
        ok = self.state.commit(task.key, task.epoch, task.n_launched + take_plan.n_updates,
                               [d], self.config.capacity, leftover if resumed.size else None, None)
        if not ok:
            return 0, True
        out.append(self._with_ids(d))
        return launch.size, True

    def _maybe_finalise(self, task: TaskRecord, now: float, free: float,
                        out: list[Decision]) -> int:
        done = (task.status == OPEN and task.closed_at is not None and task.running == 0
                and task.n_launched == task.n_arrived and not task.resume)
        if not done:
            return 0
        if free < 1:
            self._preempt_for(task, 1)
            return 0
        d = self._decision(task, "finalise", now)
        if self.state.commit(task.key, task.epoch, task.n_launched, [d],
                             self.config.capacity, None, FINALISING):
            out.append(d)
            return 1
        return 0

    def tick(self, now: float | None = None) -> list[Decision]:
        """One scheduling decision round (see the module docstring); returns what to do now."""
        t = self._now(now)
        out = [self._with_ids(d) for d in
               self.state.reclaim(self.owner, t, t + self.config.lease_s)]
        for key in self.state.due_timers(t):
            self.state.fire_timer(key)
        cap = self.config.capacity
        free: float = math.inf if cap is None else cap - self.state.running_total()
        waiting: list[TaskRecord] = []
        for task in self.state.active_tasks(self.config.max_tasks_per_tick):
            if task.status != OPEN:
                continue
            if task.closed_at is None and task.due is not None and t >= task.due:
                if task.n_arrived < task.quorum:
                    if self.state.close_task(task.key, task.due, FAILED):
                        out.append(self._decision(task, "round_failed", t))
                    continue
                self.state.close_task(task.key, task.due, OPEN)
                task = self.state.get_task(task.key) or task
            started, planned = self._admit(task, t, free, False, out)
            free -= started
            if not planned and task.n_arrived > task.n_launched:
                waiting.append(task)
        if cap is None or not self.config.opportunistic:
            waiting = []
        for task in waiting:  # idle capacity: opportunistic runs by priority (paper 5.5)
            if free < 1:
                break
            fresh = self.state.get_task(task.key)
            if fresh is not None:
                free -= self._admit(fresh, t, free, True, out)[0]
        out.extend(Decision(f"{d.decision_id}/preempt", "preempt", d.job_id, d.round, d.priority,
                            self.owner, d.lease_until, target=d.decision_id)
                   for d in self.state.inflight() if d.preempt and d.owner == self.owner)
        return out

    def complete(self, decision_id: str, part: int | None = None,
                 n_fused: int | None = None) -> Decision | None:
        """Report invocation ``part`` (None: all) of a decision done; ``n_fused`` below its
        count means it was preempted after that many updates (the rest is resumed)."""
        return self.state.complete(decision_id, part, n_fused)

    def renew_leases(self, now: float | None = None) -> int:
        """Keep this scheduler's claims alive."""
        return self.state.renew(self.owner, self._now(now) + self.config.lease_s)

    def run(self, handle: Callable[[list[Decision]], None], stop: threading.Event) -> None:
        """Tick every ``delta`` seconds until ``stop`` is set, handing decisions to ``handle``."""
        while not stop.is_set():
            decisions = self.tick()
            if decisions:
                handle(decisions)
            self.renew_leases()
            stop.wait(self.config.delta)
