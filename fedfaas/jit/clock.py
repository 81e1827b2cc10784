"""Clocks for the JIT scheduler (JIT paper 5.5): wall time live, virtual time in the simulator.

Every JIT component takes a ``now`` or a :class:`Clock`, never ``time.time()``
directly, so the same deadline, timer and lease logic runs on a virtual clock
in :mod:`fedfaas.jit.simulator` and in tests.
"""

from __future__ import annotations

import time
from typing import Protocol

from fedfaas.errors import BadRequest


class Clock(Protocol):
    """Anything with ``now() -> float`` seconds."""

    def now(self) -> float:
        """Current time in seconds."""
        ...


class SystemClock:
    """Wall-clock seconds since the epoch.

    Timers and leases are absolute times shared by every gateway replica through
    Redis, so replicas need NTP-synchronised clocks (not a monotonic clock,
    which is per process).
    """

    def now(self) -> float:
        """``time.time()``."""
        return time.time()


class VirtualClock:
    """A clock that only moves when told to; the simulator's and the tests' time."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        """The current virtual time."""
        return self._now

    def advance_to(self, t: float) -> None:
        """Move to ``t``; time never goes backwards."""
        if t < self._now:
            raise BadRequest(f"virtual clock cannot go back from {self._now} to {t}")
        self._now = float(t)

    def advance(self, dt: float) -> None:
        """Move forward by ``dt`` seconds (``dt >= 0``)."""
        self.advance_to(self._now + dt)
