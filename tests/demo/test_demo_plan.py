"""The demo's federation plan: roles, data shares, t_wait and quorum from one seed."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas.devstack.demo.plan import (
    ACTIVE,
    INTERMITTENT,
    MALICIOUS,
    DemoConfig,
    PartyPlan,
    arrival_window_s,
    plan_federation,
)
from fedfaas.errors import BadRequest

LABELS = np.repeat(np.arange(10), 60)  # 600 items, 10 classes


def test_plan_has_one_malicious_party_with_the_smallest_share() -> None:
    # Prepare
    config = DemoConfig(parties=10, min_examples=10, intermittent_fraction=0.3)
    # Execute
    fed = plan_federation(config, LABELS)
    # Assert
    roles = [p.role for p in fed.parties]
    assert roles.count(MALICIOUS) == 1 and roles.count(INTERMITTENT) == 3
    assert roles.count(ACTIVE) == 6
    sizes = {p.party_id: p.num_examples for p in fed.parties}
    assert sizes[fed.malicious_id] == min(sizes.values())
    covered = sorted(i for p in fed.parties for i in p.indices)
    assert covered == list(range(len(LABELS)))  # a partition of the training set


def test_t_wait_leaves_the_slowest_always_on_party_headroom() -> None:
    # Prepare
    config = DemoConfig(parties=5, min_examples=10, examples_per_s=100.0, local_epochs=2,
                        t_wait_min_s=1.0, quorum_fraction=0.5)
    # Execute
    fed = plan_federation(config, LABELS)
    # Assert
    slowest = max(p.num_examples * 2 * p.slowdown / 100.0 for p in fed.parties
                  if p.role != INTERMITTENT)
    assert fed.t_wait_s == np.ceil(1.3 * slowest + 2.0)
    assert fed.quorum == 3


def test_same_seed_same_plan_and_other_seed_other_split() -> None:
    # Prepare
    config = DemoConfig(parties=8, min_examples=10)
    # Execute
    first, again = plan_federation(config, LABELS), plan_federation(config, LABELS)
    other = plan_federation(DemoConfig(parties=8, min_examples=10, seed=1), LABELS)
    # Assert
    assert first == again
    assert [p.indices for p in first.parties] != [p.indices for p in other.parties]


def test_party_plan_survives_json_and_emulates_its_device() -> None:
    # Prepare
    plan = PartyPlan("party-01", ACTIVE, (3, 5, 7, 9), slowdown=2.0, seed=4)
    # Execute
    back = PartyPlan.from_json(plan.to_json())
    # Assert
    assert back == plan
    assert plan.train_time_s(epochs=3, examples_per_s=6.0) == 4.0  # 3 * 4 * 2 / 6
    assert arrival_window_s(10.0, 4.0) == 4.5 and arrival_window_s(3.0, 4.0) == 0.0


@pytest.mark.parametrize(("changes", "message"), [
    ({"parties": 2}, "parties must be >= 3"),
    ({"rounds": 0}, "rounds must be >= 1"),
    ({"skip_probability": 1.0}, "skip_probability"),
    ({"quorum_fraction": 0.0}, "quorum_fraction"),
])
def test_bad_configuration_is_a_bad_request(changes: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        DemoConfig(**changes)


def test_too_little_data_for_the_parties_is_refused() -> None:
    with pytest.raises(BadRequest, match="cannot give 30 parties"):
        plan_federation(DemoConfig(parties=30, min_examples=25), LABELS)
