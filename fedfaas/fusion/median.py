"""Coordinate-wise median.

Yin, Chen, Ramchandran and Bartlett, "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML 2018.  Needs all updates at once;
unweighted, because example counts are self-reported and a Byzantine party
could inflate its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedfaas.fusion.algorithm import Algorithm, FusionResult, ServerState, Tensors
from fedfaas.fusion.checks import check_parties, check_updates, check_weights
from fedfaas.fusion.stacking import coordinatewise


def median(updates: Sequence[Tensors], parties: Sequence[str] | None = None
           ) -> dict[str, np.ndarray]:
    """The coordinate-wise median of all updates, in each tensor's dtype."""
    spec = check_updates(updates, parties)
    return coordinatewise(updates, spec,
                          lambda block: np.median(block, axis=0, overwrite_input=True))


class Median(Algorithm):
    """Coordinate-wise median of the round's updates."""

    name = "median"

    def fuse(self, updates: Sequence[Tensors], weights: Sequence[float],
             parties: Sequence[str] | None = None, *, global_model: Tensors | None = None,
             state: ServerState | None = None) -> FusionResult:
        """The median model; ``weights`` are validated but not used."""
        names = check_parties(parties, len(updates))
        check_weights(weights, len(updates))
        return FusionResult(median(updates, names), names)
