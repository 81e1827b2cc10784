"""Client selection for the next round (FLStore Table 1: P2 scheduling, P4 resource tracking).

Performance score of client ``c`` over the round records of the last
``window`` rounds (Chai et al. 2020; Lai et al. 2021b)::

    speed_c        = min(1, T_ref / median train_time_s of c)   (0.5 if never timed)
    availability_c = (times available + 1) / (times known + 2)
    on_time_c      = (rounds on time + 1) / (rounds with on_time known + 2)
    score_c        = (w_speed speed + w_avail availability + w_on_time on_time) / sum(w)

``T_ref`` is ``deadline_s`` when given, else the median of all clients'
median training times.  The Laplace-smoothed rates give a client without
history the neutral 0.5.  Mode ``performance`` takes the top scores (ties in
a seeded random order); ``explore`` reserves a share of the slots for a
seeded random draw from the rest, as Oort does.  Mode ``clusters`` selects
diversely: clusters (given, or k-means over the round's updates) are visited
round-robin, best cluster first, each turn taking its best remaining member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fedfaas.errors import BadRequest
from fedfaas.workloads.base import WorkloadInputs, WorkloadSpec, round_records
from fedfaas.workloads.clustering import cluster_updates
from fedfaas.workloads.params import SEED, Param

NAME = "scheduling"
PARAMS = (
    Param("num_clients", "int", 10, "clients to select", minimum=1, maximum=100_000),
    Param("mode", "str", "performance", "performance (top scores) or clusters (diverse)",
          choices=("performance", "clusters")),
    Param("window", "int", 10, "rounds of metadata to score (P4 keeps the last 10)", minimum=1),
    Param("candidates", "str_list", None, "clients that may be selected (default: all known)"),
    Param("clusters", "map", None, "client -> cluster id; default: cluster the round's updates"),
    Param("deadline_s", "float", None, "reference training time T_ref in seconds",
          minimum=0.0, exclusive_minimum=True),
    Param("w_speed", "float", 0.4, "weight of speed", minimum=0.0),
    Param("w_availability", "float", 0.3, "weight of availability", minimum=0.0),
    Param("w_on_time", "float", 0.3, "weight of the on-time rate", minimum=0.0),
    Param("explore", "float", 0.0, "share of slots drawn at random from the rest",
          minimum=0.0, maximum=1.0),
    SEED,
)


def performance_scores(records: Sequence[Mapping[str, Any]], candidates: Sequence[str], *,
                       deadline_s: float | None = None,
                       weights: tuple[float, float, float] = (0.4, 0.3, 0.3)
                       ) -> dict[str, dict[str, float | None]]:
    """Score each candidate from round records (see the module docstring for the formula)."""
    if sum(weights) <= 0:
        raise BadRequest(f"{NAME}: the score weights must not all be 0")
    times: dict[str, list[float]] = {c: [] for c in candidates}
    avail = {c: [0, 0] for c in candidates}
    on_time = {c: [0, 0] for c in candidates}
    for rec in records:
        for client, info in rec.get("clients", {}).items():
            if client not in times or not isinstance(info, Mapping):
                continue
            t = info.get("train_time_s")
            if isinstance(t, int | float) and not isinstance(t, bool) and t > 0:
                times[client].append(float(t))
            _count(avail[client], info.get("available"))
            _count(on_time[client], info.get("on_time"))
    medians = {c: float(np.median(ts)) for c, ts in times.items() if ts}
    t_ref = deadline_s if deadline_s is not None else (
        float(np.median(list(medians.values()))) if medians else None)
    total = sum(weights)
    out: dict[str, dict[str, float | None]] = {}
    for c in candidates:
        speed = min(1.0, t_ref / medians[c]) if c in medians and t_ref else 0.5
        a = (avail[c][0] + 1) / (avail[c][1] + 2)
        o = (on_time[c][0] + 1) / (on_time[c][1] + 2)
        score = (weights[0] * speed + weights[1] * a + weights[2] * o) / total
        out[c] = {"score": score, "speed": speed, "availability": a, "on_time_rate": o,
                  "train_time_s": medians.get(c)}
    return out


def _count(counter: list[int], flag: Any) -> None:
    if isinstance(flag, bool):
        counter[0] += int(flag)
        counter[1] += 1


def _ranked(scores: Mapping[str, float], clients: Sequence[str], rng: np.random.Generator
            ) -> list[str]:
    """Clients by score, descending; ties in a seeded random order."""
    tie = {c: float(x) for c, x in zip(clients, rng.random(len(clients)), strict=True)}
    return sorted(clients, key=lambda c: (-scores[c], tie[c]))


def select_by_performance(scores: Mapping[str, float], num_clients: int, *, explore: float = 0.0,
                          seed: int = 0) -> tuple[list[str], list[str]]:
    """Top ``num_clients`` by score, a share ``explore`` of them drawn at random from the rest.

    Returns ``(selected, explored)``.
    """
    rng = np.random.default_rng(seed)
    ranked = _ranked(scores, sorted(scores), rng)
    take = min(num_clients, len(ranked))
    n_explore = round(explore * take)
    exploit = ranked[:take - n_explore]
    rest = ranked[take - n_explore:]
    explored = [rest[i] for i in sorted(rng.choice(len(rest), n_explore, replace=False))] \
        if n_explore else []
    return exploit + explored, explored


def select_by_clusters(scores: Mapping[str, float], clusters: Mapping[str, Any],
                       num_clients: int, *, seed: int = 0) -> list[str]:
    """Round-robin over clusters (best cluster first), best remaining member per turn."""
    rng = np.random.default_rng(seed)
    ranked = _ranked(scores, sorted(clusters), rng)
    groups: dict[str, list[str]] = {}
    for c in ranked:
        groups.setdefault(str(clusters[c]), []).append(c)
    order = list(groups.values())  # groups were created in order of their best member
    selected: list[str] = []
    depth = 0
    while len(selected) < num_clients and any(depth < len(g) for g in order):
        for g in order:
            if depth < len(g) and len(selected) < num_clients:
                selected.append(g[depth])
        depth += 1
    return selected


def schedule(inputs: WorkloadInputs, p: Mapping[str, Any]) -> dict[str, Any]:
    """Select the next round's clients from cached metadata (and updates in cluster mode)."""
    records = round_records(inputs.metadata, NAME)[-p["window"]:] if inputs.metadata else []
    clusters: dict[str, Any] | None = None
    if p["mode"] == "clusters":
        if p["clusters"] is not None:
            clusters = dict(p["clusters"])
            if not all(isinstance(v, str | int) and not isinstance(v, bool)
                       for v in clusters.values()):
                raise BadRequest(f"{NAME}: 'clusters' must map clients to int or string ids")
        else:
            fit = cluster_updates(inputs.updates, base=inputs.base(), seed=p["seed"],
                                  k_max=max(2, min(8, len(inputs.updates) - 1)),
                                  prepared=inputs.prepared)
            clusters = dict(fit["assignments"])
    if p["candidates"] is not None:
        candidates = sorted(set(p["candidates"]))
    elif clusters is not None:
        candidates = sorted(clusters)
    else:
        candidates = sorted({c for rec in records for c in rec.get("clients", {})})
    if not candidates:
        raise BadRequest(f"{NAME}: no candidate clients (none in metadata or 'candidates')")
    weights = (p["w_speed"], p["w_availability"], p["w_on_time"])
    scores = performance_scores(records, candidates, deadline_s=p["deadline_s"], weights=weights)
    flat = {c: float(s["score"] or 0.0) for c, s in scores.items()}
    explored: list[str] = []
    if clusters is not None:
        missing = [c for c in candidates if c not in clusters]
        if missing:
            raise BadRequest(f"{NAME}: candidate(s) {missing[:5]} have no cluster")
        selected = select_by_clusters(flat, {c: clusters[c] for c in candidates},
                                      p["num_clients"], seed=p["seed"])
    else:
        selected, explored = select_by_performance(flat, p["num_clients"], explore=p["explore"],
                                                   seed=p["seed"])
    return {
        "workload": NAME,
        "mode": p["mode"],
        "selected": selected,
        "explored": explored,
        "scores": scores,
        "clusters": {c: clusters[c] for c in candidates} if clusters is not None else None,
        "rounds_scored": [int(r["round"]) for r in records],
        "round": inputs.round,
    }


def _needs(p: Mapping[str, Any]) -> frozenset[str]:
    if p["mode"] == "performance":
        return frozenset({"metadata"})
    return frozenset() if p["clusters"] is not None else frozenset({"round_updates"})


SPEC = WorkloadSpec(
    name=NAME,
    policy="P2",
    summary="select next-round clients by performance or diversely across clusters",
    params=PARAMS,
    run_fn=schedule,
    needs=frozenset({"metadata"}),
    optional=frozenset({"metadata", "round_updates", "global_model"}),
    needs_for=_needs,
)


def run(inputs: WorkloadInputs, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``params`` and run :func:`schedule`."""
    return SPEC.run(inputs, params)
