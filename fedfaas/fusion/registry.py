"""Fusion strategies by name, as a job spec names them (JIT paper, Section 5.1 job specs)."""

from __future__ import annotations

import inspect
from typing import Any

from fedfaas.errors import BadRequest
from fedfaas.fusion.bulyan import Bulyan
from fedfaas.fusion.fedadagrad import FedAdagrad
from fedfaas.fusion.fedadam import FedAdam
from fedfaas.fusion.fedavg import FedAvg
from fedfaas.fusion.fedavgm import FedAvgM
from fedfaas.fusion.fedprox import FedProx
from fedfaas.fusion.fedsgd import FedSGD
from fedfaas.fusion.fedyogi import FedYogi
from fedfaas.fusion.krum import Krum, MultiKrum
from fedfaas.fusion.median import Median
from fedfaas.fusion.strategy import Strategy
from fedfaas.fusion.trimmed_mean import TrimmedMean

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (FedAvg, FedProx, FedSGD, FedAvgM, FedAdam, FedYogi, FedAdagrad, Median,
                TrimmedMean, Krum, MultiKrum, Bulyan)
}


def strategy_params(name: str) -> dict[str, Any]:
    """The parameters strategy ``name`` accepts, with their defaults."""
    cls = _lookup(name)
    sig = inspect.signature(cls.__init__)
    return {p.name: p.default for p in sig.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _lookup(name: str) -> type[Strategy]:
    cls = STRATEGIES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise BadRequest(f"unknown fusion strategy {name!r}; choose one of "
                         f"{', '.join(sorted(STRATEGIES))}")
    return cls


def get_strategy(name: str, /, **params: Any) -> Strategy:
    """Build strategy ``name`` with validated ``params``; raises :class:`BadRequest` if invalid."""
    allowed = strategy_params(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise BadRequest(f"strategy {name!r} has no parameter {unknown[0]!r} "
                         f"(accepted: {accepted})")
    return STRATEGIES[name](**params)
