"""JIT's warm hold on a keep-alive platform: an aggregator warm for a round's last update.

The paper's JIT aggregates "just in time" without adding latency (JIT paper 3,
5.5), which on a scale-to-zero platform means an aggregation instance must be
warm when the last update arrives: a cold start after it is more than eager
aggregation's delay, whose instance the parties' updates keep warm.  The live
gateway cannot start or hold an instance itself; it can only call the
``aggregate`` function, whose instance the platform then keeps for its
keep-alive.  So, from the forecast of the parties still missing, it pings the
function (a warm-up call that returns no data) over the window in which the
last of them may arrive:

- the window opens a cold start before the latest early bound of the missing
  parties (no earlier can the last update come; an intermittent party's early
  bound is the round's start) and closes at their latest late bound (later
  than that the forecast was wrong, and holding on would cost without end);
- pings come every third of the keep-alive, so the instance never idles out;
- no hold when instances never stop, or when a cold start plus one step fits
  the job's latency target anyway (a numeric ``latency_target`` is how a job
  trades that latency for the hold's cost).

The simulator's keep-alive replay (:mod:`fedfaas.jit.simulator`) sends the
same pings through :meth:`WarmHold.pings`, so live and simulated JIT pay for
the same hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedfaas.errors import BadRequest
from fedfaas.jit.estimator import JobEstimate, eager_step
from fedfaas.jit.spec import JobSpec

PINGS_PER_KEEP_ALIVE = 3
"""Pings per keep-alive period: an instance is called well before the platform idles it out."""
MIN_PING_S = 0.2
"""No faster pings than this, whatever the keep-alive."""


@dataclass(frozen=True)
class WarmHold:
    """When to keep an aggregation instance warm for a round's last update (module docstring).

    Parameters
    ----------
    cold_start_s
        The platform's cold start: how long before the window a ping must come.
    ping_s
        Seconds between pings while the window is open.
    """

    cold_start_s: float
    ping_s: float

    def __post_init__(self) -> None:
        if not (self.cold_start_s >= 0 and math.isfinite(self.cold_start_s)):
            raise BadRequest("cold_start_s must be finite and >= 0")
        if not (self.ping_s > 0 and math.isfinite(self.ping_s)):
            raise BadRequest("ping_s must be finite and > 0")

    @classmethod
    def plan(cls, *, cold_start_s: float, keep_alive_s: float | None,
             target_latency: float | None, step_s: float) -> WarmHold | None:
        """The hold a JIT round needs, or None.

        ``target_latency`` is the job's allowance after the last update (None:
        ``"fastest"``, as little as possible); ``step_s`` one warm step on the
        aggregator, which publishing the model takes in any case.
        """
        if keep_alive_s is None or not math.isfinite(keep_alive_s) or cold_start_s <= 0:
            return None  # instances never stop, or start at no cost
        if target_latency is not None and cold_start_s + step_s <= target_latency:
            return None  # a cold start after the last update is within the allowance
        return cls(cold_start_s, max(keep_alive_s / PINGS_PER_KEEP_ALIVE, MIN_PING_S))

    @classmethod
    def for_round(cls, job: JobSpec, est: JobEstimate) -> WarmHold | None:
        """The hold of one round of ``job`` under its estimate (JIT only)."""
        if job.strategy != "jit":
            return None
        step = job.eager_step_s
        if step is None:
            step = eager_step(t_pair=float(est.meta["t_pair"]), c_agg=job.c_agg,
                              model_bytes=job.model_bytes, b_dc=job.b_dc)
        return cls.plan(cold_start_s=job.cold_start_s, keep_alive_s=job.keep_alive_s,
                        target_latency=est.target_latency, step_s=step)

    def to_dict(self) -> dict[str, float]:
        """JSON-ready (stored with the round's estimate)."""
        return {"cold_start_s": self.cold_start_s, "ping_s": self.ping_s}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WarmHold:
        """Inverse of :meth:`to_dict`."""
        return cls(float(raw["cold_start_s"]), float(raw["ping_s"]))

    def window(self, early: np.ndarray, late: np.ndarray,
               missing: np.ndarray) -> tuple[float, float] | None:
        """``(open, close)`` offsets from the round's start for the ``missing`` parties (a mask
        over the bounds ``early`` and ``late``); None once none is missing."""
        m = np.asarray(missing, dtype=bool)
        if not m.any():
            return None
        return (float(np.max(np.asarray(early)[m])) - self.cold_start_s,
                float(np.max(np.asarray(late)[m])))

    def due(self, offset: float, early: np.ndarray, late: np.ndarray, missing: np.ndarray) -> bool:
        """Whether the aggregator should be warm ``offset`` seconds into the round."""
        w = self.window(early, late, missing)
        return w is not None and w[0] <= offset <= w[1]

    def pings(self, actual: np.ndarray, early: np.ndarray, late: np.ndarray) -> np.ndarray:
        """Offsets of the pings a round gets whose parties arrive at ``actual`` (same order
        as the bounds): what the live gateway sends, for the simulator's replay."""
        a = np.asarray(actual, dtype=np.float64)
        order = np.argsort(a, kind="stable")
        arrived = a[order]
        # Bounds of the parties still missing once the first k arrived (k = 0..n).
        e = np.append(np.maximum.accumulate(np.asarray(early, dtype=np.float64)[order][::-1])[::-1],
                      -math.inf)
        lt = np.append(np.maximum.accumulate(np.asarray(late, dtype=np.float64)[order][::-1])[::-1],
                       -math.inf)
        out: list[float] = []
        t = 0.0
        while True:
            k = int(np.searchsorted(arrived, t, side="right"))
            if k == arrived.size:
                break  # every update is in: the round closes
            begin, end = float(e[k]) - self.cold_start_s, float(lt[k])
            if t > end:
                break  # past the latest late bound: later arrivals only lower it
            if t < begin:
                # Wait for the window, or for the next arrival, which may open it sooner.
                t = min(begin, float(arrived[k]))
                continue
            out.append(t)
            t += self.ping_s
        return np.asarray(out)
