"""FL debugging: faulty-client localisation and round diffs (FLStore Table 1; Gill et al. 2023).

``mode="localise"`` is FedDebug's differential testing.  Seeded random inputs
(no test data, no labels) are fed to every client's model of the round; the
neuron activations (ReLU of every Linear and Conv2d output) above
``activation_threshold`` form a binary profile per client and input.  For each
input, the client whose removal leaves the largest set of neurons active in
*all* remaining clients is the one that deviates from the consensus: it gets
that input's vote (tied clients share it).  With ``num_faulty > 1`` the step
repeats on the remaining clients.  The named clients are those with the most
votes; confidence is their share of the votes.  FedDebug always names someone,
so a graded signal comes along: each profile's mean Hamming distance to the
majority profile of the other clients, and the named client's distance over
the median of the others' (``deviation_ratio``, near 1 when no one stands out).

The paper places debugging under P3 in Table 1 but under P2 in §4.4 and §5.4;
localisation needs all clients of one round, so the policy here is P2.

``mode="diff"`` compares the global models of two rounds: per-tensor change
norms, relative changes and the most changed layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads.base import ClientUpdate, WorkloadInputs, WorkloadSpec
from fedfaas.workloads.modelio import input_shape, job_model, load_weights
from fedfaas.workloads.params import SEED, Param
from fedfaas.workloads.prepared import Prepared
from fedfaas.workloads.updates import check_round_updates, is_float, reject_nonfinite

NAME = "debugging"
#: Random inputs evaluated together; bounds activation memory for large models.
INPUT_BATCH = 8
PARAMS = (
    Param("mode", "str", "localise", "localise (FedDebug) or diff (two rounds' global models)",
          choices=("localise", "diff")),
    Param("num_inputs", "int", 16, "random inputs to generate", minimum=1, maximum=4096),
    Param("activation_threshold", "float", 0.003, "a neuron is active above this", minimum=0.0),
    Param("num_faulty", "int", 1, "faulty clients to localise per input", minimum=1),
    Param("input_low", "float", 0.0, "random inputs are uniform in [input_low, input_high]"),
    Param("input_high", "float", 1.0, "upper bound of the random inputs"),
    Param("round_a", "int", None, "diff: earlier round (default: round - 1)", minimum=0),
    Param("round_b", "int", None, "diff: later round (default: round)", minimum=0),
    Param("top_k", "int", 5, "diff: most changed tensors to list", minimum=1),
    SEED,
)


def _layer_outputs(model: nn.Module, x: torch.Tensor,
                   keep: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    """``keep(output)`` of every leaf Linear/Conv2d layer, in forward order, for one pass."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(keep(out)))
             for m in layers]
    try:
        with torch.inference_mode():
            model.eval()
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return outputs


def neuron_activations(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """``(inputs, neurons)`` ReLU'd outputs of every leaf Linear/Conv2d layer, concatenated."""
    outputs = _layer_outputs(model, x, lambda out: torch.relu(out).flatten(1))
    return torch.cat(outputs, dim=1).numpy()


def neuron_profiles(model: nn.Module, x: torch.Tensor, threshold: float) -> np.ndarray:
    """``(inputs, neurons)`` booleans: ``neuron_activations(model, x) > threshold``.

    For ``threshold >= 0``, ``relu(o) > threshold`` is ``o > threshold``, so each
    layer's output is compared as it is produced and no float copy is kept.
    """
    outputs = _layer_outputs(model, x, lambda out: (out > threshold).flatten(1))
    return torch.cat(outputs, dim=1).numpy()


def localise(profiles: np.ndarray, num_faulty: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Votes per client from boolean profiles ``(clients, inputs, neurons)``.

    Returns ``(votes, deviation)``: fractional votes summed over inputs and
    each client's mean Hamming distance to the majority profile of the others.
    """
    n, m, _ = profiles.shape
    if num_faulty >= n - 1:
        raise BadRequest(f"{NAME}: num_faulty must leave at least 2 clients; "
                         f"got {num_faulty} of {n}")
    votes = np.zeros(n)
    for j in range(m):
        remaining = list(range(n))
        for _ in range(num_faulty):
            block = profiles[remaining, j, :]
            r = len(remaining)
            count = block.sum(axis=0, dtype=np.int32)
            # Neurons active in every remaining client except (possibly) client i:
            # those active in all r, plus those missing in exactly one client, i.
            missing_one = count == r - 1
            common = (np.count_nonzero(count == r)
                      + np.count_nonzero(~block[:, missing_one], axis=1))
            tied = set(np.flatnonzero(common == common.max()).tolist())
            for t in tied:
                votes[remaining[t]] += 1.0 / len(tied)
            remaining = [c for k, c in enumerate(remaining) if k not in tied]
            if len(remaining) < 2:
                break
    # Majority of the others: (total - p_i) * 2 > n - 1, i.e. ``on_majority``
    # where client i is active and ``off_majority`` where it is not.
    total = profiles.sum(axis=0, dtype=np.int32)
    on_minority = (total - 1) * 2 <= n - 1
    off_majority = total * 2 > n - 1
    n_off_majority = np.count_nonzero(off_majority)
    size = m * profiles.shape[2]
    deviation = np.array([
        (np.count_nonzero(profiles[i] & on_minority)
         + n_off_majority - np.count_nonzero(profiles[i] & off_majority)) / size
        if size else np.nan
        for i in range(n)])
    return votes, deviation


def localise_round(updates: Sequence[ClientUpdate], model: nn.Module, *, num_inputs: int = 16,
                   activation_threshold: float = 0.003, num_faulty: int = 1,
                   input_low: float = 0.0, input_high: float = 1.0, seed: int = 0,
                   prepared: Prepared | None = None) -> dict[str, Any]:
    """FedDebug localisation over a round's client models (see the module docstring)."""
    names = check_round_updates(NAME, updates, min_clients=3)
    reject_nonfinite(NAME, updates, names, prepared)
    if input_high <= input_low:
        raise BadRequest(f"{NAME}: input_high must exceed input_low")
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.uniform(input_low, input_high, (num_inputs, *input_shape(model)))
                         .astype(np.float32))
    n = len(updates)
    votes, deviation = np.zeros(n), np.zeros(n)
    neurons = 0
    # Batches of inputs bound the memory: a ResNet has ~10^6 neurons per input.
    for start in range(0, num_inputs, INPUT_BATCH):
        batch = x[start:start + INPUT_BATCH]
        profiles = []
        for u in updates:
            load_weights(model, u.tensors, NAME, f"client {u.client!r}")
            profiles.append(neuron_profiles(model, batch, activation_threshold))
        v, dev = localise(np.stack(profiles), num_faulty)
        votes += v
        deviation += dev * len(batch) / num_inputs
        neurons = int(profiles[0].shape[1])
    clients = [u.client for u in updates]
    order = np.lexsort((deviation * -1, votes * -1))
    faulty = [clients[i] for i in order[:num_faulty]]
    rest = np.median(deviation[order[num_faulty:]])
    return {
        "workload": NAME,
        "mode": "localise",
        "clients": clients,
        "faulty": faulty,
        "confidence": float(sum(votes[clients.index(c)] for c in faulty) /
                            (num_inputs * num_faulty)),
        "votes": dict(zip(clients, map(float, votes), strict=True)),
        "deviation": dict(zip(clients, map(float, deviation), strict=True)),
        "deviation_ratio": float(deviation[order[0]] / rest) if rest > 0 else None,
        "num_inputs": num_inputs,
        "neurons": neurons,
    }


def _change_rank(row: Mapping[str, Any]) -> float:
    """Sort key: largest relative change first; a tensor that left zero ranks first."""
    rel = row["relative_change"]
    if rel is None:
        return -np.inf if row["change_norm"] > 0 else 0.0
    return -float(rel)


def diff_models(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], top_k: int = 5
                ) -> dict[str, Any]:
    """What changed from model ``a`` to model ``b``, tensor by tensor."""
    if set(a) != set(b):
        raise BadRequest(f"{NAME}: the two global models have different tensors "
                         f"({sorted(set(a) ^ set(b))[:5]})")
    layers = []
    total_sq = base_sq = 0.0
    for name in a:
        if tuple(a[name].shape) != tuple(b[name].shape):
            raise BadRequest(f"{NAME}: tensor {name!r} changed shape between the rounds")
        if not is_float(a[name].dtype):
            continue
        va = np.asarray(a[name], dtype=np.float64).reshape(-1)
        vb = np.asarray(b[name], dtype=np.float64).reshape(-1)
        change = float(np.linalg.norm(vb - va))
        norm_a = float(np.linalg.norm(va))
        total_sq += change ** 2
        base_sq += norm_a ** 2
        layers.append({"tensor": name, "change_norm": change, "norm_before": norm_a,
                       "norm_after": float(np.linalg.norm(vb)),
                       "relative_change": change / norm_a if norm_a > 0 else None,
                       "max_abs_change": float(np.abs(vb - va).max()) if va.size else 0.0})
    ranked = sorted(layers, key=_change_rank)
    return {
        "workload": NAME,
        "mode": "diff",
        "relative_change": float(np.sqrt(total_sq / base_sq)) if base_sq > 0 else None,
        "change_norm": float(np.sqrt(total_sq)),
        "top_changed": [r["tensor"] for r in ranked[:top_k]],
        "layers": layers,
    }


def _execute(inputs: WorkloadInputs, p: dict[str, Any]) -> dict[str, Any]:
    if p["mode"] == "localise":
        result = localise_round(
            inputs.updates, job_model(inputs.job, NAME), num_inputs=p["num_inputs"],
            activation_threshold=p["activation_threshold"], num_faulty=p["num_faulty"],
            input_low=p["input_low"], input_high=p["input_high"], seed=p["seed"],
            prepared=inputs.prepared)
        result["round"] = inputs.round
        return result
    rb = p["round_b"] if p["round_b"] is not None else inputs.round
    if rb is None:
        rb = max(inputs.global_models, default=0)
    ra = p["round_a"] if p["round_a"] is not None else rb - 1
    for r in (ra, rb):
        if r not in inputs.global_models:
            raise NotFound(f"{NAME}: no global model for round {r} is available")
    result = diff_models(inputs.global_models[ra], inputs.global_models[rb], p["top_k"])
    result.update(round_a=ra, round_b=rb)
    return result


def _needs(p: Mapping[str, Any]) -> frozenset[str]:
    return frozenset({"round_updates"} if p["mode"] == "localise" else {"global_model"})


SPEC = WorkloadSpec.over_round(
    NAME,
    "FedDebug faulty-client localisation; diff of two rounds' global models",
    PARAMS, _execute, needs_for=_needs,
)


def run(inputs: WorkloadInputs, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``params`` and localise the faulty client or diff two global models."""
    return SPEC.run(inputs, params)
