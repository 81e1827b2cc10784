"""Clustering a round's clients by their updates (FLStore Table 1, policy P2; Ghosh et al. 2020).

k-means with k-means++ seeding (scikit-learn, seeded) over the flattened
updates (deltas to the base model when cached), optionally L2-normalised so
that direction rather than magnitude groups clients, as clustered FL does
(Sattler et al. 2020).  Models longer than ``projection_dim`` are first
CountSketched to that many columns (seeded).  Without a given ``k`` the
number of clusters maximises the mean silhouette over ``k_min..k_max``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedfaas.errors import BadRequest
from fedfaas.workloads.base import ClientUpdate, WorkloadInputs, WorkloadSpec
from fedfaas.workloads.params import SEED, Param
from fedfaas.workloads.prepared import Prepared
from fedfaas.workloads.updates import check_round_updates, reject_nonfinite, update_matrix

NAME = "clustering"
PARAMS = (
    Param("k", "int", None, "number of clusters (default: chosen by silhouette)", minimum=1),
    Param("k_min", "int", 2, "smallest k tried by silhouette", minimum=2),
    Param("k_max", "int", 8, "largest k tried by silhouette (capped at clients - 1)", minimum=2),
    Param("normalize", "bool", True, "L2-normalise each update first (cluster by direction)"),
    Param("projection_dim", "int", 4096, "CountSketch models longer than this", minimum=2,
          maximum=1 << 20),
    Param("use_base", "bool", True, "cluster deltas to the round's base model when cached"),
    SEED,
)


@dataclass(frozen=True)
class ClusterFit:
    """A k-means fit: canonical labels (first client in cluster 0), centroids and scores."""

    labels: np.ndarray
    k: int
    centroids: np.ndarray
    distances: np.ndarray
    silhouettes: dict[int, float | None]


def kmeans_fit(X: np.ndarray, k: int, seed: int, n_init: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ / Lloyd (scikit-learn); labels renumbered in order of first appearance."""
    from sklearn.cluster import KMeans

    with warnings.catch_warnings():
        # Fewer distinct points than k only warns; the silhouette step handles it.
        warnings.simplefilter("ignore")
        km = KMeans(n_clusters=k, init="k-means++", n_init=n_init, random_state=seed).fit(X)
    raw = np.asarray(km.labels_)
    order: dict[int, int] = {}
    for lab in raw:
        order.setdefault(int(lab), len(order))
    labels = np.array([order[int(lab)] for lab in raw])
    centroids = np.stack([X[labels == c].mean(axis=0) for c in range(len(order))])
    return labels, centroids


def choose_clusters(X: np.ndarray, *, k: int | None = None, k_min: int = 2, k_max: int = 8,
                    seed: int = 0) -> ClusterFit:
    """Fit k-means with the given ``k``, or the k in ``k_min..k_max`` of best silhouette.

    Ties go to the smaller k.  Raises BadRequest when k cannot be chosen.
    """
    from sklearn.metrics import silhouette_score

    n = X.shape[0]
    silhouettes: dict[int, float | None] = {}
    if k is not None:
        if k > n:
            raise BadRequest(f"{NAME}: k={k} exceeds the number of clients ({n})")
        labels, centroids = kmeans_fit(X, k, seed)
    else:
        if n < 3:
            raise BadRequest(f"{NAME}: choosing k by silhouette needs >= 3 clients, got {n}; "
                             "pass 'k'")
        hi = min(k_max, n - 1)
        if k_min > hi:
            raise BadRequest(f"{NAME}: k range {k_min}..{k_max} is empty for {n} clients")
        best: tuple[float, np.ndarray, np.ndarray] | None = None
        for kk in range(k_min, hi + 1):
            labels, centroids = kmeans_fit(X, kk, seed)
            if len(centroids) < 2 or len(centroids) >= n:
                silhouettes[kk] = None
                continue
            score = float(silhouette_score(X, labels))
            silhouettes[kk] = score
            if best is None or score > best[0] + 1e-12:
                best = (score, labels, centroids)
        if best is None:
            # Every k collapsed: the updates are identical, so they form one cluster.
            labels, centroids = np.zeros(n, dtype=int), X.mean(axis=0, keepdims=True)
        else:
            labels, centroids = best[1], best[2]
    dist = np.linalg.norm(X - centroids[labels], axis=1)
    return ClusterFit(labels, len(centroids), centroids, dist, silhouettes)


def normalize_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)


def cluster_updates(updates: Sequence[ClientUpdate], *,
                    base: Mapping[str, np.ndarray] | None = None, k: int | None = None,
                    k_min: int = 2, k_max: int = 8, normalize: bool = True,
                    projection_dim: int = 4096, seed: int = 0,
                    prepared: Prepared | None = None) -> dict[str, Any]:
    """Cluster a round's clients; returns assignments and each cluster's representative.

    The representative is the member closest to the cluster's centroid.
    ``prepared`` keeps each held update's sketch in a cache function.
    """
    names = check_round_updates(NAME, updates, min_clients=1, base=base)
    reject_nonfinite(NAME, updates, names, prepared)
    X, projected = update_matrix(updates, names, base, projection_dim, seed, prepared)
    if normalize:
        X = normalize_rows(X)
    fit = choose_clusters(X, k=k, k_min=k_min, k_max=k_max, seed=seed)
    return fit_report(updates, fit, projected=projected, normalize=normalize,
                      chosen_by="given" if k is not None else "silhouette",
                      compared="deltas" if base is not None else "weights")


def fit_report(updates: Sequence[ClientUpdate], fit: ClusterFit, **extra: Any) -> dict[str, Any]:
    """JSON view of a :class:`ClusterFit` over ``updates``."""
    clients = [u.client for u in updates]
    clusters = []
    for c in range(fit.k):
        members = np.flatnonzero(fit.labels == c)
        rep = members[int(np.argmin(fit.distances[members]))]
        clusters.append({"id": c, "members": [clients[i] for i in members],
                         "size": len(members), "representative": clients[rep]})
    return {
        "workload": NAME,
        "clients": clients,
        "k": fit.k,
        "assignments": {c: int(lab) for c, lab in zip(clients, fit.labels, strict=True)},
        "clusters": clusters,
        "distance_to_centroid": {c: float(d) for c, d in zip(clients, fit.distances,
                                                              strict=True)},
        "silhouette": {str(kk): s for kk, s in fit.silhouettes.items()},
        **extra,
    }


def _execute(inputs: WorkloadInputs, p: dict[str, Any]) -> dict[str, Any]:
    base = inputs.base() if p["use_base"] else None
    result = cluster_updates(inputs.updates, base=base, k=p["k"], k_min=p["k_min"],
                             k_max=p["k_max"], normalize=p["normalize"],
                             projection_dim=p["projection_dim"], seed=p["seed"],
                             prepared=inputs.prepared)
    result["round"] = inputs.round
    return result


SPEC = WorkloadSpec.over_round(
    NAME,
    "k-means clusters of a round's clients, k by silhouette",
    PARAMS, _execute,
)


def run(inputs: WorkloadInputs, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``params`` and run :func:`cluster_updates` on the round's cached updates."""
    return SPEC.run(inputs, params)
