"""Client contributions by Shapley value and incentives (FLStore Table 1, P2; Sun et al. 2023).

The game of one round: the utility ``v(S)`` of a subset ``S`` of clients is
the accuracy (or negative cross-entropy) on the job's validation set of the
FedAvg of ``S``'s updates, loaded into the job's model.  ``v({})`` is the
utility of the round's base model when it is cached, else that of a uniform
guess (accuracy ``1/C``, loss ``ln C``).

``method="gtg"`` is GTG-Shapley (Liu et al. 2022): Monte-Carlo permutation
sampling where permutation ``k`` starts with client ``k mod n`` (guided
sampling); within a permutation, once ``|v(N) - v(S)| < truncation`` for a
non-empty ``S`` the later marginals count 0 (within-round truncation); the
whole round is skipped if ``|v(N) - v({})| < between_round``; sampling stops
when, after a full cycle of ``n`` permutations, every value's standard error
is below ``tolerance`` times the largest value (Castro et al. 2009).
``method="exact"`` enumerates all ``2^n`` subsets (n <= 8) and is the
reference.  Utilities are cached per subset.  Leave-one-out values
``v(N) - v(N \\ {i})`` come along, and a budget is split in proportion to
the non-negative Shapley values.

A client that duplicates another's data is symmetric to it and gets the same
value; the pair shares roughly what the original alone would get.  FedAvg
utilities are averages, so the pair's sum exceeds the original's lone value a
little (the duplicate doubles the original's weight): Shapley values are not
replication-robust.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from fedfaas.errors import BadRequest
from fedfaas.workloads.base import ClientUpdate, WorkloadInputs, WorkloadSpec
from fedfaas.workloads.modelio import (
    check_batch,
    check_labels,
    forward,
    job_model,
    load_weights,
)
from fedfaas.workloads.params import SEED, Param
from fedfaas.workloads.prepared import Prepared
from fedfaas.workloads.updates import (
    check_round_updates,
    example_weights,
    fedavg,
    reject_nonfinite,
)

NAME = "contribution"
EXACT_MAX_CLIENTS = 8
PARAMS = (
    Param("method", "str", "gtg", "gtg (Monte-Carlo GTG-Shapley) or exact (n <= 8)",
          choices=("gtg", "exact")),
    Param("metric", "str", "accuracy", "utility: accuracy or neg_loss",
          choices=("accuracy", "neg_loss")),
    Param("weighting", "str", "num_examples", "FedAvg weights within a subset",
          choices=("num_examples", "uniform")),
    Param("max_permutations", "int", 200, "GTG permutation budget", minimum=1, maximum=100_000),
    Param("tolerance", "float", 0.05, "GTG convergence: standard error relative to the "
          "largest value", minimum=0.0),
    Param("truncation", "float", 0.001, "GTG within-round truncation on the utility scale",
          minimum=0.0),
    Param("between_round", "float", 0.0, "skip the round if |v(N) - v({})| is below this",
          minimum=0.0),
    Param("budget", "float", 0.0, "incentive budget split by non-negative Shapley values",
          minimum=0.0),
    Param("leave_one_out", "bool", True, "also compute leave-one-out values"),
    SEED,
)

Utility = Callable[[int], float]


class SubsetUtility:
    """``v(mask)`` for a bitmask of clients, evaluated once per subset and cached."""

    def __init__(self, updates: Sequence[ClientUpdate], weights: np.ndarray, model: nn.Module,
                 x_val: np.ndarray, y_val: np.ndarray, metric: str, empty: float) -> None:
        self.updates = updates
        self.weights = weights
        self.model = model
        self.x_val = x_val
        self.y_val = y_val
        self.metric = metric
        self.cache: dict[int, float] = {0: empty}

    def evaluate(self, tensors: Mapping[str, np.ndarray], what: str) -> float:
        """Utility of one set of model weights on the validation set."""
        load_weights(self.model, tensors, NAME, what)
        logits = forward(self.model, self.x_val)
        if self.metric == "accuracy":
            return float(np.mean(logits.argmax(axis=1) == self.y_val))
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(np.mean(logp[np.arange(len(self.y_val)), self.y_val]))

    def __call__(self, mask: int) -> float:
        if mask not in self.cache:
            idx = [i for i in range(len(self.updates)) if mask >> i & 1]
            avg = fedavg([self.updates[i] for i in idx], self.weights[idx])
            self.cache[mask] = self.evaluate(avg, f"the FedAvg of clients {idx}")
        return self.cache[mask]


def exact_shapley(n: int, v: Utility) -> np.ndarray:
    """Shapley values by enumerating every subset: sum |S|!(n-|S|-1)!/n! (v(S+i) - v(S))."""
    phi = np.zeros(n)
    coef = [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    for mask in range(1 << n):
        size = mask.bit_count()
        for i in range(n):
            if not mask >> i & 1:
                phi[i] += coef[size] * (v(mask | 1 << i) - v(mask))
    return phi


def gtg_shapley(n: int, v: Utility, *, max_permutations: int = 200, tolerance: float = 0.05,
                truncation: float = 0.001, between_round: float = 0.0, seed: int = 0
                ) -> tuple[np.ndarray, int, bool]:
    """GTG-Shapley estimate; returns ``(values, permutations used, converged)``.

    Converged means: after a whole cycle of ``n`` permutations (at least two),
    every value's standard error is below ``tolerance`` times the largest
    absolute value.
    """
    full = (1 << n) - 1
    v_empty, v_all = v(0), v(full)
    if abs(v_all - v_empty) < between_round:
        return np.zeros(n), 0, True
    rng = np.random.default_rng(seed)
    phi = np.zeros(n)
    m2 = np.zeros(n)  # Welford sums of squared deviations of the marginals
    for k in range(1, max_permutations + 1):
        first = (k - 1) % n
        rest = [i for i in rng.permutation(n) if i != first]
        mask, prev = 0, v_empty
        marginal = np.zeros(n)
        for i in (first, *rest):
            mask |= 1 << i
            # Truncate only once S is non-empty: with v(N) close to v({}) but the
            # between-round test disabled, every value would otherwise be 0.
            value = v(mask) if mask == 1 << first or abs(v_all - prev) >= truncation else prev
            marginal[i] = value - prev
            prev = value
        delta = marginal - phi
        phi += delta / k
        m2 += delta * (marginal - phi)
        if k % n == 0 and k >= 2 * n:
            stderr = np.sqrt(m2 / (k - 1) / k)
            if float(stderr.max()) <= tolerance * max(float(np.abs(phi).max()), 1e-12):
                return phi, k, True
    return phi, max_permutations, False


def leave_one_out(n: int, v: Utility) -> np.ndarray:
    """``v(N) - v(N \\ {i})`` for each client."""
    full = (1 << n) - 1
    return np.array([v(full) - v(full & ~(1 << i)) for i in range(n)])


def incentive_split(values: np.ndarray, budget: float) -> np.ndarray:
    """Budget shares proportional to the non-negative values (all zero if none is positive)."""
    pos = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
    total = pos.sum()
    return pos / total * budget if total > 0 else np.zeros_like(pos)


def contributions(updates: Sequence[ClientUpdate], model: nn.Module, x_val: np.ndarray,
                  y_val: np.ndarray, *, base: Mapping[str, np.ndarray] | None = None,
                  method: str = "gtg", metric: str = "accuracy", weighting: str = "num_examples",
                  max_permutations: int = 200, tolerance: float = 0.05, truncation: float = 0.001,
                  between_round: float = 0.0, budget: float = 0.0, with_loo: bool = True,
                  seed: int = 0, prepared: Prepared | None = None) -> dict[str, Any]:
    """Shapley values (and leave-one-out, payouts) of a round's clients on a validation set."""
    names = check_round_updates(NAME, updates, min_clients=1, base=base)
    reject_nonfinite(NAME, updates, names, prepared)
    n = len(updates)
    if method == "exact" and n > EXACT_MAX_CLIENTS:
        raise BadRequest(f"{NAME}: exact Shapley enumerates 2^n subsets and is limited to "
                         f"{EXACT_MAX_CLIENTS} clients; got {n}, use method 'gtg'")
    x = check_batch(NAME, model, x_val, "x_val")
    y = check_labels(NAME, model, y_val, len(x))
    weights, used = example_weights(updates, weighting)
    classes = int(getattr(model, "num_classes", 0)) or int(y.max()) + 1
    uniform = 1.0 / classes if metric == "accuracy" else -math.log(classes)
    util = SubsetUtility(updates, weights, model, x, y, metric, uniform)
    if base is not None:
        util.cache[0] = util.evaluate(base, "the base model")
    if method == "exact":
        phi, perms, converged = exact_shapley(n, util), 0, True
    else:
        phi, perms, converged = gtg_shapley(
            n, util, max_permutations=max_permutations, tolerance=tolerance,
            truncation=truncation, between_round=between_round, seed=seed)
    loo = leave_one_out(n, util) if with_loo else None
    clients = [u.client for u in updates]
    pay = incentive_split(phi, budget)
    pos = np.maximum(phi, 0.0)
    return {
        "workload": NAME,
        "method": method,
        "metric": metric,
        "clients": clients,
        "shapley": dict(zip(clients, map(float, phi), strict=True)),
        "leave_one_out": None if loo is None else dict(zip(clients, map(float, loo),
                                                           strict=True)),
        "utility": {"empty": util(0), "all": util((1 << n) - 1),
                    "empty_model": "base" if base is not None else "uniform"},
        "shares": dict(zip(clients, map(float, pos / pos.sum() if pos.sum() > 0 else pos),
                           strict=True)),
        "payouts": dict(zip(clients, map(float, pay), strict=True)),
        "budget": budget,
        "weighting": used,
        "evaluations": len(util.cache) - 1,
        "permutations": perms,
        "converged": converged,
    }


def _execute(inputs: WorkloadInputs, p: dict[str, Any]) -> dict[str, Any]:
    result = contributions(
        inputs.updates, job_model(inputs.job, NAME), inputs.arrays["x_val"],
        inputs.arrays["y_val"], base=inputs.base(), method=p["method"], metric=p["metric"],
        weighting=p["weighting"], max_permutations=p["max_permutations"],
        tolerance=p["tolerance"], truncation=p["truncation"], between_round=p["between_round"],
        budget=p["budget"], with_loo=p["leave_one_out"], seed=p["seed"], prepared=inputs.prepared)
    result["round"] = inputs.round
    return result


SPEC = WorkloadSpec.over_round(
    NAME,
    "GTG-Shapley (or exact) contributions, leave-one-out and incentive split",
    PARAMS, _execute, needs=frozenset({"round_updates", "validation_set"}),
)


def run(inputs: WorkloadInputs, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``params`` and run :func:`contributions` with the job's model."""
    return SPEC.run(inputs, params)
