"""Containers kept warm for a fixed time after their last call (JIT paper 3, 6.2; OpenFaaS/Knative).

The live gateway cannot tell the platform to release or pre-warm an
aggregation container: it only invokes the ``aggregate`` function.  The
platform (the local router, OpenFaaS Pro's ``com.openfaas.scale.zero-duration``,
Knative's stable window) starts a container when no warm one is free (a cold
start), reuses a warm one, and stops it ``keep_alive_s`` after its last call,
whether or not a round just ended.  :class:`KeepAlivePool` is that platform
for the simulator (``SimConfig(platform="keep-alive")``): one pool for the
whole job, so a container warm at the end of a round serves the next one.

Container-seconds are alive time from creation (cold start included) to the
end of the keep-alive, as the router accounts them.
"""

from __future__ import annotations

import math

import numpy as np

from fedfaas.errors import BadRequest


class KeepAlivePool:
    """Up to ``cap`` containers, each serving one call at a time, warm ``keep_alive_s`` after use.

    Calls must be submitted in order of ``ready`` across every :meth:`run`.
    Dispatch: the most recently freed warm container; else a busy one that
    frees up sooner than a cold start would take, or any busy one at ``cap``
    (the earliest free); else a new container, which adds ``cold_s``.
    """

    def __init__(self, cap: int, cold_s: float, keep_alive_s: float) -> None:
        if cap < 1:
            raise BadRequest("cap must be >= 1")
        if not (cold_s >= 0 and keep_alive_s >= 0 and math.isfinite(cold_s + keep_alive_s)):
            raise BadRequest("cold_s and keep_alive_s must be finite and >= 0")
        self.cap = cap
        self.cold_s = cold_s
        self.keep_alive_s = keep_alive_s
        self.cold_starts = 0
        self._born: list[float] = []      # of the containers alive
        self._free_at: list[float] = []
        self._closed_s = 0.0
        self._last_ready = -math.inf

    def _reap(self, now: float) -> None:
        """Stop the containers idle for longer than the keep-alive at ``now``."""
        keep = [i for i, f in enumerate(self._free_at) if f + self.keep_alive_s >= now]
        if len(keep) == len(self._free_at):
            return
        for i, f in enumerate(self._free_at):
            if f + self.keep_alive_s < now:
                self._closed_s += f + self.keep_alive_s - self._born[i]
        self._born = [self._born[i] for i in keep]
        self._free_at = [self._free_at[i] for i in keep]

    def run(self, ready: np.ndarray, work: np.ndarray) -> np.ndarray:
        """Dispatch calls ready at ``ready`` (sorted) that keep a warm container busy ``work``
        seconds each; returns their finish times."""
        r_arr = np.asarray(ready, dtype=np.float64)
        w_arr = np.asarray(work, dtype=np.float64)
        if r_arr.shape != w_arr.shape or r_arr.ndim != 1:
            raise BadRequest("ready and work must be 1-d arrays of the same length")
        if r_arr.size and (r_arr[0] < self._last_ready or np.any(np.diff(r_arr) < 0)):
            raise BadRequest("calls must be submitted in order of their ready time")
        if np.any(w_arr < 0) or not np.all(np.isfinite(r_arr)) or not np.all(np.isfinite(w_arr)):
            raise BadRequest("ready and work must be finite, work >= 0")
        finish = np.empty(r_arr.size)
        for k, (r, w) in enumerate(zip(r_arr.tolist(), w_arr.tolist(), strict=True)):
            self._reap(r)
            idle = [i for i, f in enumerate(self._free_at) if f <= r]
            if idle:
                c = max(idle, key=lambda i: self._free_at[i])
                start = r
            else:
                soonest = min(range(len(self._free_at)), key=self._free_at.__getitem__, default=-1)
                if soonest >= 0 and (len(self._free_at) >= self.cap
                                     or self._free_at[soonest] - r <= self.cold_s):
                    c, start = soonest, self._free_at[soonest]
                else:
                    self._born.append(r)
                    self._free_at.append(r)
                    self.cold_starts += 1
                    c, start = len(self._free_at) - 1, r + self.cold_s
            self._free_at[c] = start + w
            finish[k] = start + w
            self._last_ready = r
        return finish

    def container_s(self) -> float:
        """Alive time of every container, those still warm counted to the end of their keep-alive."""
        alive = sum(f + self.keep_alive_s - b for b, f in zip(self._born, self._free_at, strict=True))
        return self._closed_s + alive
