"""Scheduler state behind one protocol: in memory (simulator) or Redis (gateway replicas).

The JIT scheduler (paper 5.5) keeps a task per (job, round) with its priority,
timer and arrival log, plus the in-flight decisions and who claimed them.
:class:`SchedulerState` lists the operations the
:class:`~fedfaas.jit.scheduler.Scheduler` needs; each is atomic, so several
scheduler instances may share one state and every update is launched exactly
once.  :class:`InMemoryState` is the single-process implementation;
:mod:`fedfaas.jit.redis_state` the shared one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from fedfaas.errors import Conflict, NotFound

OPEN, FINALISING, DONE, FAILED = "open", "finalising", "done", "failed"


def task_key(job_id: str, round_no: int) -> str:
    """The id of a (job, round) task."""
    return f"{job_id}/{round_no}"


@dataclass
class TaskRecord:
    """One aggregation task: a job's round (Fig. 6 line 15, 'create aggregators')."""

    job_id: str
    round: int
    strategy: str
    round_start: float
    priority: float
    n_expected: int
    quorum: int
    due: float | None = None
    timer_at: float | None = None
    forced_at: float | None = None
    closed_at: float | None = None
    n_arrived: int = 0
    n_launched: int = 0
    running: int = 0
    n_agg: int = 1
    batch_size: int = 1
    min_chunk: int = 1
    status: str = OPEN
    resume: list[list[int]] = field(default_factory=list)
    last_arrival: float | None = None
    epoch: int = 0
    """Bumped by every change to what may be launched (cursor, resume list, status)."""

    @property
    def key(self) -> str:
        """``job/round``."""
        return task_key(self.job_id, self.round)

    def to_json(self) -> str:
        """Compact JSON."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> TaskRecord:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(raw))


@dataclass
class Decision:
    """A claimed unit of work: ``kind`` is ``aggregate`` (a batch of invocations),
    ``finalise`` (merge partials, publish the global model), ``preempt`` (checkpoint
    and stop decision ``target``) or ``round_failed`` (quorum missed at ``t_wait``).
    """

    decision_id: str
    kind: str
    job_id: str
    round: int
    priority: float
    owner: str
    lease_until: float
    first: list[int] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    ready_at: list[float] = field(default_factory=list)
    mode: str = "drain"
    reason: str = ""
    target: str | None = None
    parts_done: list[int] = field(default_factory=list)
    preempt: bool = False
    update_ids: list[list[str]] | None = None

    @property
    def n_invocations(self) -> int:
        """Invocations this decision stands for (one for ``finalise``)."""
        return len(self.first) if self.kind == "aggregate" else 1

    @property
    def task_key(self) -> str:
        """``job/round``."""
        return task_key(self.job_id, self.round)

    def to_json(self) -> str:
        """Compact JSON (without resolved update ids)."""
        data = asdict(self)
        data.pop("update_ids")
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Decision:
        """Inverse of :meth:`to_json`."""
        return cls(**json.loads(raw))


class SchedulerState(Protocol):
    """Atomic operations of the scheduler's state (see the module docstring)."""

    def new_id(self) -> str:
        """A fresh decision id."""
        ...

    def create_task(self, task: TaskRecord) -> bool:
        """Store a new task (and its priority and timer); False if it exists."""
        ...

    def get_task(self, key: str) -> TaskRecord | None:
        """The task, or None."""
        ...

    def active_tasks(self, limit: int) -> list[TaskRecord]:
        """Open and finalising tasks, highest priority (smallest value) first."""
        ...

    def record_arrivals(self, key: str, times: np.ndarray,
                        update_ids: Sequence[str] | None) -> tuple[int, TaskRecord]:
        """Append arrivals to an open, unclosed task; closes it at the ``n_expected``-th.

        A time earlier than the last recorded one is raised to it, so the log stays
        sorted; an update id already in the log is not counted again (its arrival
        event was handled twice).  Returns how many were accepted (arrivals after
        the close are refused) and the task.
        """
        ...

    def arrival_times(self, key: str, start: int, stop: int) -> np.ndarray:
        """Arrival times of log entries ``[start, stop)``."""
        ...

    def update_ids(self, key: str, start: int, stop: int) -> list[str] | None:
        """Update ids of log entries ``[start, stop)`` (None when only times are kept)."""
        ...

    def due_timers(self, now: float) -> list[str]:
        """Tasks whose timer is due at ``now``."""
        ...

    def fire_timer(self, key: str) -> bool:
        """Remove the timer and mark the task forced at its timer time; True for one caller."""
        ...

    def close_task(self, key: str, closed_at: float, status: str) -> bool:
        """Close an open, unclosed task at ``closed_at`` with ``status``; True for one caller."""
        ...

    def commit(self, key: str, expected_epoch: int, advance_to: int,
               decisions: Sequence[Decision], capacity: int | None,
               resume: list[list[int]] | None, status: str | None) -> bool:
        """Atomically: check the task's ``epoch`` (nothing launched, resumed or closed since
        it was read) and the capacity, advance the launch cursor, count the decisions'
        invocations as running, replace ``resume`` and ``status`` when given, bump the
        epoch and store the decisions as claimed.  False (nothing changed) if the epoch
        moved or capacity is short."""
        ...

    def running_total(self) -> int:
        """Invocations running across all tasks."""
        ...

    def inflight(self) -> list[Decision]:
        """Every claimed, unfinished decision."""
        ...

    def request_preempt(self, decision_id: str) -> bool:
        """Flag a running decision for preemption; True if newly flagged."""
        ...

    def renew(self, owner: str, lease_until: float) -> int:
        """Extend the leases of ``owner``'s decisions; returns how many."""
        ...

    def reclaim(self, owner: str, now: float, lease_until: float) -> list[Decision]:
        """Take over decisions whose lease expired before ``now``."""
        ...

    def complete(self, decision_id: str, part: int | None, n_fused: int | None) -> Decision | None:
        """Finish invocation ``part`` (all when None) of a decision.

        ``n_fused < count`` means it was preempted after ``n_fused`` updates: the rest
        goes to the task's ``resume`` list.  A finished ``finalise`` marks the task
        done.  Idempotent; returns the decision, or None if unknown.
        """
        ...


class InMemoryState:
    """:class:`SchedulerState` for one process (the simulator, tests)."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskRecord] = {}
        self._times: dict[str, np.ndarray] = {}
        self._ids: dict[str, list[str]] = {}
        self._timers: dict[str, float] = {}
        self._inflight: dict[str, Decision] = {}
        self._running = 0
        self._seq = 0

    def new_id(self) -> str:
        self._seq += 1
        return f"d{self._seq}"

    def _task(self, key: str) -> TaskRecord:
        try:
            return self._tasks[key]
        except KeyError:
            raise NotFound(f"no aggregation task {key!r}") from None

    def create_task(self, task: TaskRecord) -> bool:
        if task.key in self._tasks:
            return False
        self._tasks[task.key] = task
        self._times[task.key] = np.zeros(0)
        if task.timer_at is not None:
            self._timers[task.key] = task.timer_at
        return True

    def get_task(self, key: str) -> TaskRecord | None:
        return self._tasks.get(key)

    def active_tasks(self, limit: int) -> list[TaskRecord]:
        live = [t for t in self._tasks.values() if t.status in (OPEN, FINALISING)]
        live.sort(key=lambda t: (t.priority, t.key))
        return live[:limit]

    def record_arrivals(self, key: str, times: np.ndarray,
                        update_ids: Sequence[str] | None) -> tuple[int, TaskRecord]:
        task = self._task(key)
        if task.status != OPEN or task.closed_at is not None:
            return 0, task
        t = np.asarray(times, dtype=np.float64)
        if update_ids is not None:
            known = set(self._ids.get(key, []))
            fresh = [i for i, u in enumerate(update_ids) if u not in known]
            t, update_ids = t[fresh], [update_ids[i] for i in fresh]
        n = min(t.size, task.n_expected - task.n_arrived)
        if n <= 0:
            return 0, task
        if task.last_arrival is not None:
            # The log stays sorted: an update recorded after a later-stamped one (replicas
            # racing) counts as arriving with it.
            t = np.maximum(t, task.last_arrival)
        self._times[key] = np.concatenate([self._times[key], t[:n]])
        if update_ids is not None:
            self._ids.setdefault(key, []).extend(update_ids[:n])
        task.n_arrived += n
        task.last_arrival = float(t[n - 1])
        if task.n_arrived >= task.n_expected:
            task.closed_at = task.last_arrival
        return n, task

    def arrival_times(self, key: str, start: int, stop: int) -> np.ndarray:
        return self._times[key][start:stop]

    def update_ids(self, key: str, start: int, stop: int) -> list[str] | None:
        ids = self._ids.get(key)
        return None if ids is None else ids[start:stop]

    def due_timers(self, now: float) -> list[str]:
        return sorted((k for k, t in self._timers.items() if t <= now),
                      key=lambda k: self._timers[k])

    def fire_timer(self, key: str) -> bool:
        at = self._timers.pop(key, None)
        if at is None:
            return False
        task = self._task(key)
        if task.forced_at is None:
            task.forced_at = at
        return True

    def close_task(self, key: str, closed_at: float, status: str) -> bool:
        task = self._task(key)
        if task.status != OPEN or task.closed_at is not None:
            return False
        task.closed_at = closed_at
        task.status = status
        task.epoch += 1
        if status != OPEN:
            self._timers.pop(key, None)
        return True

    def commit(self, key: str, expected_epoch: int, advance_to: int,
               decisions: Sequence[Decision], capacity: int | None,
               resume: list[list[int]] | None, status: str | None) -> bool:
        task = self._task(key)
        if task.epoch != expected_epoch or task.status != OPEN:
            return False
        n_inv = sum(d.n_invocations for d in decisions)
        if capacity is not None and self._running + n_inv > capacity:
            return False
        task.n_launched = advance_to
        task.running += n_inv
        self._running += n_inv
        if resume is not None:
            task.resume = resume
        if status is not None:
            task.status = status
        task.epoch += 1
        for d in decisions:
            self._inflight[d.decision_id] = d
        return True

    def running_total(self) -> int:
        return self._running

    def inflight(self) -> list[Decision]:
        return list(self._inflight.values())

    def request_preempt(self, decision_id: str) -> bool:
        d = self._inflight.get(decision_id)
        if d is None or d.preempt:
            return False
        d.preempt = True
        return True

    def renew(self, owner: str, lease_until: float) -> int:
        mine = [d for d in self._inflight.values() if d.owner == owner]
        for d in mine:
            d.lease_until = lease_until
        return len(mine)

    def reclaim(self, owner: str, now: float, lease_until: float) -> list[Decision]:
        taken = []
        for d in self._inflight.values():
            if d.lease_until < now and d.owner != owner:
                d.owner, d.lease_until = owner, lease_until
                taken.append(d)
        return taken

    def complete(self, decision_id: str, part: int | None, n_fused: int | None) -> Decision | None:
        d = self._inflight.get(decision_id)
        if d is None:
            return None
        task = self._task(d.task_key)
        if part is not None and not 0 <= part < d.n_invocations:
            raise Conflict(f"decision {decision_id} has no part {part}")
        done = set(d.parts_done)
        todo = [p for p in (range(d.n_invocations) if part is None else [part]) if p not in done]
        for p in todo:
            if d.kind == "aggregate" and n_fused is not None and n_fused < d.count[p]:
                task.resume.append([d.first[p] + max(0, n_fused), d.count[p] - max(0, n_fused)])
        task.epoch += 1
        d.parts_done.extend(todo)
        task.running -= len(todo)
        self._running -= len(todo)
        if len(d.parts_done) == d.n_invocations:
            del self._inflight[decision_id]
            if d.kind == "finalise":
                task.status = DONE
        return d
