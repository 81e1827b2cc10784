"""Aggregator planning: how many aggregators a round needs, and by when (beyond JIT paper 5.4, 5.5).

The paper's ``t_agg`` (5.4) splits a round over the job's ``N_agg`` aggregators
as if every update were in when aggregation starts at ``t_rnd - t_agg`` (5.5).
When updates trickle in before ``t_rnd``, fewer aggregators started earlier
fuse them as they come and finish as soon (:func:`choose_aggregators`, on the
fluid queue of :func:`fluid_completion`).  The job's latency target bounds how
late fusion may end (:func:`done_by`); under ``"eager"`` it is when eager
serverless aggregation (paper 6.1) would be done (:func:`eager_completion`).
"""

from __future__ import annotations

import math

import numpy as np

from fedfaas.errors import BadRequest
from fedfaas.jit.formulas import t_agg
from fedfaas.jit.spec import EstimatorJob

EAGER_DRAWS = 16
"""Draws of the arrivals averaged for eager serverless' expected latency."""
START_MARGIN = 0.2
"""With fewer aggregators than the job allows, JIT starts this fraction of their
fusion time earlier, so a round whose updates run late still finishes in time."""


def fluid_completion(arrivals: np.ndarray, start: float, work: float, k: int) -> float:
    """When ``k`` aggregators started at ``start`` have fused every update (fluid model).

    ``arrivals`` are the predicted arrival offsets, sorted; each update takes
    ``work`` seconds of one aggregator.  The ``k`` aggregators drain one queue at
    ``k / work`` updates per second, so the last fusion ends at
    ``max_i(max(start, a_i) + (n - i) * work / k)`` (0-based ``i``): the Lindley
    recursion of a single server in closed form.
    """
    a = np.asarray(arrivals, dtype=np.float64)
    if a.size == 0:
        return start
    if k < 1 or work < 0:
        raise BadRequest("fluid_completion needs k >= 1 and work >= 0")
    left = a.size - np.arange(a.size)
    return float(np.max(np.maximum(start, a) + left * (work / k)))


def eager_step(*, t_pair: float, c_agg: int, model_bytes: float, b_dc: float) -> float:
    """One stateless eager step: load the aggregator's state, fuse one update, checkpoint."""
    return 2 * model_bytes / b_dc + t_pair / c_agg


def merge_step(job: EstimatorJob, t_pair: float) -> float:
    """Merging one partial into another: load it and fuse it (``M / B_dc + t_pair / C_agg``)."""
    return job.model_bytes / job.b_dc + t_pair / job.c_agg


def eager_completion(arrivals: np.ndarray, *, t_pair: float, c_agg: int, n_agg: int,
                     model_bytes: float, b_dc: float, cold_start_s: float = 0.0,
                     keep_alive_s: float | None = None, step: float | None = None) -> float:
    """When eager serverless aggregation would have fused every update (fluid model).

    Eager runs one stateless step per update on arrival (load the aggregator's
    state, fuse, checkpoint: ``2 M / B_dc + t_pair / C_agg``) on up to ``n_agg``
    instances; in a burst the steps queue.  ``arrivals`` are offsets from the
    round's start, when the previous round's last step ran: an instance idle
    longer than ``keep_alive_s`` has been stopped by the platform, so the first
    update pays ``cold_start_s`` first when it comes later than that (and the
    backlog it leaves may reach the last update), and so does the last update
    when it comes that long after the previous steps ended.  This is the
    latency JIT promises not to exceed under the ``"eager"`` latency target.
    ``step`` is a measured warm step (None: :func:`eager_step`).
    """
    a = np.sort(np.asarray(arrivals, dtype=np.float64))
    if a.size == 0:
        return 0.0
    if step is None:
        step = eager_step(t_pair=t_pair, c_agg=c_agg, model_bytes=model_bytes, b_dc=b_dc)
    cold = keep_alive_s is not None and float(a[0]) > keep_alive_s
    start = float(a[0]) + (cold_start_s if cold else 0.0)
    done = fluid_completion(a, start, step, n_agg)
    if keep_alive_s is not None and a.size > 1:
        before = fluid_completion(a[:-1], start, step, n_agg)
        if a[-1] - before > keep_alive_s:
            done = max(done, float(a[-1]) + cold_start_s + step)
    return done


def eager_instances(arrivals: np.ndarray, *, step: float, n_agg: int) -> int:
    """Instances eager serverless starts: the most steps of ``step`` seconds that overlap.

    A warm instance takes the next step, so a new one starts only while every
    other is busy; each ends with a partial aggregate that finalisation merges.
    """
    a = np.sort(np.asarray(arrivals, dtype=np.float64))
    if a.size == 0:
        return 1
    overlap = np.arange(a.size) - np.searchsorted(a, a - step, side="right") + 1
    return int(min(n_agg, max(1, int(overlap.max()))))


def merge_time(partials: int, step: float) -> float:
    """Seconds to merge ``partials`` partial aggregates by a tree, ``step`` per merge."""
    return math.ceil(math.log2(max(1, partials))) * step


def done_by(job: EstimatorJob, t_pair: float, arrivals: np.ndarray,
            spread: np.ndarray | None = None) -> float | None:
    """Latest end of fusion, one partial left, the job's latency target allows (None: fastest).

    That is the latest time the global model may be published, less its
    write.  ``arrivals`` are the expected arrival offsets and ``spread`` their
    standard deviations.  Under ``"eager"`` it is when eager serverless would
    be there: its fusion (:func:`eager_completion`) plus the tree merge of its
    instances' partials, the wait after the last update averaged over
    ``EAGER_DRAWS`` seeded draws of the arrivals (at the means alone, parties
    due together would look like a burst that eager must queue, which their
    spread usually prevents).
    """
    a = np.asarray(arrivals, dtype=np.float64)
    if job.latency_target == "fastest" or a.size == 0:
        return None
    last = float(np.max(a))
    if job.latency_target != "eager":
        return last + float(job.latency_target) - job.model_bytes / job.b_dc

    step = job.eager_step_s
    if step is None:
        step = eager_step(t_pair=t_pair, c_agg=job.c_agg, model_bytes=job.model_bytes,
                          b_dc=job.b_dc)
    merge_s = merge_step(job, t_pair)

    def wait(arr: np.ndarray) -> float:
        # Fusion after the last update, then merging the instances' partials.
        done = eager_completion(arr, t_pair=t_pair, c_agg=job.c_agg, n_agg=job.n_agg,
                                model_bytes=job.model_bytes, b_dc=job.b_dc,
                                cold_start_s=job.cold_start_s, keep_alive_s=job.keep_alive_s,
                                step=step)
        p = eager_instances(arr, step=step, n_agg=job.n_agg)
        return done - float(arr.max()) + merge_time(p, merge_s)

    if spread is None or not np.any(spread > 0):
        return last + wait(a)
    rng = np.random.default_rng(0)  # the same draws every round: a stable plan
    draws = np.maximum(a + rng.standard_normal((EAGER_DRAWS, a.size)) * spread, 0.0)
    return last + float(np.mean([wait(d) for d in draws]))


def choose_aggregators(arrivals: np.ndarray, t_rnd: float, *, t_pair: float, c_agg: int,
                       n_agg: int, model_bytes: float, b_dc: float,
                       overhead: float = 0.0, done_by: float | None = None,
                       margin: float = START_MARGIN,
                       merge_s: float = 0.0) -> tuple[int, float, float]:
    """Fewest aggregators, their ``t_agg`` and when they finish, that finish a round in time.

    The paper's ``t_agg`` splits the round over the job's ``n_agg`` aggregators as
    if every update were in at the start; when updates trickle in before
    ``t_rnd`` (heterogeneous or intermittent parties), fewer aggregators started
    earlier fuse them as they come and finish at the same time, and each
    aggregator not started saves its cold start, state load and checkpoint.
    For each ``k`` the start is ``t_rnd - t_agg(k)`` (``margin`` of its fusion time
    earlier when ``k < n_agg``), and the smallest ``k`` is kept whose fluid completion
    (:func:`fluid_completion`) is no later than the deadline: that of ``n_agg``
    started at ``t_rnd - t_agg(n_agg)`` (or the last update fused alone), or
    ``done_by`` less the merging of ``k`` partials (:func:`merge_time`, ``merge_s``
    a step) when that is later (the job's latency target: in a burst, where the
    paper's plan needs every aggregator, fewer finish later but within it).
    ``overhead`` (the learned residual over the paper's formula) is added to
    every ``t_agg``.
    """
    a = np.sort(np.asarray(arrivals, dtype=np.float64))
    n = int(a.size)
    work = t_pair / c_agg

    def agg(k: int) -> float:
        return max(t_agg(n, t_pair, c_agg, k, model_bytes, b_dc) + overhead, 0.0)

    # No plan ends before the last update is in and fused by one aggregator.
    target = max(fluid_completion(a, t_rnd - agg(n_agg), work, n_agg), float(a[-1]) + work)
    for k in range(1, n_agg):
        t_k = agg(k) + margin * n * work / k
        end = fluid_completion(a, t_rnd - t_k, work, k)
        allowed = target if done_by is None else max(target, done_by - merge_time(k, merge_s))
        if end <= allowed:
            return k, t_k, end
    end = max(fluid_completion(a, t_rnd - agg(n_agg), work, n_agg), float(a[-1]) + work)
    return n_agg, agg(n_agg), end
