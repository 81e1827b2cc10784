"""Cluster-based personalised models (FLStore Table 1, P2; Ghosh et al. 2020, Sattler et al. 2020).

The round's clients are clustered by their updates exactly as the
``clustering`` workload does (k-means, k by silhouette, direction-normalised
deltas), then FedAvg runs within each cluster: every cluster gets its own
model, as in clustered FL (CFL) and the one-shot form of IFCA.  A request
names a client (its cluster is returned) or a cluster id; the result carries
the cluster's members, summary statistics and, under ``"tensors"``, the
personalised model for the handler to encode with the codec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads.base import TENSORS_KEY, ClientUpdate, WorkloadInputs, WorkloadSpec
from fedfaas.workloads.clustering import choose_clusters, normalize_rows
from fedfaas.workloads.params import SEED, Param
from fedfaas.workloads.prepared import Prepared, memo
from fedfaas.workloads.updates import (
    check_round_updates,
    example_weights,
    fedavg,
    is_float,
    reject_nonfinite,
    update_matrix,
)

NAME = "personalisation"
PARAMS = (
    Param("client", "str", None, "client whose cluster model to return (default: the "
          "request's client)"),
    Param("cluster", "int", None, "cluster id to return instead of a client's", minimum=0),
    Param("k", "int", None, "number of clusters (default: chosen by silhouette)", minimum=1),
    Param("k_min", "int", 2, "smallest k tried by silhouette", minimum=2),
    Param("k_max", "int", 8, "largest k tried by silhouette", minimum=2),
    Param("normalize", "bool", True, "cluster by update direction"),
    Param("projection_dim", "int", 4096, "CountSketch models longer than this", minimum=2,
          maximum=1 << 20),
    Param("weighting", "str", "num_examples", "FedAvg weights within a cluster",
          choices=("num_examples", "uniform")),
    Param("use_base", "bool", True, "cluster deltas to the round's base model when cached"),
    Param("return_model", "bool", True, "include the personalised model's tensors"),
    SEED,
)


def _distance(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> float:
    sq = 0.0
    for name, arr in a.items():
        if is_float(arr.dtype):
            diff = np.asarray(arr, np.float64) - np.asarray(b[name], np.float64)
            sq += float(np.sum(diff * diff))
    return float(np.sqrt(sq))


def personalise(updates: Sequence[ClientUpdate], *, client: str | None = None,
                cluster: int | None = None, base: Mapping[str, np.ndarray] | None = None,
                k: int | None = None, k_min: int = 2, k_max: int = 8, normalize: bool = True,
                projection_dim: int = 4096, weighting: str = "num_examples",
                return_model: bool = True, seed: int = 0, prepared: Prepared | None = None
                ) -> dict[str, Any]:
    """Cluster a round's clients and FedAvg the cluster of ``client`` (or cluster ``cluster``).

    ``prepared`` keeps the updates' sketches and the round's FedAvg in a cache function.
    """
    if (client is None) == (cluster is None):
        raise BadRequest(f"{NAME}: name exactly one of a client or a cluster")
    names = check_round_updates(NAME, updates, min_clients=1, base=base)
    reject_nonfinite(NAME, updates, names, prepared)
    clients = [u.client for u in updates]
    if client is not None and client not in clients:
        raise NotFound(f"{NAME}: client {client!r} has no update in this round")
    X, projected = update_matrix(updates, names, base, projection_dim, seed, prepared)
    fit = choose_clusters(normalize_rows(X) if normalize else X, k=k, k_min=k_min, k_max=k_max,
                          seed=seed)
    chosen = int(fit.labels[clients.index(client)]) if client is not None else int(cluster or 0)
    if chosen >= fit.k:
        raise NotFound(f"{NAME}: cluster {chosen} does not exist; there are {fit.k} clusters")
    members = [i for i in range(len(updates)) if fit.labels[i] == chosen]
    weights, used = example_weights([updates[i] for i in members], weighting)
    model = fedavg([updates[i] for i in members], weights)
    all_weights, _ = example_weights(updates, weighting)
    # The whole round's FedAvg is a per-round statistic: kept while the round is held.
    global_model = memo(prepared, ("fedavg", tuple(np.round(all_weights, 15).tolist())),
                        [u.tensors for u in updates], lambda: fedavg(updates, all_weights))
    clusters = [{"id": c, "members": [clients[i] for i in np.flatnonzero(fit.labels == c)]}
                for c in range(fit.k)]
    examples = [updates[i].num_examples for i in members]
    result: dict[str, Any] = {
        "workload": NAME,
        "client": client,
        "cluster": chosen,
        "members": [clients[i] for i in members],
        "k": fit.k,
        "clusters": clusters,
        "silhouette": {str(kk): s for kk, s in fit.silhouettes.items()},
        "weighting": used,
        "weights": {clients[i]: float(w) for i, w in zip(members, weights, strict=True)},
        "num_examples": float(sum(e for e in examples if e is not None))
        if all(e is not None for e in examples) else None,
        "distance_to_global": _distance(model, global_model),
        "projected": projected,
        "tensor_names": list(model),
    }
    if return_model:
        result[TENSORS_KEY] = model
    return result


def _execute(inputs: WorkloadInputs, p: dict[str, Any]) -> dict[str, Any]:
    client = p["client"] if p["client"] is not None else (
        inputs.client if p["cluster"] is None else None)
    result = personalise(
        inputs.updates, client=client, cluster=p["cluster"],
        base=inputs.base() if p["use_base"] else None, k=p["k"], k_min=p["k_min"],
        k_max=p["k_max"], normalize=p["normalize"], projection_dim=p["projection_dim"],
        weighting=p["weighting"], return_model=p["return_model"], seed=p["seed"],
        prepared=inputs.prepared)
    result["round"] = inputs.round
    return result


SPEC = WorkloadSpec.over_round(
    NAME,
    "per-cluster FedAvg models (clustered FL) for a client or a cluster",
    PARAMS, _execute, returns_tensors=True,
)


def run(inputs: WorkloadInputs, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``params`` and build the personalised model; tensors under ``"tensors"``."""
    return SPEC.run(inputs, params)
