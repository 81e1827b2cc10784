"""FedAdagrad: Adagrad on the server over the FedAvg pseudo-gradient.

Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2 with
``v_t = v_{t-1} + delta_t**2``; otherwise as FedAdam (no ``beta2``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedfaas.fusion.fedadam import FedAdam, adaptive_update, first_moment


def fedadagrad_step(x: np.ndarray, delta: np.ndarray, m: np.ndarray, v: np.ndarray, *,
                    server_lr: float, beta1: float, tau: float) -> None:
    """One FedAdagrad step, in place on ``x``, ``m``, ``v``; ``delta`` is clobbered."""
    sq = np.multiply(delta, delta)
    first_moment(m, delta, beta1)
    np.add(v, sq, out=v)
    adaptive_update(x, m, v, delta, server_lr=server_lr, tau=tau)


class FedAdagrad(FedAdam):
    """Adaptive server optimiser (Adagrad) on the FedAvg pseudo-gradient."""

    name = "fedadagrad"

    def __init__(self, *, server_lr: float = 1e-1, beta1: float = 0.9,
                 tau: float = 1e-3) -> None:
        super().__init__(server_lr=server_lr, beta1=beta1, tau=tau)

    def params(self) -> dict[str, Any]:
        """``server_lr``, ``beta1``, ``tau``."""
        return {"server_lr": self.server_lr, "beta1": self.beta1, "tau": self.tau}

    def step(self, x: np.ndarray, delta: np.ndarray, slots: dict[str, np.ndarray],
             step: int) -> None:
        """See :func:`fedadagrad_step`."""
        fedadagrad_step(x, delta, slots["m"], slots["v"], server_lr=self.server_lr,
                        beta1=self.beta1, tau=self.tau)
