"""Calibration of ``t_pair``, the seconds to fuse a pair of updates on one core (JIT paper 5.4).

"``t_pair`` on a single CPU core can be easily computed offline on the
aggregator before the FL job starts."  The estimator knows a job's model only by
its size, so :func:`calibrate_t_pair` measures a float32 model of that size
with the fusion kernel itself (:func:`fedfaas.fusion.timing.measure_t_pair`,
the one measurement of ``t_pair``), capped so that calibration stays well
under a second.
"""

from __future__ import annotations

import numpy as np

from fedfaas.errors import BadRequest
from fedfaas.fusion.checks import TensorInfo
from fedfaas.fusion.timing import measure_t_pair

CALIBRATION_MAX_BYTES = 32 * 1024**2
"""Largest model fused by :func:`calibrate_t_pair`; bigger models are scaled linearly."""


def calibrate_t_pair(model_bytes: int, repeats: int = 3, *, seed: int = 0,
                     max_bytes: int = CALIBRATION_MAX_BYTES) -> float:
    """``t_pair`` of a float32 model of ``model_bytes``, on one core (paper 5.4).

    The fastest of ``repeats`` folds of a random update into an aggregate, by the
    aggregation functions' kernel.  Models larger than ``max_bytes`` are
    calibrated on ``max_bytes`` and scaled linearly (fusion is a streaming pass).
    """
    if model_bytes < 4:
        raise BadRequest(f"model_bytes must be >= 4, got {model_bytes}")
    if repeats < 1:
        raise BadRequest(f"repeats must be >= 1, got {repeats}")
    n = max(1, min(int(model_bytes), int(max_bytes)) // 4)
    model = (TensorInfo("calibration", (n,), np.dtype(np.float32)),)
    return measure_t_pair(model, threads=1, repeats=repeats, seed=seed) * (model_bytes / (n * 4))
