"""One function replica and the bookkeeping around it: state, scale policy, costs, demand.

Container-seconds (alive time of every replica, cold start included) are the
cost JIT aggregation (paper 000, Sec. 6.2 "Metrics") and FLStore (paper 002)
compare strategies by; :class:`Accounting` keeps them per function.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from fedfaas.devstack.faas.logs import event
from fedfaas.devstack.faas.options import RouterOptions
from fedfaas.openfaas.stackfile import FunctionSpec


class State(Enum):
    """Life cycle of a replica."""

    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    DEAD = "dead"


@dataclass(frozen=True)
class ScalePolicy:
    """Scaling and timeout settings of one function, from its labels and the router options."""

    min_replicas: int
    max_replicas: int
    scale_zero: bool
    idle_s: float
    capacity: int
    exec_timeout_s: float

    @property
    def floor(self) -> int:
        """Replicas kept alive when the function is idle."""
        return 0 if self.scale_zero else self.min_replicas

    @classmethod
    def for_function(cls, spec: FunctionSpec, options: RouterOptions) -> ScalePolicy:
        """Resolve labels against the router defaults (``scale.min >= 1`` never goes to zero)."""
        max_replicas = min(spec.scale_max or options.replica_cap, options.replica_cap)
        if spec.scale_max is not None and spec.scale_max > options.replica_cap:
            event(
                "com.openfaas.scale.max capped",
                logging.WARNING,
                function=spec.name,
                asked=spec.scale_max,
                cap=options.replica_cap,
            )
        zero_flag = options.scale_zero if spec.scale_zero is None else spec.scale_zero
        return cls(
            min_replicas=min(max(spec.scale_min or 1, 1), max_replicas),
            max_replicas=max_replicas,
            scale_zero=zero_flag and not spec.scale_min,
            idle_s=spec.scale_zero_duration_s or options.idle_s,
            capacity=spec.max_inflight or options.instance_concurrency,
            exec_timeout_s=min(spec.exec_timeout_s or options.exec_timeout_s, options.upstream_timeout_s),
        )


@dataclass(eq=False)
class Instance:
    """One replica (process) of a function."""

    function: str
    idx: int
    started_mono: float
    started_wall: float
    on_demand: bool
    state: State = State.STARTING
    pid: int | None = None
    port: int = 0
    inflight: int = 0
    last_used: float = 0.0
    ready_mono: float | None = None
    stop_reason: str | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    def describe(self, now: float) -> dict[str, object]:
        """JSON view for ``/system/instances``."""
        return {
            "instance": self.idx,
            "pid": self.pid,
            "port": self.port,
            "state": self.state.value,
            "inflight": self.inflight,
            "age_s": round(now - self.started_mono, 3),
        }


@dataclass
class Accounting:
    """Resettable per-function costs: container-seconds, calls, cold starts, lost replicas."""

    since_wall: float = field(default_factory=time.time)
    since_mono: float = field(default_factory=time.monotonic)
    closed_container_s: float = 0.0
    busy_s: float = 0.0
    invocations: int = 0
    errors: int = 0
    cold_starts: int = 0
    instances_started: int = 0
    instances_stopped: int = 0
    instances_killed: int = 0
    instances_crashed: int = 0

    def alive_s(self, inst: Instance, until: float) -> float:
        """Seconds of ``inst`` alive since this accounting period began."""
        return max(0.0, until - max(inst.started_mono, self.since_mono))


class DemandWindow:
    """Peak demand (calls in flight + waiting) over a sliding window, in coarse buckets."""

    def __init__(self, window_s: float, buckets: int = 8) -> None:
        self.window_s = window_s
        self.width = window_s / buckets
        self._peaks: deque[tuple[int, int]] = deque()

    def note(self, now: float, demand: int) -> None:
        """Record the current demand."""
        bucket = int(now / self.width)
        if self._peaks and self._peaks[-1][0] == bucket:
            self._peaks[-1] = (bucket, max(self._peaks[-1][1], demand))
        else:
            self._peaks.append((bucket, demand))
        oldest = int((now - self.window_s) / self.width)
        while self._peaks and self._peaks[0][0] < oldest:
            self._peaks.popleft()

    def peak(self) -> int:
        """Largest demand seen in the window."""
        return max((p for _, p in self._peaks), default=0)
