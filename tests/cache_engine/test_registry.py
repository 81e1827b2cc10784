"""The Table 1 workload -> policy mapping, overrides and policy construction."""

from __future__ import annotations

import pytest

from cache_engine.policies import P4MetadataHyperparameters
from cache_engine.registry import (
    POLICY_FOR_WORKLOAD,
    make_policy,
    policy_for,
    static_mapping,
)
from fedfaas.errors import BadRequest


def test_table_1_mapping() -> None:
    # Execute
    got = {w: policy_for(w) for w in ("inference", "malicious-filter", "cosine-similarity",
                                      "clustering", "scheduling", "contribution", "debugging",
                                      "personalisation", "provenance", "reputation",
                                      "hyperparameters")}

    # Assert
    assert got == {
        "inference": "P1", "malicious-filter": "P2", "cosine-similarity": "P2",
        "clustering": "P2", "scheduling": "P2", "contribution": "P2", "debugging": "P2",
        "personalisation": "P2", "provenance": "P3", "reputation": "P4",
        "hyperparameters": "P4",
    }


def test_first_override_naming_the_workload_wins() -> None:
    # Execute / Assert
    assert policy_for("debugging", None, {"debugging": "P3"}, {"debugging": "lru"}) == "P3"
    assert policy_for("my-app", {"my-app": "P4"}) == "P4"
    assert policy_for("inference", {"other": "P2"}) == "P1"


@pytest.mark.parametrize(("workload", "overrides"), [
    ("no-such-workload", {}),
    ("bad:name", {"bad:name": "P1"}),
    ("debugging", {"debugging": "P9"}),
])
def test_unknown_workloads_and_policies_are_bad_requests(
    workload: str, overrides: dict[str, str]
) -> None:
    with pytest.raises(BadRequest):
        policy_for(workload, overrides)


def test_make_policy_passes_parameters_and_rejects_bad_ones() -> None:
    # Execute
    policy = make_policy("P4", k=5)

    # Assert
    assert isinstance(policy, P4MetadataHyperparameters) and policy.k == 5
    with pytest.raises(BadRequest):
        make_policy("P4", k=0)
    with pytest.raises(BadRequest):
        make_policy("P4", window=3)
    with pytest.raises(BadRequest):
        make_policy("P7")


def test_static_mapping_sends_every_workload_to_one_policy() -> None:
    # Execute
    mapping = static_mapping("P1")

    # Assert
    assert set(mapping) == set(POLICY_FOR_WORKLOAD) and set(mapping.values()) == {"P1"}
