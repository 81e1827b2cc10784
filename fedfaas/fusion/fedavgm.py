"""FedAvgM: FedAvg with server momentum.

Hsu, Qi and Brown, "Measuring the Effects of Non-Identical Data Distribution for
Federated Visual Classification", 2019: ``v <- beta * v + delta``,
``x <- x + eta * v`` with ``delta`` the FedAvg pseudo-gradient.  With
``momentum=0`` and ``server_lr=1`` it is FedAvg.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedfaas.fusion.checks import check_param
from fedfaas.fusion.fedopt import FedOpt


def fedavgm_step(x: np.ndarray, delta: np.ndarray, momentum_buf: np.ndarray, *,
                 server_lr: float, momentum: float) -> None:
    """One FedAvgM step, in place on ``x`` and ``momentum_buf``; ``delta`` is clobbered."""
    np.multiply(momentum_buf, x.dtype.type(momentum), out=momentum_buf)
    np.add(momentum_buf, delta, out=momentum_buf)
    np.multiply(momentum_buf, x.dtype.type(server_lr), out=delta)
    np.add(x, delta, out=x)


class FedAvgM(FedOpt):
    """FedAvg with server-side momentum."""

    name = "fedavgm"
    slots = ("momentum",)

    def __init__(self, *, server_lr: float = 1.0, momentum: float = 0.9) -> None:
        super().__init__(server_lr=server_lr)
        self.momentum = check_param("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)

    def params(self) -> dict[str, Any]:
        """``server_lr`` and ``momentum``."""
        return {**super().params(), "momentum": self.momentum}

    def step(self, x: np.ndarray, delta: np.ndarray, slots: dict[str, np.ndarray],
             step: int) -> None:
        """See :func:`fedavgm_step`."""
        fedavgm_step(x, delta, slots["momentum"], server_lr=self.server_lr,
                     momentum=self.momentum)
