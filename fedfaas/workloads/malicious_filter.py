"""Malicious-client filtering of one round's updates (FLStore Table 1, policy P2; Han et al. 2022b).

Three robust signals per client, computed in one streaming pass:

* cosine distance of the update to the coordinate-wise median update (the
  robust centre of Yin et al. 2018): sign-flipped and off-direction updates;
* the update's L2 norm: scaled (boosted) or vanishing updates;
* the Krum score (Blanchard et al. 2017): the sum of squared distances to the
  ``n - f - 2`` nearest other updates, from the Gram matrix.

Each signal becomes a modified z-score (median/MAD); norms and Krum scores are
scored on a log scale, as they are ratios in nature.  The MAD is floored
(0.05 in cosine distance, 0.1 in log units, i.e. ~10 %) so that a tight
honest cluster does not make ordinary spread look extreme.  A client is
flagged when a score passes ``threshold`` (cosine and Krum one-sided, the
norm both ways).
Updates holding NaN or infinity are flagged outright and left out of the
statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedfaas.errors import BadRequest
from fedfaas.workloads.base import ClientUpdate, WorkloadInputs, WorkloadSpec
from fedfaas.workloads.params import Param
from fedfaas.workloads.prepared import Prepared, memo
from fedfaas.workloads.updates import (
    check_round_updates,
    coordinate_median,
    iter_blocks,
    names_signature,
    nonfinite_clients,
    robust_z,
    sq_distances,
)

NAME = "malicious-filter"
#: Floors of the robust scale (see the module docstring).
MIN_SCALE_COSINE = 0.05
MIN_SCALE_LOG = 0.1
_TINY = 1e-300
CHECKS = ("cosine", "norm", "krum")
PARAMS = (
    Param("threshold", "float", 3.5, "modified z-score above which a signal flags a client",
          minimum=0.0, exclusive_minimum=True),
    Param("byzantine", "int", None, "Krum's assumed number f of Byzantine clients "
          "(default (n - 3) // 2)", minimum=0),
    Param("checks", "str_list", list(CHECKS), "signals that may flag a client: "
          "cosine, norm, krum"),
    Param("use_base", "bool", True, "compare deltas to the round's base model when cached"),
)


def krum_scores(sq_dist: np.ndarray, byzantine: int) -> np.ndarray:
    """Krum score of each row: sum of its ``n - f - 2`` smallest distances to the others."""
    n = sq_dist.shape[0]
    m = n - byzantine - 2
    if m < 1:
        raise BadRequest(f"{NAME}: Krum needs n > 2f + 2; got n={n}, f={byzantine}")
    d = sq_dist.astype(np.float64, copy=True)
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :m].sum(axis=1)


def filter_round(updates: Sequence[ClientUpdate], *, base: Mapping[str, np.ndarray] | None = None,
                 threshold: float = 3.5, byzantine: int | None = None,
                 checks: Sequence[str] = CHECKS, prepared: Prepared | None = None
                 ) -> dict[str, Any]:
    """Score every client of a round and return the flagged set with reasons.

    Parameters
    ----------
    updates
        The round's updates (>= 3).
    base
        Global model the round started from; when given the deltas are scored.
    threshold
        Modified z-score at which a signal flags a client.
    byzantine
        Krum's ``f``; default ``(n - 3) // 2`` over the finite updates.
    checks
        Which of ``cosine``, ``norm``, ``krum`` may flag.
    prepared
        Where a cache function keeps the round's statistics (Gram matrix and
        coordinate-wise median products) between requests; None computes them.
    """
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown or not checks:
        raise BadRequest(f"{NAME}: 'checks' must list some of {', '.join(CHECKS)}; got {unknown}")
    names = check_round_updates(NAME, updates, min_clients=3, base=base)
    bad = set(nonfinite_clients(updates, names, prepared))
    good = [i for i in range(len(updates)) if i not in bad]
    scores: dict[str, dict[str, Any]] = {
        updates[i].client: {"flagged": True, "reasons": ["non_finite"]} for i in sorted(bad)
    }
    result: dict[str, Any] = {
        "workload": NAME,
        "clients": [u.client for u in updates],
        "compared": "deltas" if base is not None else "weights",
        "threshold": threshold,
        "checks": list(checks),
    }
    if len(good) < 3:
        if byzantine is not None:
            raise BadRequest(f"{NAME}: only {len(good)} finite updates, Krum cannot run")
        result.update(scores=scores, flagged=sorted(scores), byzantine=None, krum_choice=None,
                      accepted=[updates[i].client for i in good],
                      note=f"only {len(good)} finite updates; no statistics computed")
        return result
    sub = [updates[i] for i in good]
    f = (len(sub) - 3) // 2 if byzantine is None else byzantine
    cos_dist, norms, krum = _signals(sub, names, base, f, prepared)
    z = {"cosine": robust_z(cos_dist, MIN_SCALE_COSINE),
         "norm": robust_z(np.log(np.maximum(norms, _TINY)), MIN_SCALE_LOG),
         "krum": robust_z(np.log(np.maximum(krum, _TINY)), MIN_SCALE_LOG)}
    for j, u in enumerate(sub):
        reasons: list[str] = []
        if "cosine" in checks and z["cosine"][j] > threshold:
            reasons.append("cosine")
        if "norm" in checks and abs(z["norm"][j]) > threshold:
            reasons.append("norm_high" if z["norm"][j] > 0 else "norm_low")
        if "krum" in checks and z["krum"][j] > threshold:
            reasons.append("krum")
        scores[u.client] = {
            "cosine_distance": float(cos_dist[j]), "cosine_z": float(z["cosine"][j]),
            "norm": float(norms[j]), "norm_z": float(z["norm"][j]),
            "krum_score": float(krum[j]), "krum_z": float(z["krum"][j]),
            "flagged": bool(reasons), "reasons": reasons,
        }
    flagged = [u.client for u in updates if scores[u.client]["flagged"]]
    result.update(
        scores={u.client: scores[u.client] for u in updates},
        flagged=flagged,
        accepted=[u.client for u in updates if u.client not in flagged],
        byzantine=f,
        krum_choice=sub[int(np.argmin(krum))].client,
    )
    return result


def round_statistics(updates: Sequence[ClientUpdate], names: Sequence[str],
                     base: Mapping[str, np.ndarray] | None
                     ) -> tuple[np.ndarray, np.ndarray, float]:
    """Gram matrix, inner products with the coordinate-wise median and its squared norm.

    One streaming pass over the round; what a cache function keeps per round.
    """
    n = len(updates)
    gram = np.zeros((n, n))
    dot_median = np.zeros(n)
    median_sq = 0.0
    for block in iter_blocks(updates, names, base):
        gram += block @ block.T
        med = coordinate_median(block)
        dot_median += block @ med
        median_sq += float(med @ med)
    return gram, dot_median, median_sq


def _signals(updates: Sequence[ClientUpdate], names: Sequence[str],
             base: Mapping[str, np.ndarray] | None, byzantine: int,
             prepared: Prepared | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosine distance to the coordinate-wise median, norms and Krum scores."""
    n = len(updates)
    gram, dot_median, median_sq = memo(
        prepared, ("median-gram", names_signature(names)), [*(u.tensors for u in updates), base],
        lambda: round_statistics(updates, names, base))
    norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
    denom = norms * np.sqrt(median_sq)
    cos = np.divide(dot_median, denom, out=np.zeros(n), where=denom > 0)
    return 1.0 - np.clip(cos, -1.0, 1.0), norms, krum_scores(sq_distances(gram), byzantine)


def _execute(inputs: WorkloadInputs, p: dict[str, Any]) -> dict[str, Any]:
    base = inputs.base() if p["use_base"] else None
    result = filter_round(inputs.updates, base=base, threshold=p["threshold"],
                          byzantine=p["byzantine"], checks=p["checks"], prepared=inputs.prepared)
    result["round"] = inputs.round
    return result


SPEC = WorkloadSpec.over_round(
    NAME,
    "flag outlier clients of a round (cosine to median, norm, Krum)",
    PARAMS, _execute,
)


def run(inputs: WorkloadInputs, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``params`` and run :func:`filter_round` on the round's cached updates."""
    return SPEC.run(inputs, params)
