"""Bulyan.

El Mhamdi, Guerraoui and Rouault, "The Hidden Vulnerability of Distributed
Learning in Byzantium", ICML 2018.  With ``n >= 4f + 3`` updates: select
``theta = n - 2f`` of them by applying Krum repeatedly to the ones not yet
selected, then, per coordinate, average the ``beta = theta - 2f`` selected
values closest to their median.  Needs all updates at once; the selection
reuses one distance matrix (:func:`fedfaas.fusion.krum.squared_distances`) and
the coordinate step is chunked tensor by tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fedfaas.errors import FusionError
from fedfaas.fusion.algorithm import Algorithm, FusionResult, ServerState, Tensors
from fedfaas.fusion.checks import (
    ModelSpec,
    check_param,
    check_parties,
    check_updates,
    check_weights,
)
from fedfaas.fusion.krum import krum_scores, squared_distances
from fedfaas.fusion.stacking import coordinatewise


def bulyan_select(distances: np.ndarray, num_malicious: int) -> list[int]:
    """Indices of the ``n - 2f`` updates chosen by iterated Krum, in selection order."""
    n, f = distances.shape[0], num_malicious
    if n < 4 * f + 3:
        raise FusionError(f"Bulyan needs at least 4f + 3 = {4 * f + 3} updates for f = {f}, "
                          f"got {n}")
    remaining = list(range(n))
    chosen: list[int] = []
    for _ in range(n - 2 * f):
        sub = distances[np.ix_(remaining, remaining)]
        best = remaining[int(np.argmin(krum_scores(sub, f)))]
        chosen.append(best)
        remaining.remove(best)
    return chosen


def bulyan_combine(selected: Sequence[Tensors], num_malicious: int, spec: ModelSpec
                   ) -> dict[str, np.ndarray]:
    """Per coordinate, the mean of the ``theta - 2f`` selected values closest to the median."""
    beta = len(selected) - 2 * num_malicious
    if beta < 1:
        raise FusionError(f"Bulyan needs more than {2 * num_malicious} selected updates")

    def reduce(block: np.ndarray) -> np.ndarray:
        dev = np.abs(block - np.median(block, axis=0))
        idx = np.argpartition(dev, beta - 1, axis=0)[:beta]
        return np.take_along_axis(block, idx, axis=0).mean(axis=0)

    return coordinatewise(selected, spec, reduce)


def bulyan(updates: Sequence[Tensors], num_malicious: int,
           parties: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The Bulyan aggregate of all updates, in each tensor's dtype."""
    spec = check_updates(updates, parties)
    chosen = bulyan_select(squared_distances(updates, spec), num_malicious)
    return bulyan_combine([updates[i] for i in chosen], num_malicious, spec)


class Bulyan(Algorithm):
    """Iterated-Krum selection followed by a coordinate-wise trimmed mean around the median."""

    name = "bulyan"

    def __init__(self, *, num_malicious: int = 0) -> None:
        self.num_malicious = check_param("num_malicious", num_malicious, lo=0, integer=True)

    def params(self) -> dict[str, Any]:
        """``{"num_malicious": f}``."""
        return {"num_malicious": self.num_malicious}

    def fuse(self, updates: Sequence[Tensors], weights: Sequence[float],
             parties: Sequence[str] | None = None, *, global_model: Tensors | None = None,
             state: ServerState | None = None) -> FusionResult:
        """The Bulyan model; ``weights`` are validated but not used."""
        names = check_parties(parties, len(updates))
        check_weights(weights, len(updates))
        spec = check_updates(updates, names)
        chosen = bulyan_select(squared_distances(updates, spec), self.num_malicious)
        model = bulyan_combine([updates[i] for i in chosen], self.num_malicious, spec)
        return FusionResult(model, [names[i] for i in chosen],
                            meta={"selected": [names[i] for i in chosen]})
