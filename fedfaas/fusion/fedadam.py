"""FedAdam: Adam on the server over the FedAvg pseudo-gradient.

Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2::

    m_t = beta1 * m_{t-1} + (1 - beta1) * delta_t
    v_t = beta2 * v_{t-1} + (1 - beta2) * delta_t**2
    x_{t+1} = x_t + eta * m_t / (sqrt(v_t) + tau)

with ``m_{-1} = 0`` and ``v_{-1} = tau**2`` and, as in the paper, no bias
correction.  FedYogi and FedAdagrad differ only in the ``v`` rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedfaas.fusion.checks import TensorInfo, accumulator_dtype, check_param
from fedfaas.fusion.fedopt import FedOpt


def first_moment(m: np.ndarray, delta: np.ndarray, beta1: float) -> None:
    """``m <- beta1 * m + (1 - beta1) * delta`` in place."""
    np.multiply(m, m.dtype.type(beta1), out=m)
    m += m.dtype.type(1.0 - beta1) * delta


def adam_second_moment(v: np.ndarray, delta_sq: np.ndarray, beta2: float) -> None:
    """``v <- beta2 * v + (1 - beta2) * delta**2`` in place (``delta_sq`` is clobbered)."""
    np.multiply(v, v.dtype.type(beta2), out=v)
    np.multiply(delta_sq, v.dtype.type(1.0 - beta2), out=delta_sq)
    np.add(v, delta_sq, out=v)


def adaptive_update(x: np.ndarray, m: np.ndarray, v: np.ndarray, scratch: np.ndarray, *,
                    server_lr: float, tau: float) -> None:
    """``x <- x + eta * m / (sqrt(v) + tau)`` in place, using ``scratch``."""
    np.sqrt(v, out=scratch)
    np.add(scratch, x.dtype.type(tau), out=scratch)
    np.divide(m, scratch, out=scratch)
    np.multiply(scratch, x.dtype.type(server_lr), out=scratch)
    np.add(x, scratch, out=x)


def fedadam_step(x: np.ndarray, delta: np.ndarray, m: np.ndarray, v: np.ndarray, *,
                 server_lr: float, beta1: float, beta2: float, tau: float) -> None:
    """One FedAdam step, in place on ``x``, ``m``, ``v``; ``delta`` is clobbered."""
    sq = np.multiply(delta, delta)
    first_moment(m, delta, beta1)
    adam_second_moment(v, sq, beta2)
    adaptive_update(x, m, v, delta, server_lr=server_lr, tau=tau)


class FedAdam(FedOpt):
    """Adaptive server optimiser (Adam) on the FedAvg pseudo-gradient."""

    name = "fedadam"
    slots = ("m", "v")

    def __init__(self, *, server_lr: float = 1e-2, beta1: float = 0.9, beta2: float = 0.99,
                 tau: float = 1e-3) -> None:
        super().__init__(server_lr=server_lr)
        self.beta1 = check_param("beta1", beta1, lo=0.0, hi=1.0, hi_open=True)
        self.beta2 = check_param("beta2", beta2, lo=0.0, hi=1.0, hi_open=True)
        self.tau = check_param("tau", tau, lo=0.0, lo_open=True)

    def params(self) -> dict[str, Any]:
        """``server_lr``, ``beta1``, ``beta2``, ``tau``."""
        return {**super().params(), "beta1": self.beta1, "beta2": self.beta2, "tau": self.tau}

    def initial_slot(self, slot: str, t: TensorInfo) -> np.ndarray:
        """``m_{-1} = 0``, ``v_{-1} = tau**2``."""
        fill = self.tau ** 2 if slot == "v" else 0.0
        return np.full(t.shape, fill, accumulator_dtype(t.dtype))

    def step(self, x: np.ndarray, delta: np.ndarray, slots: dict[str, np.ndarray],
             step: int) -> None:
        """See :func:`fedadam_step`."""
        fedadam_step(x, delta, slots["m"], slots["v"], server_lr=self.server_lr,
                     beta1=self.beta1, beta2=self.beta2, tau=self.tau)
