"""Provenance of a client's updates and tracking of hyperparameters (FLStore Table 1, P3 and P4).

``mode="client"`` (P3; Baracaldo et al. 2022) follows one client across
rounds: the norm of each of its updates and of its delta to the global model
it started from, its L2 distance and cosine similarity to every cached global
model, the drift between its consecutive updates, whether each round's
aggregation included it (``included`` in the round record) and its metadata.

``mode="hyperparameters"`` (P4; Zhou et al. 2023) lists the job's
hyperparameters and, for the last ``last_k`` rounds (the paper's default is
10), each round's effective hyperparameters (job values overridden by the
round record's), participation and timing, plus every change between rounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads.base import (
    ClientUpdate,
    WorkloadInputs,
    WorkloadSpec,
    plain_json,
    round_records,
)
from fedfaas.workloads.params import Param
from fedfaas.workloads.prepared import Prepared
from fedfaas.workloads.updates import gram_matrix, is_float

NAME = "provenance"
PARAMS = (
    Param("mode", "str", "client", "client (a client's updates across rounds) or "
          "hyperparameters (the last rounds' hyperparameters and metadata)",
          choices=("client", "hyperparameters")),
    Param("client", "str", None, "client to trace (default: the request's client)"),
    Param("last_k", "int", 10, "hyperparameters: rounds to report", minimum=1, maximum=100_000),
)


def _float_names(what: str, ref: Mapping[str, np.ndarray],
                 other: Mapping[str, np.ndarray]) -> list[str]:
    names = [k for k, v in ref.items() if is_float(v.dtype)]
    for k in names:
        if k not in other or tuple(other[k].shape) != tuple(ref[k].shape):
            raise BadRequest(f"{NAME}: {what} does not match the update's tensor {k!r}")
    return names


def trace_client(client: str, updates: Sequence[ClientUpdate],
                 global_models: Mapping[int, Mapping[str, np.ndarray]],
                 records: Sequence[Mapping[str, Any]] = (),
                 prepared: Prepared | None = None) -> dict[str, Any]:
    """Lineage of one client's updates across rounds (see the module docstring).

    Every norm, distance and cosine comes from one Gram matrix of the client's
    updates and the global models (float64, one BLAS pass over the data),
    which a cache function keeps in ``prepared`` while it holds the data.
    """
    if not updates:
        raise NotFound(f"{NAME}: no updates of client {client!r} are available")
    for u in updates:
        if u.client != client:
            raise BadRequest(f"{NAME}: got an update of {u.client!r} while tracing {client!r}")
        if u.round is None:
            raise BadRequest(f"{NAME}: an update of {client!r} does not say its round")
    rounds = [int(u.round) for u in updates if u.round is not None]
    if len(set(rounds)) != len(rounds):
        raise BadRequest(f"{NAME}: several updates of {client!r} for the same round")
    ordered = sorted(updates, key=lambda u: int(u.round or 0))
    ref = ordered[0].tensors
    names = [k for k, v in ref.items() if is_float(v.dtype)]
    if not names:
        raise BadRequest(f"{NAME}: the updates of {client!r} hold no floating-point tensors")
    for u in ordered[1:]:
        _float_names(f"the update of round {u.round}", ref, u.tensors)
    global_rounds = sorted(int(g) for g in global_models)
    for g in global_rounds:
        _float_names(f"the global model of round {g}", ref, global_models[g])
    vectors = [*ordered, *(ClientUpdate(f"global-{g}", global_models[g]) for g in global_rounds)]
    gram = gram_matrix(vectors, names, prepared=prepared)
    sq = np.diag(gram)
    k = len(ordered)
    at = {g: k + j for j, g in enumerate(global_rounds)}  # row of each global model

    def dist(i: int, j: int) -> float:
        return float(np.sqrt(max(sq[i] + sq[j] - 2.0 * gram[i, j], 0.0)))

    by_round = {int(r["round"]): r for r in records}
    rows = []
    for i, u in enumerate(ordered):
        r = int(u.round or 0)
        norm = float(np.sqrt(max(sq[i], 0.0)))
        rec = by_round.get(r, {})
        included = rec.get("included")
        info = rec.get("clients", {}).get(client) if isinstance(rec.get("clients"), Mapping) \
            else None
        distances = {str(g): dist(i, j) for g, j in at.items()}
        cos = {str(g): float(gram[i, j] / (norm * np.sqrt(sq[j])))
               if norm > 0 and sq[j] > 0 else None for g, j in at.items()}
        rows.append({
            "round": r,
            "norm": norm,
            "update_norm": dist(i, at[r - 1]) if r - 1 in at else None,
            "drift_from_previous": dist(i, i - 1) if i > 0 else None,
            "distance_to_global": distances,
            "cosine_to_global": cos,
            "closest_global_round": int(min(distances, key=lambda g: distances[g]))
            if distances else None,
            "included": (client in included) if isinstance(included, list) else None,
            "metadata": plain_json(info if isinstance(info, Mapping) else u.meta),
        })
    return {
        "workload": NAME,
        "mode": "client",
        "client": client,
        "rounds": [row["round"] for row in rows],
        "rounds_included": [row["round"] for row in rows if row["included"] is True],
        "global_rounds": sorted(global_models),
        "history": rows,
    }


def track_hyperparameters(job: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                          last_k: int = 10) -> dict[str, Any]:
    """The job's hyperparameters and their per-round values and changes over ``last_k`` rounds."""
    base_hp = job.get("hyperparameters", {})
    if not isinstance(base_hp, Mapping):
        raise BadRequest(f"{NAME}: job 'hyperparameters' must be a map")
    recent = list(records)[-last_k:]
    rows = []
    changes = []
    prev: dict[str, Any] | None = None
    for rec in recent:
        own = rec.get("hyperparameters", {})
        if not isinstance(own, Mapping):
            raise BadRequest(f"{NAME}: round {rec['round']}: 'hyperparameters' must be a map")
        effective = plain_json({**base_hp, **own})
        infos = [i for i in rec.get("clients", {}).values() if isinstance(i, Mapping)]
        times = [float(t) for i in infos if isinstance(t := i.get("train_time_s"), int | float)
                 and not isinstance(t, bool)]
        included = rec.get("included")
        rows.append({
            "round": int(rec["round"]),
            "hyperparameters": effective,
            "clients": len(infos),
            "included": len(included) if isinstance(included, list) else None,
            "mean_train_time_s": float(np.mean(times)) if times else None,
            "extra": plain_json({k: v for k, v in rec.items()
                                 if k not in ("round", "hyperparameters", "clients", "included")}),
        })
        if prev is not None:
            for key in sorted(set(prev) | set(effective)):
                if prev.get(key) != effective.get(key):
                    changes.append({"round": int(rec["round"]), "name": key,
                                    "from": prev.get(key), "to": effective.get(key)})
        prev = effective
    return {
        "workload": NAME,
        "mode": "hyperparameters",
        "job_hyperparameters": plain_json(base_hp),
        "rounds": rows,
        "changes": changes,
    }


def _execute(inputs: WorkloadInputs, p: dict[str, Any]) -> dict[str, Any]:
    records = round_records(inputs.metadata, NAME) if inputs.metadata else []
    if p["mode"] == "hyperparameters":
        return track_hyperparameters(inputs.job, records, p["last_k"])
    client = p["client"] if p["client"] is not None else inputs.client
    if client is None:
        raise BadRequest(f"{NAME}: name the client to trace ('client')")
    return trace_client(client, inputs.updates, inputs.global_models, records, inputs.prepared)


def _needs(p: Mapping[str, Any]) -> frozenset[str]:
    return frozenset({"metadata"} if p["mode"] == "hyperparameters" else {"client_across_rounds"})


SPEC = WorkloadSpec(
    name=NAME,
    policy="P3",
    summary="a client's updates across rounds; hyperparameters of the last k rounds",
    params=PARAMS,
    run_fn=_execute,
    needs=frozenset({"client_across_rounds"}),
    optional=frozenset({"global_model", "metadata"}),
    needs_for=_needs,
)


def run(inputs: WorkloadInputs, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``params`` and trace a client or the job's hyperparameters."""
    return SPEC.run(inputs, params)
