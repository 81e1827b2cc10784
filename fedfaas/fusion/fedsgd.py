"""FedSGD: the parties send gradients; the server takes one SGD step with their average.

McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017 (FedSGD, the baseline of FedAvg): with
``g = sum_i n_i g_i / sum_i n_i`` the new model is ``x_{t+1} = x_t - eta * g``.

An update carries one tensor per model tensor.  Float tensors are gradients;
integer/bool tensors (BatchNorm counters) are the party's buffer values and,
as in FedAvg, the new model takes their rounded weighted mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedfaas.fusion.algorithm import FusionResult, LinearAlgorithm, ServerState, Tensors
from fedfaas.fusion.checks import ModelSpec, accumulator_dtype, cast_back, check_param, is_float
from fedfaas.fusion.partial import PartialAggregate


def apply_gradient(global_model: Tensors, mean_gradient: dict[str, np.ndarray],
                   server_lr: float, spec: ModelSpec) -> dict[str, np.ndarray]:
    """``x - server_lr * g`` per float tensor, in the model's dtypes.

    ``mean_gradient`` holds accumulator-dtype arrays (float32/float64) and is
    overwritten.
    """
    out: dict[str, np.ndarray] = {}
    for t in spec:
        g = mean_gradient[t.name]
        if not is_float(t.dtype):
            out[t.name] = cast_back(g, t.dtype)
            continue
        acc = accumulator_dtype(t.dtype)
        np.multiply(g, acc.type(-server_lr), out=g)
        np.add(g, np.asarray(global_model[t.name]).astype(acc, copy=False), out=g)
        out[t.name] = g if t.dtype == acc else cast_back(g, t.dtype)
    return out


class FedSGD(LinearAlgorithm):
    """Average the parties' gradients and apply them with a server learning rate."""

    name = "fedsgd"
    needs_global_model = True

    def __init__(self, *, server_lr: float = 0.1) -> None:
        self.server_lr = check_param("server_lr", server_lr, lo=0.0, lo_open=True)

    def params(self) -> dict[str, Any]:
        """``{"server_lr": eta}``."""
        return {"server_lr": self.server_lr}

    def finalize(self, partial: PartialAggregate, *, global_model: Tensors | None = None,
                 state: ServerState | None = None, consume: bool = False) -> FusionResult:
        """One SGD step on ``global_model`` with the mean gradient in ``partial``."""
        spec = self._spec(partial)
        model = self._require_global(global_model, spec)
        parties = list(partial.parties)
        grad = partial.mean(consume=consume)
        return FusionResult(apply_gradient(model, grad, self.server_lr, spec), parties)
