"""Inference with a round's aggregated model (FLStore Table 1, policy P1; Appendix D).

The job spec names the model architecture; the weights are the round's
global model (or, with ``source="client"``, one client's update, which P1
also caches).  The batch comes from the request (``arrays["x"]`` or the
``inputs`` parameter) and is checked against the model's input shape before
the model runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import nn

from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads.base import WorkloadInputs, WorkloadSpec
from fedfaas.workloads.modelio import MAX_ROWS, check_batch, forward, job_model, load_weights
from fedfaas.workloads.params import Param

NAME = "inference"
PARAMS = (
    Param("inputs", "list", None, "batch as nested lists (else the request's 'x' array)"),
    Param("source", "str", "global", "global (the round's aggregated model) or client",
          choices=("global", "client")),
    Param("probabilities", "bool", True, "return every class probability"),
    Param("max_rows", "int", 4096, "largest batch accepted", minimum=1, maximum=MAX_ROWS),
)


def predict(model: nn.Module, weights: Mapping[str, np.ndarray], x: Any, *,
            probabilities: bool = True, max_rows: int = 4096, what: str = "the global model"
            ) -> dict[str, Any]:
    """Labels (and class probabilities) of ``model`` with ``weights`` for batch ``x``."""
    batch = check_batch(NAME, model, x, "x", max_rows)
    load_weights(model, weights, NAME, what)
    logits = forward(model, batch)
    shifted = logits - logits.max(axis=1, keepdims=True)
    proba = np.exp(shifted)
    proba /= proba.sum(axis=1, keepdims=True)
    labels = proba.argmax(axis=1)
    return {
        "workload": NAME,
        "labels": labels.tolist(),
        "confidence": proba.max(axis=1).tolist(),
        "probabilities": proba.tolist() if probabilities else None,
        "num_inputs": len(batch),
        "num_classes": int(proba.shape[1]),
    }


def _execute(inputs: WorkloadInputs, p: dict[str, Any]) -> dict[str, Any]:
    if p["inputs"] is not None and "x" in inputs.arrays:
        raise BadRequest(f"{NAME}: give the batch either as 'inputs' or as the 'x' array, "
                         "not both")
    x = p["inputs"] if p["inputs"] is not None else inputs.arrays.get("x")
    if x is None:
        raise BadRequest(f"{NAME}: no inputs; pass 'inputs' or an 'x' array")
    if p["source"] == "client":
        if inputs.client is None:
            raise BadRequest(f"{NAME}: source 'client' needs the request to name a client")
        found = [u for u in inputs.updates if u.client == inputs.client]
        if not found:
            raise NotFound(f"{NAME}: no update of client {inputs.client!r} for round "
                           f"{inputs.round} is available")
        weights, what, rnd = found[-1].tensors, f"client {inputs.client!r}", inputs.round
    else:
        rnd = inputs.round if inputs.round is not None else max(inputs.global_models, default=None)
        if rnd is None or rnd not in inputs.global_models:
            where = "" if rnd is None else f" for round {rnd}"
            raise NotFound(f"{NAME}: no global model{where} is available")
        weights, what = inputs.global_models[rnd], f"the global model of round {rnd}"
    result = predict(job_model(inputs.job, NAME), weights, x, probabilities=p["probabilities"],
                     max_rows=p["max_rows"], what=what)
    result.update(round=rnd, source=p["source"])
    return result


def _needs(p: Mapping[str, Any]) -> frozenset[str]:
    return frozenset({"client_across_rounds"} if p["source"] == "client" else {"global_model"})


SPEC = WorkloadSpec(
    name=NAME,
    policy="P1",
    summary="class probabilities and labels of a round's aggregated model for a batch",
    params=PARAMS,
    run_fn=_execute,
    needs=frozenset({"global_model"}),
    needs_for=_needs,
)


def run(inputs: WorkloadInputs, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``params`` and predict with the cached global model."""
    return SPEC.run(inputs, params)
