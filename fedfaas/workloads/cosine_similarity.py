"""Cosine similarity between the clients of a round (FLStore Table 1, policy P2; Liu et al. 2023a).

The client-by-client matrix comes from one Gram matrix of the flattened
updates, so the cost is one pass over the round's data.  Each client's
similarity to the round's aggregate (FedAvg, weighted by ``num_examples``
when every update carries it) follows from the same Gram matrix:
``<x_i, a> = sum_j w_j G_ij`` and ``|a|^2 = w^T G w``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedfaas.workloads.base import ClientUpdate, WorkloadInputs, WorkloadSpec
from fedfaas.workloads.params import Param
from fedfaas.workloads.prepared import Prepared
from fedfaas.workloads.updates import (
    check_round_updates,
    cosine_from_gram,
    example_weights,
    gram_matrix,
    reject_nonfinite,
)

NAME = "cosine-similarity"
PARAMS = (
    Param("precision", "str", "float64", "arithmetic precision of the Gram matrix",
          choices=("float32", "float64")),
    Param("weighting", "str", "num_examples", "aggregate weights: num_examples (from "
          "metadata, uniform if any is missing) or uniform", choices=("num_examples", "uniform")),
    Param("use_base", "bool", True, "compare deltas to the round's base model when cached"),
)


def similarity(updates: Sequence[ClientUpdate], *, base: Mapping[str, np.ndarray] | None = None,
               precision: str = "float64", weighting: str = "num_examples",
               prepared: Prepared | None = None) -> dict[str, Any]:
    """Cosine matrix of a round's updates and each update's similarity to the aggregate.

    ``prepared`` keeps the round's Gram matrix in a cache function between requests.
    """
    names = check_round_updates(NAME, updates, min_clients=1, base=base)
    reject_nonfinite(NAME, updates, names, prepared)
    dtype = np.float32 if precision == "float32" else np.float64
    gram = gram_matrix(updates, names, base, dtype, prepared)
    cos = cosine_from_gram(gram)
    w, used = example_weights(updates, weighting)
    dots = gram @ w
    agg_norm = float(np.sqrt(max(float(w @ gram @ w), 0.0)))
    norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
    denom = norms * agg_norm
    to_agg = np.divide(dots, denom, out=np.zeros(len(updates)), where=denom > 0)
    clients = [u.client for u in updates]
    off = cos[~np.eye(len(clients), dtype=bool)]
    return {
        "workload": NAME,
        "clients": clients,
        "matrix": cos.tolist(),
        "to_aggregate": {c: float(np.clip(v, -1.0, 1.0)) for c, v in zip(clients, to_agg,
                                                                          strict=True)},
        "norms": {c: float(v) for c, v in zip(clients, norms, strict=True)},
        "weighting": used,
        "weights": {c: float(v) for c, v in zip(clients, w, strict=True)},
        "mean_pairwise": float(off.mean()) if off.size else None,
        "compared": "deltas" if base is not None else "weights",
        "precision": precision,
    }


def _execute(inputs: WorkloadInputs, p: dict[str, Any]) -> dict[str, Any]:
    base = inputs.base() if p["use_base"] else None
    result = similarity(inputs.updates, base=base, precision=p["precision"],
                        weighting=p["weighting"], prepared=inputs.prepared)
    result["round"] = inputs.round
    return result


SPEC = WorkloadSpec.over_round(
    NAME,
    "client-by-client cosine similarity of a round and similarity to the aggregate",
    PARAMS, _execute,
)


def run(inputs: WorkloadInputs, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``params`` and run :func:`similarity` on the round's cached updates."""
    return SPEC.run(inputs, params)
