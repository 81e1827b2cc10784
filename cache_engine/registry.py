"""Which caching policy serves which non-training workload (FLStore paper, Table 1).

The mapping follows Table 1 and section 4.4.  Where the paper names a workload
under two policies, the choice is:

- ``scheduling`` -> P2: Table 1 lists Scheduling (Chai et al., 2020) under P2
  and section 4.4 says scheduling runs every round on all of its updates;
  scheduling from tracked client *resources* is ``resource-tracking`` -> P4.
- ``debugging`` -> P2: section 4.4 lists debugging (Gill et al., 2023) under P2
  and section 5.4 says it "mandates the P2 caching policy"; following one
  client's history (Table 1's P3 row) is ``provenance``/``lineage`` -> P3.
- ``clustering`` -> P2 (clustering client updates, Ghosh et al., 2020);
  clustering by client priorities or performance metadata is ``priority-clustering`` -> P4.
- ``contribution`` -> P2 (contribution calculation on updates, Sun et al., 2023);
  ``incentives``, ``payouts`` and ``reputation`` from tracked metadata -> P4.

A deployment or a job can override any entry (see :func:`policy_for`).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from cache_engine.baselines import FIFOPolicy, LFUPolicy, LRUPolicy, RandomPolicy, StaticPolicy
from cache_engine.keys import check_id
from cache_engine.policies import (
    CachingPolicy,
    P1SingleClientOrModel,
    P2AllUpdatesInRound,
    P3ClientAcrossRounds,
    P4MetadataHyperparameters,
)
from fedfaas.errors import BadRequest

FLSTORE_POLICIES = ("P1", "P2", "P3", "P4")
BASELINE_POLICIES = ("lru", "lfu", "fifo", "static", "random")

POLICY_CLASSES: Mapping[str, type[CachingPolicy]] = MappingProxyType({
    "P1": P1SingleClientOrModel,
    "P2": P2AllUpdatesInRound,
    "P3": P3ClientAcrossRounds,
    "P4": P4MetadataHyperparameters,
    "lru": LRUPolicy,
    "lfu": LFUPolicy,
    "fifo": FIFOPolicy,
    "static": StaticPolicy,
    "random": RandomPolicy,
})

POLICY_FOR_WORKLOAD: Mapping[str, str] = MappingProxyType({
    # P1: individual client updates or the aggregated model.
    "inference": "P1",
    "evaluation": "P1",
    "fairness": "P1",
    "fine-tuning": "P1",
    # P2: all client updates of a round.
    "malicious-filter": "P2",
    "cosine-similarity": "P2",
    "clustering": "P2",
    "scheduling": "P2",
    "contribution": "P2",
    "personalisation": "P2",
    "debugging": "P2",
    # P3: one client's updates across rounds.
    "provenance": "P3",
    "lineage": "P3",
    "reproducibility": "P3",
    "fault-tolerance": "P3",
    "checkpointing": "P3",
    # P4: metadata and hyperparameters of the last k rounds.
    "hyperparameters": "P4",
    "reputation": "P4",
    "incentives": "P4",
    "payouts": "P4",
    "resource-tracking": "P4",
    "priority-clustering": "P4",
    "dropout-tracking": "P4",
    "data-shift": "P4",
    "compression-tuning": "P4",
})


def check_policy_name(name: object) -> str:
    """Return ``name`` if it names a known policy, else raise :class:`BadRequest`."""
    if not isinstance(name, str) or name not in POLICY_CLASSES:
        raise BadRequest(f"unknown caching policy {name!r}; known: {sorted(POLICY_CLASSES)}",
                         code="unknown_policy")
    return name


def make_policy(name: str, **params: Any) -> CachingPolicy:
    """Build policy ``name`` with constructor ``params`` (e.g. ``make_policy("P4", k=5)``)."""
    cls = POLICY_CLASSES[check_policy_name(name)]
    try:
        return cls(**params)
    except TypeError as exc:
        raise BadRequest(f"bad parameters for policy {name}: {exc}", code="bad_policy") from exc


def make_policies(params: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, CachingPolicy]:
    """One instance of every known policy, with per-policy constructor ``params``."""
    params = params or {}
    for name in params:
        check_policy_name(name)
    return {name: make_policy(name, **params.get(name, {})) for name in POLICY_CLASSES}


def policy_for(workload: str, *overrides: Mapping[str, str] | None) -> str:
    """Policy name for ``workload``: the first override that names it, else Table 1.

    Raises
    ------
    BadRequest
        If the workload id is malformed, unknown to Table 1 and every override,
        or mapped to an unknown policy.
    """
    check_id(workload, "workload")
    for mapping in overrides:
        if mapping and workload in mapping:
            return check_policy_name(mapping[workload])
    if workload not in POLICY_FOR_WORKLOAD:
        raise BadRequest(
            f"unknown workload {workload!r}: map it to a policy with an override; "
            f"known workloads: {sorted(POLICY_FOR_WORKLOAD)}",
            code="unknown_workload",
        )
    return POLICY_FOR_WORKLOAD[workload]


def static_mapping(policy: str) -> dict[str, str]:
    """Every known workload mapped to one ``policy`` (FLStore-Static of appendix C with "P1")."""
    check_policy_name(policy)
    return dict.fromkeys(POLICY_FOR_WORKLOAD, policy)
