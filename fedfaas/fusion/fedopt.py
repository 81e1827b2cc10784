"""Server-side optimisers on the FedAvg pseudo-gradient (FedOpt family).

Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2: the
server treats ``delta_t = avg_i(x_i) - x_t`` (the weighted FedAvg of this
round's models minus the current global model) as a gradient and feeds it to
an optimiser whose state (momentum ``m``, second moment ``v``) lives between
rounds in a :class:`~fedfaas.fusion.algorithm.ServerState`.  Subclasses supply
only the per-tensor update rule, a module-level function in their own module.

Only float tensors are optimised; integer/bool buffers take their rounded
FedAvg value, and the state holds float32 (float64 for float64 tensors) slots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from fedfaas.errors import FusionError
from fedfaas.fusion.algorithm import FusionResult, LinearAlgorithm, ServerState, Tensors
from fedfaas.fusion.checks import (
    ModelSpec,
    TensorInfo,
    accumulator_dtype,
    cast_back,
    check_param,
    is_float,
)
from fedfaas.fusion.partial import PartialAggregate

#: ``step(x, delta, slots, step_index)`` updates ``x`` and the slot arrays in place.
StepFn = Callable[[np.ndarray, np.ndarray, dict[str, np.ndarray], int], None]


class FedOpt(LinearAlgorithm):
    """Base of FedAvgM, FedAdam, FedYogi and FedAdagrad."""

    needs_global_model = True
    #: State slots per float tensor, e.g. ("m", "v").
    slots: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, server_lr: float) -> None:
        self.server_lr = check_param("server_lr", server_lr, lo=0.0, lo_open=True)

    def initial_slot(self, slot: str, t: TensorInfo) -> np.ndarray:
        """The value of ``slot`` before the first round (zeros unless overridden)."""
        return np.zeros(t.shape, accumulator_dtype(t.dtype))

    def step(self, x: np.ndarray, delta: np.ndarray, slots: dict[str, np.ndarray],
             step: int) -> None:
        """Apply one optimiser step to ``x`` in place."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The optimiser hyperparameters."""
        return {"server_lr": self.server_lr}

    def _state_for(self, state: ServerState | None, spec: ModelSpec) -> ServerState:
        floats = [t for t in spec if is_float(t.dtype)]
        if state is None:
            return ServerState(self.name, 0, {f"{s}:{t.name}": self.initial_slot(s, t)
                                              for t in floats for s in self.slots})
        if state.algorithm != self.name:
            raise FusionError(f"server state belongs to {state.algorithm!r}, not {self.name!r}")
        expected = {f"{s}:{t.name}": t for t in floats for s in self.slots}
        for key, t in expected.items():
            arr = state.tensors.get(key)
            if arr is None:
                raise FusionError(f"server state lacks tensor {key!r}")
            acc = accumulator_dtype(t.dtype)
            if arr.shape != t.shape or arr.dtype != acc:
                raise FusionError(f"server state tensor {key!r} is {list(arr.shape)} {arr.dtype}, "
                                  f"expected {list(t.shape)} {acc}")
        extra = [k for k in state.tensors if k not in expected]
        if extra:
            raise FusionError(f"server state has unexpected tensor {extra[0]!r}")
        tensors = {k: v if v.flags.writeable else v.copy() for k, v in state.tensors.items()}
        return ServerState(state.algorithm, state.step, tensors)

    def finalize(self, partial: PartialAggregate, *, global_model: Tensors | None = None,
                 state: ServerState | None = None, consume: bool = False) -> FusionResult:
        """One optimiser step from ``global_model`` along this round's pseudo-gradient."""
        spec = self._spec(partial)
        model = self._require_global(global_model, spec)
        current = self._state_for(state, spec)
        parties = list(partial.parties)
        mean = partial.mean(consume=consume)
        out: dict[str, np.ndarray] = {}
        for t in spec:
            if not is_float(t.dtype):
                out[t.name] = cast_back(mean[t.name], t.dtype)
                continue
            x = np.array(model[t.name], dtype=accumulator_dtype(t.dtype), order="C")
            delta = mean.pop(t.name)
            np.subtract(delta, x, out=delta)
            slots = {s: current.tensors[f"{s}:{t.name}"] for s in self.slots}
            self.step(x, delta, slots, current.step)
            out[t.name] = x if x.dtype == t.dtype else cast_back(x, t.dtype)
        new_state = ServerState(self.name, current.step + 1, current.tensors)
        return FusionResult(out, parties, new_state)
