"""JIT's warm hold on a keep-alive platform: an aggregator warm for a round's last update.

The paper's JIT aggregates "just in time" without adding latency (JIT paper 3,
5.5), which on a scale-to-zero platform means an aggregation instance must be
warm when the last update arrives: a cold start after it is more than eager
aggregation's delay, whose instance the parties' updates keep warm.  The live
gateway cannot start or hold an instance itself; it can only call the
``aggregate`` function, whose instance the platform then keeps for its
keep-alive.  So, from the forecast of the parties still missing, it pings the
function (a warm-up call that returns no data) while the last of them may
arrive, and no longer than eager's instance would be warm:

- the window opens a cold start before the latest early bound of the missing
  parties (no earlier can the last update come; an intermittent party's early
  bound is the round's start) and closes at their latest late bound (later
  than that the forecast was wrong, and holding on would cost without end);
- within it, the hold lasts while eager's instance would still be warm: up to
  a keep-alive after the latest update (or the round's start, when the
  previous round's last step ran).  Past that, eager pays a cold start for the
  next update too, so a party that never comes, or a long gap between
  intermittent parties, costs the hold no more than it costs eager; the next
  update restarts the hold;
- only while the round is more likely than not to complete by an update
  (every missing party sends one, at its learned participation rate): a round
  that ends at ``t_wait`` instead has JIT's timer start its aggregator before
  then, where eager's has usually stopped, so skipping a hold that is less
  likely than not to be needed keeps the mean latency within eager's;
- a ping starts an instance, or keeps it: pings come at most every third of
  the keep-alive (or every cold start, if longer, up to half the keep-alive),
  and once the instance is warm, only if none came since the latest update
  (one after it keeps the instance as long as eager's);
- whatever the hold does, one ping a cold start before the timer's launch
  (``t_rnd - t_agg - slack``) when a cold launch would not be ready by the
  round's expected close (``t_rnd``; ``t_wait`` for a round likely to end
  there), unless a ping keeps the instance warm until then: the launch then
  finds a warm instance, for the container-seconds its cold start would have
  cost anyway (the paper's "just in time" on a platform that starts instances
  only when called); an earlier launch has the time to start cold;
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
from fedfaas.jit.estimate import JobEstimate
from fedfaas.jit.learning import COMPLETION_LIKELY, CURVE_LEVELS, ArrivalLearner
from fedfaas.jit.planning import eager_step
from fedfaas.jit.spec import EstimatorJob

PINGS_PER_KEEP_ALIVE = 3
"""Pings per keep-alive period: an instance is called well before the platform idles it out."""
MIN_PING_S = 0.2
"""No faster pings than this, whatever the keep-alive."""


@dataclass(frozen=True)
class Participation:
    """How likely each party still missing is to send its update later in the round.

    Parameters
    ----------
    rate
        Share of rounds each party sent an update in (learned, 1.0 before any round).
    intermittent
        Parties that send at a random time within ``t_wait`` (paper 4.3).
    curve
        The learned arrival curve of intermittent parties: offsets as fractions of
        ``t_wait`` at the levels :data:`~fedfaas.jit.learning.CURVE_LEVELS` (None:
        uniform over ``t_wait``).
    t_wait
        The round's ``t_wait`` (None: no intermittent parties).
    """

    rate: np.ndarray
    intermittent: np.ndarray
    curve: np.ndarray | None = None
    t_wait: float | None = None

    def completion_odds(self, offset: float, missing: np.ndarray) -> float:
        """Odds that every ``missing`` party still sends, ``offset`` seconds into the round.

        An intermittent party that has not sent by then is less likely to send at
        all the more of its usual arrival time has passed (Bayes:
        ``p (1 - F) / (1 - p F)``, ``F`` the share of its updates that come by then);
        an active one sends at its rate until its late bound, where the hold's window
        closes anyway.
        """
        m = np.asarray(missing, dtype=bool)
        p = np.asarray(self.rate, dtype=np.float64)[m]
        inter = np.asarray(self.intermittent, dtype=bool)[m]
        if inter.any() and self.t_wait:
            x = offset / self.t_wait
            share = (min(max(x, 0.0), 1.0) if self.curve is None
                     else float(np.interp(x, self.curve, CURVE_LEVELS)))
            pi = p[inter]
            rest = 1.0 - pi * share
            p = p.copy()
            # A party that has always sent (p = 1) still sends when the curve says its
            # update is overdue (F = 1, learned from a few rounds): 0 / 0 counts as p.
            p[inter] = np.divide(pi * (1.0 - share), rest, out=pi.copy(), where=rest > 0)
        return float(np.prod(p))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (stored with the round's estimate)."""
        return {"rate": np.asarray(self.rate).tolist(),
                "intermittent": np.asarray(self.intermittent, dtype=bool).tolist(),
                "curve": None if self.curve is None else np.asarray(self.curve).tolist(),
                "t_wait": self.t_wait}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Participation:
        """Inverse of :meth:`to_dict`."""
        curve = raw.get("curve")
        t_wait = raw.get("t_wait")
        return cls(np.asarray(raw["rate"], dtype=np.float64),
                   np.asarray(raw["intermittent"], dtype=bool),
                   None if curve is None else np.asarray(curve, dtype=np.float64),
                   None if t_wait is None else float(t_wait))

    @classmethod
    def of(cls, learner: ArrivalLearner, est: JobEstimate, t_wait: float | None) -> Participation:
        """What ``learner`` knows of the parties of ``est``."""
        return cls(learner.participation(est.party_ids),
                   np.array([m == "intermittent" for m in est.modes], dtype=bool),
                   learner.intermittent_curve, t_wait)


@dataclass(frozen=True)
class WarmHold:
    """When to keep an aggregation instance warm for a round's last update (module docstring).

    Parameters
    ----------
    cold_start_s
        The platform's cold start: how long before the window a ping must come.
    keep_alive_s
        How long the platform keeps an idle instance.
    ping_s
        Seconds between pings while the hold lasts.
    """

    cold_start_s: float
    keep_alive_s: float
    ping_s: float

    def __post_init__(self) -> None:
        for name in ("cold_start_s", "keep_alive_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise BadRequest(f"{name} must be finite and >= 0")
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
        # No sooner than a cold start, so that a ping waiting for one is not doubled by
        # another replica's; no later than half the keep-alive.
        ping_s = min(max(keep_alive_s / PINGS_PER_KEEP_ALIVE, cold_start_s), keep_alive_s / 2)
        return cls(cold_start_s, keep_alive_s, max(ping_s, MIN_PING_S))

    @classmethod
    def for_round(cls, job: EstimatorJob, est: JobEstimate) -> WarmHold | None:
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
        return {"cold_start_s": self.cold_start_s, "keep_alive_s": self.keep_alive_s,
                "ping_s": self.ping_s}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WarmHold:
        """Inverse of :meth:`to_dict`."""
        return cls(float(raw["cold_start_s"]), float(raw["keep_alive_s"]), float(raw["ping_s"]))

    def window(self, early: np.ndarray, late: np.ndarray,
               missing: np.ndarray) -> tuple[float, float] | None:
        """``(open, close)`` offsets from the round's start for the ``missing`` parties (a mask
        over the bounds ``early`` and ``late``); None once none is missing."""
        m = np.asarray(missing, dtype=bool)
        if not m.any():
            return None
        return (float(np.max(np.asarray(early)[m])) - self.cold_start_s,
                float(np.max(np.asarray(late)[m])))

    def due(self, offset: float, early: np.ndarray, late: np.ndarray, missing: np.ndarray, *,
            last_arrival: float, since_ping: float | None,
            participation: Participation | None = None, launch: float | None = None) -> bool:
        """Whether to ping ``offset`` seconds into the round.

        ``last_arrival`` is the latest update's offset (0 before any), ``since_ping``
        the seconds since the last ping of the aggregator (None: never), ``launch``
        the offset of the timer's launch to pre-warm for (None: none,
        see :meth:`prewarmed_launch`).
        """
        w = self.window(early, late, missing)
        if w is None:
            return False  # every update is in: the round launches now
        since = math.inf if since_ping is None else since_ping
        if launch is not None and self._prewarms(offset, launch, offset - since):
            return True
        return (w[0] <= offset <= w[1] and self._holds(offset, last_arrival, since)
                and (participation is None
                     or participation.completion_odds(offset, missing) >= COMPLETION_LIKELY))

    def prewarmed_launch(self, launch: float, close: float) -> float | None:
        """The timer's ``launch`` offset if it needs a pre-warm: a cold start from it would
        not be over by the round's expected ``close``; else None."""
        return launch if launch + self.cold_start_s > close else None

    def _prewarms(self, offset: float, launch: float, last_ping: float) -> bool:
        """Whether to ping so that the timer's launch at ``launch`` finds a warm instance:
        from a cold start before it, unless the last ping keeps the instance until then."""
        return (max(launch - self.cold_start_s, 0.0) <= offset < launch
                and last_ping + self.keep_alive_s <= launch)

    def _holds(self, offset: float, last_arrival: float, since_ping: float) -> bool:
        """Within the window: whether a ping is wanted (eager's instance still warm, and ours
        not, or not pinged since the latest update, so stopping before eager's)."""
        if offset > last_arrival + self.keep_alive_s:
            return False  # eager's instance would have stopped too
        return since_ping >= self.keep_alive_s or since_ping > offset - last_arrival

    def pings(self, actual: np.ndarray, early: np.ndarray, late: np.ndarray,
              participation: Participation | None = None,
              launch: float | None = None) -> np.ndarray:
        """Offsets of the pings a round gets whose parties arrive at ``actual`` (same order
        as the bounds; NaN: no update) and whose timer launches at ``launch``: what the
        live gateway sends, for the simulator's replay."""
        a = np.asarray(actual, dtype=np.float64)
        order = np.argsort(a, kind="stable")  # parties that never send come last
        arrived = a[order][np.isfinite(a[order])]

        def missing_after(values: np.ndarray, accumulate: Any, empty: float) -> np.ndarray:
            # Over the parties still missing once the first k arrived (k = 0..n).
            return np.append(accumulate(np.asarray(values, dtype=np.float64)[order][::-1])[::-1],
                             empty)

        e = missing_after(early, np.maximum.accumulate, -math.inf)
        lt = missing_after(late, np.maximum.accumulate, -math.inf)
        prewarm = math.inf if launch is None else max(launch - self.cold_start_s, 0.0)
        out: list[float] = []
        t, last_ping = 0.0, -math.inf

        def until(x: float) -> float:  # the next moment to look at, the pre-warm's included
            return min(x, prewarm) if t < prewarm else x

        while True:
            k = int(np.searchsorted(arrived, t, side="right"))
            if k == a.size or math.isinf(t):
                break  # every update is in (the round closes), or no more will come
            if launch is not None and self._prewarms(t, launch, last_ping):
                out.append(t)
                last_ping = t
                t = until(t + self.ping_s)
                continue
            begin, end = float(e[k]) - self.cold_start_s, float(lt[k])
            if t > end:
                if t < prewarm:
                    t = prewarm
                    continue
                break  # past the latest late bound: later arrivals only lower it
            last = float(arrived[k - 1]) if k else 0.0
            nxt = float(arrived[k]) if k < arrived.size else math.inf
            if participation is not None and participation.completion_odds(
                    t, ~(a <= t)) < COMPLETION_LIKELY:
                # Likely to end at t_wait, not by an update; the odds only fall until
                # the next update.
                t = until(nxt)
            elif t < begin:
                t = until(min(begin, nxt))  # the window opens, or an arrival may open it sooner
            elif not self._holds(t, last, t - last_ping):
                t = until(nxt)  # nothing to hold until the next update
            else:
                out.append(t)
                last_ping = t
                t = until(t + self.ping_s)
        return np.asarray(out)
