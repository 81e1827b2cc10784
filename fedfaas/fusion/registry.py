"""Fusion algorithms by name, as a job spec names them (JIT paper, Section 5.1 job specs)."""

from __future__ import annotations

import inspect
from typing import Any

from fedfaas.errors import BadRequest
from fedfaas.fusion.algorithm import Algorithm
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
from fedfaas.fusion.trimmed_mean import TrimmedMean

ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls
    for cls in (FedAvg, FedProx, FedSGD, FedAvgM, FedAdam, FedYogi, FedAdagrad, Median,
                TrimmedMean, Krum, MultiKrum, Bulyan)
}


def algorithm_params(name: str) -> dict[str, Any]:
    """The parameters algorithm ``name`` accepts, with their defaults."""
    cls = _lookup(name)
    sig = inspect.signature(cls.__init__)
    return {p.name: p.default for p in sig.parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _lookup(name: str) -> type[Algorithm]:
    cls = ALGORITHMS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise BadRequest(f"unknown fusion algorithm {name!r}; choose one of "
                         f"{', '.join(sorted(ALGORITHMS))}")
    return cls


def get_algorithm(name: str, /, **params: Any) -> Algorithm:
    """Build algorithm ``name`` with validated ``params``; raises :class:`BadRequest` if invalid."""
    allowed = algorithm_params(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise BadRequest(f"algorithm {name!r} has no parameter {unknown[0]!r} "
                         f"(accepted: {accepted})")
    return ALGORITHMS[name](**params)
