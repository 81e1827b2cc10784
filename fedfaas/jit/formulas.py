"""The paper's times of one round: ``t_comm``, ``t_upd``, ``t_rnd`` and ``t_agg`` (JIT paper 5.3, 5.4).

Per party (Fig. 6, lines 9-10) and per job (lines 11, 13)::

    t_comm = M / B_d + M / B_u
    t_upd  = t_train + t_comm          (capped at t_wait: later updates are ignored, 4.3)
    t_rnd  = max_i t_upd
    t_agg  = N_parties * t_pair / (C_agg * N_agg) + M / B_dc

Pure functions over numbers and arrays; how ``t_train`` is found for each
party (line 7) is :class:`~fedfaas.jit.estimator.DeadlineEstimator`'s job.
"""

from __future__ import annotations

import numpy as np

from fedfaas.errors import BadRequest


def t_comm(model_bytes: float, b_down: float, b_up: float) -> float:
    """Model download plus upload time (Fig. 6, line 9)."""
    if b_down <= 0 or b_up <= 0:
        raise BadRequest("bandwidths must be > 0")
    return model_bytes / b_down + model_bytes / b_up


def t_upd(t_train: np.ndarray, t_comm: np.ndarray, t_wait: float | None = None) -> np.ndarray:
    """When each party's update arrives, ``t_train + t_comm`` (Fig. 6, line 10).

    With a ``t_wait`` an update later than it is ignored (paper 4.3), so ``t_upd``
    is capped there.
    """
    upd = np.asarray(t_train, dtype=np.float64) + np.asarray(t_comm, dtype=np.float64)
    return upd if t_wait is None else np.minimum(upd, t_wait)


def t_rnd(t_upd: np.ndarray) -> float:
    """The round ends with its last update, ``max_i t_upd`` (Fig. 6, line 11)."""
    return float(np.max(t_upd))


def t_agg(n_parties: int, t_pair: float, c_agg: int, n_agg: int, model_bytes: float,
          b_dc: float) -> float:
    """Aggregation time of ``n_parties`` updates (paper 5.4, Fig. 6 line 13)."""
    if n_parties < 0 or t_pair < 0 or c_agg < 1 or n_agg < 1 or b_dc <= 0:
        raise BadRequest("t_agg needs n_parties >= 0, t_pair >= 0, c_agg, n_agg >= 1, b_dc > 0")
    return n_parties * t_pair / (c_agg * n_agg) + model_bytes / b_dc
