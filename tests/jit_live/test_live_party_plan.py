"""Party plans of the live benchmark: the same delays for every strategy, profiles the API takes."""

from __future__ import annotations

import pytest

from bench.jit.live_party import INTERMITTENT_WINDOW, PartyPlan
from bench.jit_live import Workload
from fedfaas.errors import BadRequest
from fedfaas.spec import PartyProfile, parse


def test_delays_are_seeded_per_party_and_round() -> None:
    # Prepare
    plans = Workload(n_active=3, n_intermittent=2, rounds=4, t_wait_s=10.0,
                     t_train_s=(2.0, 6.0)).plans()
    # Execute
    first = [[p.delay_s(r) for r in range(1, 5)] for p in plans]
    again = [[p.delay_s(r) for r in range(1, 5)] for p in plans]
    # Assert: reproducible; active near their epoch time, intermittent within the window
    assert first == again
    assert [p.t_train_s for p in plans[:3]] == [2.0, 4.0, 6.0]
    for plan, delays in zip(plans, first, strict=True):
        if plan.mode == "active":
            assert all(0.85 * plan.t_train_s < d < 1.15 * plan.t_train_s for d in delays)
        else:
            assert all(0 <= d <= INTERMITTENT_WINDOW * plan.t_wait_s for d in delays)
            assert len(set(delays)) == len(delays)


def test_profiles_are_valid_party_profiles() -> None:
    # Prepare
    active = PartyPlan("a0", "active", 3.0, 10.0, seed=1)
    intermittent = PartyPlan("i0", "intermittent", 3.0, 10.0, seed=2)
    # Execute
    profiles = [parse(PartyProfile, p.profile(90), "profile") for p in (active, intermittent)]
    # Assert: only the active party reports an epoch time
    assert profiles[0].epoch_time_s == 3.0 and profiles[0].mode == "active"
    assert profiles[1].epoch_time_s is None and profiles[1].mode == "intermittent"


def test_plans_are_validated() -> None:
    with pytest.raises(BadRequest):
        PartyPlan("a0", "sometimes", 3.0, 10.0, seed=1)
    with pytest.raises(BadRequest):
        PartyPlan("a0", "active", 0.0, 10.0, seed=1)
