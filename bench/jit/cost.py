"""Container-seconds cost model of aggregation on a serverless platform (JIT paper 3, 6.2).

The paper measures "the number of containers used multiplied by the time each
container was alive" and prices it at 0.0002692 USD per container-second
(Fig. 9).  This module models where those seconds go; the simulator applies
the same model to every strategy.

Work (``M`` bytes per update, one container with ``C_agg`` cores):

- fusing one update, ``t_fuse = t_pair / C_agg (+ M / ingest_bw)`` with
  ``t_pair = M / fusion_bw`` per core (paper 5.4; updates are fused from memory,
  as the paper's ``t_agg`` formula and FLStore's cache assume; set
  ``ingest_bw`` to charge a per-update read from storage instead);
- state load and checkpoint, ``M / B_dc`` each (paper 3: every serverless
  deployment loads the aggregator state and checkpoints it back);
- cold start ``cold_start_s`` when a new container is created.

Lifecycles:

- ``stateless`` invocations (eager and batched serverless) each load state,
  fuse, checkpoint; the platform keeps a container warm ``keep_alive_s``
  after its last invocation (Knative's 60 s stable window) and reuses it;
- ``drain`` runs (lazy and JIT) keep the partial aggregate in memory while
  they run; once idle for longer than a relaunch would cost
  (``cold + load + checkpoint``, rent-or-buy) they checkpoint and release.
  JIT uses its arrival predictions here too: when the next update is
  predicted (early bound) within that break-even time, one container stays
  warm until the late bound of the last missing party; otherwise it is
  released at once and one container is pre-warmed to be ready at that
  early bound (just in time, paper 3 and 5.5); other idle containers are
  released at once, and the partials they checkpoint are merged by the
  container that waits;
- ``always-on`` aggregators live for the whole job;
- when a round's last fusion ends, the scheduler knows the round is over and
  releases every container (all strategies alike), and one finalisation
  merges the remaining partial aggregates by a tree and writes the global model.

Dispatch is FIFO to the most recently used idle container, else to a busy
one that frees up sooner than a cold start would take, else to a new
container while the job has fewer than ``N_agg`` (the paper's aggregator
count), else to the earliest free one.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from fedfaas.errors import BadRequest

PRICE_PER_CONTAINER_S = 0.0002692
"""USD per container-second (paper Fig. 9, Microsoft Azure)."""


@dataclass(frozen=True)
class CostModel:
    """Parameters of the platform and aggregation cost (see the module docstring).

    Parameters
    ----------
    cold_start_s
        Seconds to schedule and start a new aggregation container.
    keep_alive_s
        Idle seconds a platform keeps a stateless container warm.
    b_dc
        Intra-datacenter bandwidth, bytes/s (state load and checkpoint).
    fusion_bw
        Bytes of one update fused per second on one core.
    c_agg
        Usable cores per aggregation container.
    ingest_bw
        If set, each update is also read from storage at this many bytes/s.
    parties_per_aggregator
        ``N_agg = ceil(N_parties / parties_per_aggregator)``.
    price_per_container_s
        USD per container-second.
    """

    cold_start_s: float = 1.5
    keep_alive_s: float = 60.0
    b_dc: float = 1.25e9
    fusion_bw: float = 4e9
    c_agg: int = 2
    ingest_bw: float | None = None
    parties_per_aggregator: int = 100
    price_per_container_s: float = PRICE_PER_CONTAINER_S

    def __post_init__(self) -> None:
        for name in ("cold_start_s", "keep_alive_s", "price_per_container_s"):
            if getattr(self, name) < 0:
                raise BadRequest(f"{name} must be >= 0")
        for name in ("b_dc", "fusion_bw"):
            if getattr(self, name) <= 0:
                raise BadRequest(f"{name} must be > 0")
        if self.ingest_bw is not None and self.ingest_bw <= 0:
            raise BadRequest("ingest_bw must be > 0 or None")
        if self.c_agg < 1 or self.parties_per_aggregator < 1:
            raise BadRequest("c_agg and parties_per_aggregator must be >= 1")

    def t_pair(self, model_bytes: float) -> float:
        """Seconds to fuse a pair of updates on one core (deterministic, no calibration)."""
        return model_bytes / self.fusion_bw

    def t_fuse(self, model_bytes: float) -> float:
        """Container-seconds to fuse one update."""
        extra = 0.0 if self.ingest_bw is None else model_bytes / self.ingest_bw
        return self.t_pair(model_bytes) / self.c_agg + extra

    def t_io(self, model_bytes: float) -> float:
        """State load, or checkpoint, of one model-sized object."""
        return model_bytes / self.b_dc

    def n_agg(self, n_parties: int) -> int:
        """Aggregator containers of a job with ``n_parties`` parties."""
        return max(1, math.ceil(n_parties / self.parties_per_aggregator))

    def relaunch_s(self, model_bytes: float) -> float:
        """What releasing and relaunching a drain container costs: cold start, load, checkpoint."""
        return self.cold_start_s + 2 * self.t_io(model_bytes)

    def min_chunk(self, model_bytes: float) -> int:
        """Fewest updates worth their own drain container (work at least its overhead)."""
        return max(1, math.ceil(self.relaunch_s(model_bytes) / self.t_fuse(model_bytes)))

    def finalise(self, model_bytes: float, p: int) -> tuple[float, float]:
        """(duration, container-seconds) of merging ``p`` partials by a tree and writing the model."""
        step = self.t_io(model_bytes) + self.t_fuse(model_bytes)
        p = max(1, p)
        duration = math.ceil(math.log2(p)) * step + self.t_io(model_bytes)
        return duration, (p - 1) * step + self.t_io(model_bytes)

    def cost_usd(self, container_s: float) -> float:
        """Projected cost of ``container_s`` container-seconds."""
        return container_s * self.price_per_container_s


@dataclass
class PoolRun:
    """What one round's invocations did on the platform."""

    finish: np.ndarray
    container_s: float
    cold_starts: int
    partials: int
    """Partial aggregates left for finalisation to merge (see :func:`run_pool`)."""


@dataclass(frozen=True)
class ArrivalForecast:
    """JIT's view of the arrivals still to come, to hold or pre-warm containers.

    ``arrived`` are the actual arrival times, sorted.  Among the parties that
    arrive after ``arrived[k - 1]`` (index 0: all parties; the last: none left),
    ``next_early[k]`` is the earliest predicted early bound and ``last_late[k]``
    the latest predicted late bound.
    """

    arrived: np.ndarray
    next_early: np.ndarray
    last_late: np.ndarray

    @classmethod
    def of(cls, actual: np.ndarray, early: np.ndarray, late: np.ndarray) -> ArrivalForecast:
        """From per-party actual arrivals and predicted bounds (same party order)."""
        order = np.argsort(actual, kind="stable")
        e, lt = early[order][::-1], late[order][::-1]
        return cls(actual[order], np.append(np.minimum.accumulate(e)[::-1], math.inf),
                   np.append(np.maximum.accumulate(lt)[::-1], -math.inf))

    def after(self, t: float) -> tuple[float, float]:
        """(next early bound, last late bound) of the parties not arrived by ``t``."""
        k = int(np.searchsorted(self.arrived, t, side="right"))
        return float(self.next_early[k]), float(self.last_late[k])


_BUSY, _IDLE, _DEAD = 0, 1, 2


def run_pool(ready: np.ndarray, work: np.ndarray, *, cap: int, cold_s: float, idle_limit_s: float,
             release_s: float = 0.0, forecast: ArrivalForecast | None = None,
             merge_s: float | None = None) -> PoolRun:
    """Simulate invocations (sorted by ``ready``) on up to ``cap`` containers.

    ``work[i]`` is invocation ``i``'s busy time on a warm container; a new one
    adds ``cold_s``.  A container idle for ``idle_limit_s`` dies (paying
    ``release_s`` to checkpoint); all are released when the last invocation
    finishes.  With a ``forecast`` (JIT), an idle container instead stays warm
    until the next predicted arrival when that comes sooner than
    ``idle_limit_s``, and otherwise is released at once while one container is
    pre-warmed to be ready at that predicted arrival.

    ``partials`` is what finalisation must merge: by default the most
    containers alive at once.  With ``merge_s`` (drain runs, which keep their
    partial in memory), partials checkpointed by containers released
    mid-round are merged one by one, ``merge_s`` each, by a container still
    waiting for updates, and only those not merged by the end remain, plus
    the partials of the containers still alive.  Plain Python by design:
    each dispatch depends on every earlier one; heaps keep a step O(log cap).
    """
    n = int(ready.size)
    finish = np.empty(n)
    if n == 0:
        return PoolRun(finish, 0.0, 0, 0)
    if cap < 1:
        raise BadRequest("cap must be >= 1")
    push, pop = heapq.heappush, heapq.heappop
    busy: list[tuple[float, int]] = []          # (free_at, container)
    expiry: list[tuple[float, int, int]] = []   # (dies_at, version, container) of idle ones
    stack: list[int] = []                       # idle containers, most recently freed last
    born: list[float] = []
    last_free: list[float] = []
    state: list[int] = []
    version: list[int] = []
    dies_at: list[float] = []
    released: list[float] = []
    dead_s, alive, colds, peak = 0.0, 0, 0, 0
    prewarmed_for = -math.inf
    holder = -1

    def new_container(t_born: float, free_at: float) -> int:
        born.append(t_born)
        last_free.append(free_at)
        state.append(_BUSY)
        version.append(0)
        dies_at.append(math.inf)
        return len(born) - 1

    r_list, w_list = ready.tolist(), work.tolist()
    for i in range(n):
        r = r_list[i]
        while busy and busy[0][0] <= r:
            f, c = pop(busy)
            state[c], version[c] = _IDLE, version[c] + 1
            limit = idle_limit_s
            if forecast is not None:
                e, late = forecast.after(f)
                if holder not in (-1, c) and state[holder] == _IDLE and dies_at[holder] > f:
                    limit = 0.0  # one warm container is enough for stragglers
                elif e - f <= idle_limit_s:
                    limit = max(late - f, idle_limit_s)  # warm until the stragglers' late bound
                    holder = c
                else:
                    limit = 0.0
                    if math.isfinite(e) and e > prewarmed_for:  # ready just in time for it
                        prewarmed_for = e
                        pw = new_container(e - cold_s, e)
                        alive += 1
                        peak = max(peak, alive)
                        colds += 1
                        push(busy, (e, pw))
            dies_at[c] = f + limit
            push(expiry, (f + limit, version[c], c))
            stack.append(c)
        while expiry and expiry[0][0] < r:
            dies, v, c = pop(expiry)
            if version[c] == v and state[c] == _IDLE:
                state[c] = _DEAD
                alive -= 1
                dead_s += dies + release_s - born[c]
                released.append(dies + release_s)
        c = -1
        while stack:
            cand = stack.pop()
            if state[cand] == _IDLE:
                c = cand
                break
        if c >= 0:
            state[c], version[c] = _BUSY, version[c] + 1
            end = r + w_list[i]
        elif busy and (alive >= cap or busy[0][0] - r <= cold_s):
            f, c = pop(busy)
            end = f + w_list[i]
        else:
            c = new_container(r, r)
            alive += 1
            peak = max(peak, alive)
            colds += 1
            end = r + cold_s + w_list[i]
        finish[i] = end
        last_free[c] = end
        push(busy, (end, c))
    t_end = float(finish.max())
    live_s = 0.0
    alive_end = 0
    for c in range(len(born)):
        if state[c] == _DEAD or born[c] >= t_end:  # dead, or a pre-warm never started
            continue
        f = last_free[c]
        if state[c] == _IDLE:
            dies = dies_at[c]
        elif f >= t_end:
            dies = t_end
        elif forecast is None:
            dies = f + idle_limit_s
        else:
            dies = f  # nothing left to arrive: release at once
        if dies >= t_end:
            alive_end += 1
            end = t_end
        else:
            released.append(dies + release_s)
            end = dies + release_s
        live_s += min(end, t_end) - born[c]
    partials = max(1, peak)
    if merge_s is not None:
        merged, merger = 0, -math.inf
        for t_rel in sorted(released):
            merger = max(merger, t_rel) + merge_s
            merged += merger <= t_end
        partials = max(1, alive_end + len(released) - merged)
    return PoolRun(finish, dead_s + live_s, colds, partials)


def always_on_finish(ready: np.ndarray, lanes: np.ndarray, n_lanes: int, t_fuse: float) -> np.ndarray:
    """Finish times of updates fused on arrival by ``n_lanes`` always-on aggregators.

    ``lanes[i]`` is the aggregator of update ``i`` (a party is pinned to one
    aggregator); each lane is a FIFO queue with service ``t_fuse``, solved by
    the Lindley recursion ``f_j = max(a_j, f_{j-1}) + s`` in closed form:
    ``f_j = (j + 1) s + max_{i <= j} (a_i - i s)``, all lanes at once (a running
    maximum that an offset per lane keeps from crossing lanes).
    """
    if ready.size == 0:
        return np.empty(0)
    if lanes.min() < 0 or lanes.max() >= n_lanes:
        raise BadRequest("lanes must be in [0, n_lanes)")
    order = np.lexsort((ready, lanes))
    a, lane = ready[order], lanes[order]
    starts = np.searchsorted(lane, lane, side="left")  # first index of each element's lane
    j = np.arange(a.size) - starts
    v = a - j * t_fuse
    span = float(v.max() - v.min()) + 1.0
    running = np.maximum.accumulate(v + lane * span) - lane * span
    finish = np.empty(ready.size)
    finish[order] = (j + 1) * t_fuse + running
    return finish
