"""FedProx: FedAvg on the server, a proximal term on the parties.

Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020.
The server fuses exactly like FedAvg; ``mu`` (the weight of the proximal term
``mu/2 * ||w - w_global||^2`` in each party's local objective) reaches the
parties through :meth:`FedProx.round_config`.
"""

from __future__ import annotations

from typing import Any

from fedfaas.fusion.checks import check_param
from fedfaas.fusion.fedavg import FedAvg


class FedProx(FedAvg):
    """FedAvg whose round config carries the proximal coefficient ``proximal_mu``."""

    name = "fedprox"

    def __init__(self, *, mu: float = 0.01) -> None:
        self.mu = check_param("mu", mu, lo=0.0)

    def params(self) -> dict[str, Any]:
        """``{"mu": mu}``."""
        return {"mu": self.mu}

    def round_config(self) -> dict[str, Any]:
        """``{"proximal_mu": mu}``, sent to the parties with the global model."""
        return {"proximal_mu": self.mu}
