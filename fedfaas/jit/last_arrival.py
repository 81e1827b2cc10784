"""When a round's last update arrives: order statistics of noisy arrivals (beyond JIT paper 5.3, 5.5).

The paper's ``t_rnd = max_i t_upd`` (Fig. 6, line 11) treats every ``t_upd`` as
exact.  With the spreads an :class:`~fedfaas.jit.learning.ArrivalLearner` has
learned, arrivals are independent normals ``T_i ~ N(mean_i, sigma_i)`` and the
round's end is their maximum, ``P(max_i T_i <= t) = prod_i Phi((t - mean_i) /
sigma_i)``.  The JIT timer (paper 5.5) aims at a low quantile of it
(:func:`last_arrival_quantile`), or as late as the job's latency target allows
(:func:`latest_ready_time`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr

from fedfaas.errors import BadRequest


def _support(m: np.ndarray, s: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Where ``P(max_i T_i <= t)`` rises from 0 to 1 (six deviations either side), and
    the arrivals that matter there: parties certainly in by its start do not."""
    fixed = float(np.max(m[s <= 0])) if np.any(s <= 0) else -math.inf
    lo = max(fixed, float(np.max(m - 6 * s)))
    hi = max(lo, float(np.max(m + 6 * s)))
    return lo, hi, (s > 0) & (m + 8 * s > lo)


def last_arrival_quantile(mean: np.ndarray, sigma: np.ndarray, q: float) -> float:
    """Time by which, with probability ``q``, *every* update has arrived.

    Arrivals are independent normals ``N(mean_i, sigma_i)`` (``sigma_i = 0``:
    exactly at ``mean_i``), so ``P(max <= t) = prod_i Phi((t - mean_i) / sigma_i)``;
    solved for ``t`` by bisection.
    """
    if not 0 < q < 1:
        raise BadRequest(f"q must be in (0, 1), got {q}")
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    if m.size == 0:
        raise BadRequest("no arrivals to take a quantile of")
    lo, hi, keep = _support(m, s)
    m, s = m[keep], s[keep]
    if m.size == 0:
        return lo
    target = math.log(q)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if float(np.sum(log_ndtr((mid - m) / s))) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-3:
            break
    return 0.5 * (lo + hi)


def _last_arrival_cdf_grid(mean: np.ndarray, sigma: np.ndarray,
                           points: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """``P(max_i T_i <= t)`` on a grid spanning where it rises from 0 to 1."""
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(sigma, dtype=np.float64)
    lo, hi, keep = _support(m, s)
    t = np.linspace(lo, hi, points)
    if not keep.any():
        return t, np.ones_like(t)
    z = (t[:, None] - m[keep][None, :]) / s[keep][None, :]
    return t, np.exp(np.sum(log_ndtr(z), axis=1))


def latest_ready_time(mean: np.ndarray, sigma: np.ndarray, budget: float,
                      cap: float | None = None) -> float:
    """Latest time an aggregator may be ready whose expected lateness is at most ``budget``.

    With the last update at ``T = max_i T_i`` (independent normals, as in
    :func:`last_arrival_quantile`), an aggregator ready at ``x`` publishes
    ``(x - T)+`` later than one that was waiting, and ``E[(x - T)+] =
    integral of P(T <= t) dt`` up to ``x``; the largest ``x`` keeping that within
    ``budget`` is found on a grid (past the grid ``P = 1`` and it grows linearly).

    ``cap`` is what a launch at the last update adds (cold start and state load):
    when the last update comes before the timer's launch, the round launches at
    once and is late by ``cap``, not by ``x - T``.  The lateness is then
    ``min((x - T)+, cap)``, whose mean is the integral of ``P(T <= t)`` over
    ``[x - cap, x]``; a budget of ``cap`` or more allows any ``x`` (the grid's end
    plus ``cap``, past every arrival, is returned).
    """
    if budget < 0:
        raise BadRequest(f"budget must be >= 0, got {budget}")
    if cap is not None and cap < 0:
        raise BadRequest(f"cap must be >= 0, got {cap}")
    t, cdf = _last_arrival_cdf_grid(mean, sigma)
    integral = np.concatenate([[0.0], np.cumsum(0.5 * (cdf[1:] + cdf[:-1]) * np.diff(t))])
    if cap is None:
        if budget >= integral[-1]:
            return float(t[-1] + (budget - integral[-1]))
        return float(np.interp(budget, integral, t))

    def below(x: np.ndarray) -> np.ndarray:  # integral of P(T <= t) up to x
        return np.where(x <= t[-1], np.interp(x, t, integral, left=0.0),
                        integral[-1] + (x - t[-1]))

    xs = np.linspace(t[0], t[-1] + cap, 2 * t.size)
    late = np.maximum.accumulate(below(xs) - below(xs - cap))
    if budget >= late[-1]:
        return float(xs[-1])
    k = int(np.searchsorted(late, budget, side="right")) - 1
    if k < 0:
        return float(xs[0])
    rise = late[k + 1] - late[k]
    frac = (budget - late[k]) / rise if rise > 0 else 0.0
    return float(xs[k] + frac * (xs[k + 1] - xs[k]))
