"""FedYogi: Yogi on the server over the FedAvg pseudo-gradient.

Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2 with
``v_t = v_{t-1} - (1 - beta2) * delta_t**2 * sign(v_{t-1} - delta_t**2)``
(the Yogi rule of Zaheer et al., NeurIPS 2018); otherwise as FedAdam.
"""

from __future__ import annotations

import numpy as np

from fedfaas.fusion.fedadam import FedAdam, adaptive_update, first_moment


def yogi_second_moment(v: np.ndarray, delta_sq: np.ndarray, beta2: float) -> None:
    """``v <- v - (1 - beta2) * delta**2 * sign(v - delta**2)`` in place."""
    sign = np.sign(v - delta_sq)
    np.multiply(delta_sq, sign, out=delta_sq)
    np.multiply(delta_sq, v.dtype.type(1.0 - beta2), out=delta_sq)
    np.subtract(v, delta_sq, out=v)


def fedyogi_step(x: np.ndarray, delta: np.ndarray, m: np.ndarray, v: np.ndarray, *,
                 server_lr: float, beta1: float, beta2: float, tau: float) -> None:
    """One FedYogi step, in place on ``x``, ``m``, ``v``; ``delta`` is clobbered."""
    sq = np.multiply(delta, delta)
    first_moment(m, delta, beta1)
    yogi_second_moment(v, sq, beta2)
    adaptive_update(x, m, v, delta, server_lr=server_lr, tau=tau)


class FedYogi(FedAdam):
    """Adaptive server optimiser (Yogi) on the FedAvg pseudo-gradient."""

    name = "fedyogi"

    def step(self, x: np.ndarray, delta: np.ndarray, slots: dict[str, np.ndarray],
             step: int) -> None:
        """See :func:`fedyogi_step`."""
        fedyogi_step(x, delta, slots["m"], slots["v"], server_lr=self.server_lr,
                     beta1=self.beta1, beta2=self.beta2, tau=self.tau)
