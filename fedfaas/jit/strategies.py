"""The five aggregation strategies as policies with one interface (JIT paper 3 and 5.5).

A strategy decides *what* to launch for one aggregation task (one job's round)
given the arrival log; the :class:`~fedfaas.jit.scheduler.Scheduler` decides
*whether* capacity allows it and records the claim.  Plans are vectorised
(numpy arrays of launches) so the simulator can hand a whole burst of
arrivals to the same code the live gateway calls per arrival.

Each launch fuses ``count`` consecutive entries of the round's arrival log
starting at ``first`` and becomes ready at ``ready_at``:

- ``eager-always-on``: every update on arrival, on an aggregator that lives
  for the whole job (mode ``always-on``);
- ``eager-serverless``: one invocation per update on arrival (mode ``stateless``:
  each invocation loads the aggregator state and checkpoints it);
- ``batched-serverless``: one invocation per ``k`` updates when the k-th
  arrives, the remainder when the round closes;
- ``lazy``: everything once the round closes (all updates in, or quorum at
  ``t_wait``), split over up to ``N_agg`` instances (mode ``drain``);
- ``jit``: priority and timer at ``t_rnd - t_agg``; from the earlier of the
  timer and the round's close, the updates already in are split over up to
  ``N_agg`` instances and later ones join on arrival; before that only when
  the scheduler reports idle capacity (opportunistic, paper 5.5).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fedfaas.errors import BadRequest
from fedfaas.jit.estimate import JobEstimate

MODES = ("always-on", "stateless", "drain")


@dataclass(frozen=True)
class TaskView:
    """What a strategy may look at: the scheduler's record of one (job, round) task."""

    job_id: str
    round: int
    round_start: float
    priority: float
    n_expected: int
    quorum: int
    due: float | None
    timer_at: float | None
    forced_at: float | None
    closed_at: float | None
    n_arrived: int
    n_launched: int
    running: int
    n_agg: int
    batch_size: int
    min_chunk: int = 1

    @property
    def pending(self) -> int:
        """Arrived updates not yet handed to an invocation."""
        return self.n_arrived - self.n_launched

    @property
    def started_at(self) -> float | None:
        """When the task must run: the earlier of the fired timer and the round's close."""
        marks = [t for t in (self.forced_at, self.closed_at) if t is not None]
        return min(marks) if marks else None


@dataclass(frozen=True)
class LaunchPlan:
    """Invocations to start: arrival-log slices ``[first, first + count)`` ready at ``ready_at``."""

    first: np.ndarray
    count: np.ndarray
    ready_at: np.ndarray
    mode: str
    reason: str

    def __post_init__(self) -> None:
        if not (self.first.shape == self.count.shape == self.ready_at.shape):
            raise BadRequest("first, count and ready_at must have the same length")
        if self.mode not in MODES:
            raise BadRequest(f"mode must be one of {MODES}, got {self.mode!r}")

    @classmethod
    def empty(cls, mode: str, reason: str = "none") -> LaunchPlan:
        """A plan that launches nothing."""
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z.copy(), np.zeros(0), mode, reason)

    @property
    def size(self) -> int:
        """Number of invocations."""
        return int(self.first.size)

    @property
    def n_updates(self) -> int:
        """Number of updates covered."""
        return int(self.count.sum())

    def head(self, k: int) -> LaunchPlan:
        """The first ``k`` invocations (admission under limited capacity keeps log order)."""
        return LaunchPlan(self.first[:k], self.count[:k], self.ready_at[:k], self.mode, self.reason)

    def concat(self, other: LaunchPlan) -> LaunchPlan:
        """This plan followed by ``other`` (same mode)."""
        if other.size == 0:
            return self
        if self.size == 0:
            return other
        return LaunchPlan(np.concatenate([self.first, other.first]),
                          np.concatenate([self.count, other.count]),
                          np.concatenate([self.ready_at, other.ready_at]), self.mode,
                          f"{self.reason}+{other.reason}")


def split_chunks(first: int, n: int, n_chunks: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` log entries from ``first`` as ``n_chunks`` near-equal consecutive slices."""
    n_chunks = max(1, min(n_chunks, n))
    counts = np.full(n_chunks, n // n_chunks, dtype=np.int64)
    counts[: n % n_chunks] += 1
    firsts = first + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return firsts, counts


class AggregationStrategy(ABC):
    """One policy: when to run aggregation for a task, and with which updates."""

    name: ClassVar[str]
    mode: ClassVar[str]

    def schedule(self, round_start: float, estimate: JobEstimate | None) -> tuple[float, float | None]:
        """Priority (smaller runs first) and timer of a new round; FIFO by round start here."""
        return round_start, None

    @abstractmethod
    def plan(self, view: TaskView, times: np.ndarray, now: float, idle: bool) -> LaunchPlan:
        """Launches for the pending updates; ``times[i]`` is the arrival of log entry
        ``view.n_launched + i``; ``idle`` means the scheduler has spare capacity now."""


class EagerServerless(AggregationStrategy):
    """One invocation per update, on arrival (paper 3, 'Eager Dynamic/Serverless')."""

    name = "eager-serverless"
    mode = "stateless"

    def plan(self, view: TaskView, times: np.ndarray, now: float, idle: bool) -> LaunchPlan:
        n = view.pending
        first = view.n_launched + np.arange(n, dtype=np.int64)
        return LaunchPlan(first, np.ones(n, dtype=np.int64), np.asarray(times[:n], dtype=np.float64),
                          self.mode, "arrival")


class EagerAlwaysOn(EagerServerless):
    """Every update on arrival, on aggregators alive for the whole job (paper 3, IBM FL)."""

    name = "eager-always-on"
    mode = "always-on"


class BatchedServerless(AggregationStrategy):
    """One invocation per ``k`` updates, the remainder at round close (paper 6.1)."""

    name = "batched-serverless"
    mode = "stateless"

    def plan(self, view: TaskView, times: np.ndarray, now: float, idle: bool) -> LaunchPlan:
        k = max(1, view.batch_size)
        n = view.pending
        full = n // k
        first = view.n_launched + k * np.arange(full, dtype=np.int64)
        count = np.full(full, k, dtype=np.int64)
        ready = np.asarray(times[k - 1 : full * k : k], dtype=np.float64)
        rest = n - full * k
        if rest and view.closed_at is not None:
            first = np.append(first, view.n_launched + full * k)
            count = np.append(count, rest)
            ready = np.append(ready, max(view.closed_at, float(times[n - 1])))
        return LaunchPlan(first, count, ready, self.mode, "batch")


class Lazy(AggregationStrategy):
    """Everything after the last update, or the quorum at ``t_wait`` (paper 3, 'Lazy')."""

    name = "lazy"
    mode = "drain"

    def _run_from(self, view: TaskView, times: np.ndarray, start: float, reason: str) -> LaunchPlan:
        """Updates in by ``start`` split over up to N_agg instances; later ones join on arrival."""
        n = view.pending
        n_pre = int(np.searchsorted(times[:n], start, side="right"))
        chunks = max(1, min(view.n_agg, n_pre // max(1, view.min_chunk)))
        firsts, counts = split_chunks(view.n_launched, n_pre, chunks) if n_pre else (
            np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        ready = np.full(firsts.size, start)
        post = view.n_launched + np.arange(n_pre, n, dtype=np.int64)
        return LaunchPlan(np.concatenate([firsts, post]),
                          np.concatenate([counts, np.ones(post.size, dtype=np.int64)]),
                          np.concatenate([ready, np.asarray(times[n_pre:n], dtype=np.float64)]),
                          self.mode, reason)

    def plan(self, view: TaskView, times: np.ndarray, now: float, idle: bool) -> LaunchPlan:
        if view.pending == 0 or view.closed_at is None:
            return LaunchPlan.empty(self.mode)
        return self._run_from(view, times, view.closed_at, "round-closed")


class JustInTime(Lazy):
    """JIT aggregation (paper 5.5, Fig. 6 lines 14-21)."""

    name = "jit"
    mode = "drain"

    def schedule(self, round_start: float, estimate: JobEstimate | None) -> tuple[float, float | None]:
        """Priority and timer both at ``t_rnd - t_agg`` (minus the learned slack)."""
        if estimate is None:
            raise BadRequest("the jit strategy needs the job's estimate to set its timer")
        due = round_start + estimate.deadline
        return due, due

    def plan(self, view: TaskView, times: np.ndarray, now: float, idle: bool) -> LaunchPlan:
        if view.pending == 0:
            return LaunchPlan.empty(self.mode)
        start = view.started_at
        if start is not None:
            return self._run_from(view, times, start, "deadline" if view.forced_at == start
                                  else "round-closed")
        if idle:
            return self._run_from(view, times, now, "opportunistic")
        return LaunchPlan.empty(self.mode)


STRATEGY_CLASSES: dict[str, type[AggregationStrategy]] = {
    cls.name: cls for cls in (EagerAlwaysOn, EagerServerless, BatchedServerless, Lazy, JustInTime)
}


def strategy_for(name: str) -> AggregationStrategy:
    """The strategy object for a name of :data:`fedfaas.jit.spec.STRATEGIES`."""
    try:
        return STRATEGY_CLASSES[name]()
    except KeyError:
        raise BadRequest(f"unknown strategy {name!r}; one of {', '.join(STRATEGY_CLASSES)}") from None
