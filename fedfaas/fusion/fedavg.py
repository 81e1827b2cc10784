"""FedAvg: the weighted average of the parties' models.

McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017.  Weights are the parties' numbers of
examples; see :mod:`fedfaas.fusion.checks` for the dtype rules (integer buffers
are rounded, half floats accumulate in float32).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedfaas.fusion.algorithm import FusionResult, LinearAlgorithm, ServerState, Tensors
from fedfaas.fusion.partial import PartialAggregate


def fedavg(updates: Sequence[Tensors], weights: Sequence[float],
           parties: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """``sum_i w_i * x_i / sum_i w_i`` per tensor, in each tensor's own dtype."""
    partial = PartialAggregate()
    partial.add_many(updates, weights,
                     list(parties) if parties is not None else [str(i) for i in range(len(updates))])
    return partial.finalize(consume=True)


class FedAvg(LinearAlgorithm):
    """Federated averaging weighted by number of examples."""

    name = "fedavg"

    def finalize(self, partial: PartialAggregate, *, global_model: Tensors | None = None,
                 state: ServerState | None = None, consume: bool = False) -> FusionResult:
        """The weighted mean of the updates folded into ``partial``."""
        parties = list(partial.parties)
        return FusionResult(partial.finalize(consume=consume), parties)
