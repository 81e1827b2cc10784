"""Coordinate-wise trimmed mean.

Yin, Chen, Ramchandran and Bartlett, "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML 2018: per coordinate, drop the
``floor(beta * N)`` largest and smallest values and average the rest.  Needs
all updates at once; unweighted (example counts are self-reported).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fedfaas.errors import FusionError
from fedfaas.fusion.algorithm import Algorithm, FusionResult, ServerState, Tensors
from fedfaas.fusion.checks import check_param, check_parties, check_updates, check_weights
from fedfaas.fusion.stacking import coordinatewise


def trimmed_mean(updates: Sequence[Tensors], beta: float,
                 parties: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Mean of each coordinate after trimming ``floor(beta * N)`` values at each end."""
    spec = check_updates(updates, parties)
    n = len(updates)
    k = math.floor(beta * n)
    if n - 2 * k < 1:
        raise FusionError(f"trimmed mean with beta={beta} trims all {n} updates")

    def reduce(block: np.ndarray) -> np.ndarray:
        if k:
            block.partition((k, n - k - 1), axis=0)
        return block[k:n - k].mean(axis=0)

    return coordinatewise(updates, spec, reduce)


class TrimmedMean(Algorithm):
    """Coordinate-wise ``beta``-trimmed mean of the round's updates."""

    name = "trimmed-mean"

    def __init__(self, *, beta: float = 0.1) -> None:
        self.beta = check_param("beta", beta, lo=0.0, hi=0.5, hi_open=True)

    def params(self) -> dict[str, Any]:
        """``{"beta": fraction trimmed at each end}``."""
        return {"beta": self.beta}

    def fuse(self, updates: Sequence[Tensors], weights: Sequence[float],
             parties: Sequence[str] | None = None, *, global_model: Tensors | None = None,
             state: ServerState | None = None) -> FusionResult:
        """The trimmed-mean model; ``weights`` are validated but not used."""
        names = check_parties(parties, len(updates))
        check_weights(weights, len(updates))
        return FusionResult(trimmed_mean(updates, self.beta, names), names)
