"""Krum and Multi-Krum.

Blanchard, El Mhamdi, Guerraoui and Stainer, "Machine Learning with Adversaries:
Byzantine Tolerant Gradient Descent", NeurIPS 2017.  Each update is scored by
the sum of its squared distances to its ``n - f - 2`` nearest neighbours; Krum
returns the update with the lowest score, Multi-Krum the (unweighted) mean of
the ``m`` lowest.  Needs all updates at once and ``n > 2f + 2``.

Distances come from one Gram matrix (``|a-b|^2 = |a|^2 + |b|^2 - 2 a.b``),
built tensor by tensor over centred chunks in float64, so there is no Python
loop over pairs and memory stays bounded.  Squared distances add up over model
shards, so sharded aggregators can each compute theirs and sum them.  Only
float tensors count (integer buffers such as BatchNorm counters are not
parameters).
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
    is_float,
)
from fedfaas.fusion.partial import PartialAggregate
from fedfaas.fusion.stacking import BUDGET, stacked_chunks


def squared_distances(updates: Sequence[Tensors], spec: ModelSpec | None = None,
                      budget: int = BUDGET) -> np.ndarray:
    """N x N matrix of squared L2 distances between updates (float tensors only)."""
    if spec is None:
        spec = check_updates(updates)
    n = len(updates)
    gram = np.zeros((n, n))
    for t in spec:
        if not is_float(t.dtype):
            continue
        for _, _, block in stacked_chunks([u[t.name] for u in updates], np.dtype(np.float64),
                                          budget):
            # Centring leaves distances unchanged and avoids cancelling large |a|^2 terms.
            block -= block.mean(axis=0)
            gram += block @ block.T
    sq = np.diag(gram)
    dist = sq[:, None] + sq[None, :] - 2.0 * gram
    np.maximum(dist, 0.0, out=dist)
    np.fill_diagonal(dist, 0.0)
    return dist


def krum_scores(distances: np.ndarray, num_malicious: int) -> np.ndarray:
    """Each update's sum of squared distances to its ``n - f - 2`` nearest neighbours."""
    n = distances.shape[0]
    k = min(max(1, n - num_malicious - 2), n - 1)
    if k < 1:
        return np.zeros(n)
    d = distances.copy()
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, :k].sum(axis=1)


def krum_select(distances: np.ndarray, num_malicious: int, num_selected: int = 1
                ) -> list[int]:
    """Indices of the ``num_selected`` updates with the lowest Krum scores, best first."""
    n = distances.shape[0]
    if n < 2 * num_malicious + 3:
        raise FusionError(f"Krum needs more than 2f + 2 = {2 * num_malicious + 2} updates "
                          f"for f = {num_malicious}, got {n}")
    if not 1 <= num_selected <= n:
        raise FusionError(f"cannot select {num_selected} of {n} updates")
    order = np.argsort(krum_scores(distances, num_malicious), kind="stable")
    return [int(i) for i in order[:num_selected]]


def _copy(update: Tensors, spec: ModelSpec) -> dict[str, np.ndarray]:
    return {t.name: np.array(update[t.name], order="C") for t in spec}


def _mean(updates: Sequence[Tensors], spec: ModelSpec) -> dict[str, np.ndarray]:
    partial = PartialAggregate(spec)
    partial.add_many(updates, [1.0] * len(updates), [str(i) for i in range(len(updates))])
    return partial.finalize(consume=True)


def krum(updates: Sequence[Tensors], num_malicious: int,
         parties: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The update with the lowest Krum score (a copy)."""
    spec = check_updates(updates, parties)
    best = krum_select(squared_distances(updates, spec), num_malicious)[0]
    return _copy(updates[best], spec)


def multi_krum(updates: Sequence[Tensors], num_malicious: int, num_selected: int,
               parties: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The unweighted mean of the ``num_selected`` updates with the lowest Krum scores."""
    spec = check_updates(updates, parties)
    chosen = krum_select(squared_distances(updates, spec), num_malicious, num_selected)
    return _mean([updates[i] for i in chosen], spec)


class Krum(Algorithm):
    """Select the single most central update, tolerating ``num_malicious`` Byzantine parties."""

    name = "krum"

    def __init__(self, *, num_malicious: int = 0) -> None:
        self.num_malicious = check_param("num_malicious", num_malicious, lo=0, integer=True)

    def params(self) -> dict[str, Any]:
        """``{"num_malicious": f}``."""
        return {"num_malicious": self.num_malicious}

    def _select(self, updates: Sequence[Tensors], weights: Sequence[float],
                parties: Sequence[str] | None, m: int
                ) -> tuple[ModelSpec, list[str], list[int], dict[str, Any]]:
        names = check_parties(parties, len(updates))
        check_weights(weights, len(updates))
        spec = check_updates(updates, names)
        dist = squared_distances(updates, spec)
        chosen = krum_select(dist, self.num_malicious, m)
        scores = krum_scores(dist, self.num_malicious)
        meta = {"krum_scores": {p: float(s) for p, s in zip(names, scores, strict=True)}}
        return spec, names, chosen, meta

    def fuse(self, updates: Sequence[Tensors], weights: Sequence[float],
             parties: Sequence[str] | None = None, *, global_model: Tensors | None = None,
             state: ServerState | None = None) -> FusionResult:
        """The selected update; ``weights`` are validated but not used."""
        spec, names, chosen, meta = self._select(updates, weights, parties, 1)
        return FusionResult(_copy(updates[chosen[0]], spec), [names[chosen[0]]], meta=meta)


class MultiKrum(Krum):
    """Average the ``num_selected`` most central updates (default ``n - num_malicious``)."""

    name = "multi-krum"

    def __init__(self, *, num_malicious: int = 0, num_selected: int | None = None) -> None:
        super().__init__(num_malicious=num_malicious)
        self.num_selected = (None if num_selected is None else
                             check_param("num_selected", num_selected, lo=1, integer=True))

    def params(self) -> dict[str, Any]:
        """``num_malicious`` and ``num_selected``."""
        return {**super().params(), "num_selected": self.num_selected}

    def fuse(self, updates: Sequence[Tensors], weights: Sequence[float],
             parties: Sequence[str] | None = None, *, global_model: Tensors | None = None,
             state: ServerState | None = None) -> FusionResult:
        """The mean of the selected updates; ``weights`` are validated but not used."""
        m = self.num_selected or max(1, len(updates) - self.num_malicious)
        spec, names, chosen, meta = self._select(updates, weights, parties, m)
        model = _mean([updates[i] for i in chosen], spec)
        return FusionResult(model, [names[i] for i in chosen], meta=meta)
