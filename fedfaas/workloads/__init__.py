"""The ten non-training workloads FLStore serves from its cache (FLStore §4.4, Table 1, §5.1).

Each module holds one workload: pure functions over decoded client updates,
global models and round metadata, plus a :class:`WorkloadSpec` (caching
policy, data needs, parameter schema).  ``WORKLOADS`` maps a workload's name
to its spec so that the gateway, the Request Tracker and the OpenFaaS
handlers dispatch generically::

    spec = get_workload("malicious-filter")
    needs = spec.data_needs(params)          # which cached data to gather
    result = spec.run(WorkloadInputs(...), params)

Results are JSON-serialisable dicts; a workload with ``returns_tensors``
also puts numpy tensors under ``result["tensors"]`` for the handler to encode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedfaas.errors import NotFound
from fedfaas.workloads import (
    clustering,
    contribution,
    cosine_similarity,
    debugging,
    inference,
    malicious_filter,
    personalisation,
    provenance,
    reputation,
    scheduling,
)
from fedfaas.workloads.base import (
    NEEDS,
    TENSORS_KEY,
    ClientUpdate,
    Need,
    Policy,
    WorkloadInputs,
    WorkloadSpec,
)

WORKLOADS: dict[str, WorkloadSpec] = {
    m.SPEC.name: m.SPEC
    for m in (
        malicious_filter, cosine_similarity, clustering, scheduling, contribution,
        reputation, debugging, inference, personalisation, provenance,
    )
}


def get_workload(name: str) -> WorkloadSpec:
    """The spec of workload ``name``; raises :class:`NotFound` listing the known ones."""
    spec = WORKLOADS.get(name)
    if spec is None:
        raise NotFound(f"unknown workload {name!r}; known workloads: {', '.join(WORKLOADS)}")
    return spec


def run_workload(name: str, inputs: WorkloadInputs, params: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Run workload ``name`` on ``inputs`` (validates ``params``; 4xx errors on bad input)."""
    return get_workload(name).run(inputs, params)


__all__ = [
    "NEEDS",
    "TENSORS_KEY",
    "WORKLOADS",
    "ClientUpdate",
    "Need",
    "Policy",
    "WorkloadInputs",
    "WorkloadSpec",
    "get_workload",
    "run_workload",
]
