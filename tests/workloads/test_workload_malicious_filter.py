"""malicious-filter: planted attackers are flagged; the signals match plain numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads import ClientUpdate, WorkloadInputs, run_workload
from fedfaas.workloads.malicious_filter import filter_round, krum_scores


def _attacked(honest: list[ClientUpdate], base: dict[str, np.ndarray]) -> list[ClientUpdate]:
    victim_a, victim_b = honest[0].tensors, honest[1].tensors
    flipped = {k: base[k] - (victim_a[k] - base[k]) for k in base}
    boosted = {k: base[k] + 10.0 * (victim_b[k] - base[k]) for k in base}
    return [*honest[:3], ClientUpdate("flipper", flipped, {}, 3), *honest[3:],
            ClientUpdate("booster", boosted, {}, 3)]


def test_sign_flipped_and_scaled_clients_are_flagged(honest_round, base_state):
    # Prepare
    updates = _attacked(honest_round, base_state)

    # Execute
    result = run_workload("malicious-filter",
                          WorkloadInputs(round=3, updates=updates, base_model=base_state), {})

    # Assert
    assert sorted(result["flagged"]) == ["booster", "flipper"]
    assert "cosine" in result["scores"]["flipper"]["reasons"]
    assert "norm_high" in result["scores"]["booster"]["reasons"]
    assert result["accepted"] == [u.client for u in honest_round]
    assert result["compared"] == "deltas"
    assert result["krum_choice"] in result["accepted"]


def test_base_model_comes_from_previous_round_global(honest_round, base_state):
    # Prepare: no explicit base, but round 2's global model is cached
    inputs = WorkloadInputs(round=3, updates=_attacked(honest_round, base_state),
                            global_models={2: base_state})

    # Execute
    result = run_workload("malicious-filter", inputs, {})

    # Assert
    assert result["compared"] == "deltas"
    assert sorted(result["flagged"]) == ["booster", "flipper"]


def test_signals_match_numpy_reference(honest_round, base_state, flatten):
    # Prepare
    updates = _attacked(honest_round, base_state)
    X = np.stack([flatten(u.tensors, base_state) for u in updates])
    median = np.median(X, axis=0)
    cos = X @ median / (np.linalg.norm(X, axis=1) * np.linalg.norm(median))
    f = (len(X) - 3) // 2
    ref_krum = []
    for i in range(len(X)):
        d = sorted(float(np.sum((X[i] - X[j]) ** 2)) for j in range(len(X)) if j != i)
        ref_krum.append(sum(d[:len(X) - f - 2]))

    # Execute
    result = filter_round(updates, base=base_state)

    # Assert
    got = [result["scores"][u.client] for u in updates]
    np.testing.assert_allclose([g["cosine_distance"] for g in got], 1 - cos, atol=1e-9)
    np.testing.assert_allclose([g["norm"] for g in got], np.linalg.norm(X, axis=1), rtol=1e-9)
    np.testing.assert_allclose([g["krum_score"] for g in got], ref_krum, rtol=1e-9)
    assert result["byzantine"] == f


def test_krum_scores_by_hand():
    # Prepare: points 0, 1, 2 and 10 on a line; f = 0 -> 2 nearest neighbours
    x = np.array([0.0, 1.0, 2.0, 10.0])
    sq = (x[:, None] - x[None, :]) ** 2

    # Execute
    scores = krum_scores(sq, byzantine=0)

    # Assert
    np.testing.assert_allclose(scores, [1 + 4, 1 + 1, 1 + 4, 64 + 81])


def test_nan_update_is_flagged_not_fatal(honest_round):
    # Prepare
    poisoned = {k: np.full_like(v, np.nan) for k, v in honest_round[0].tensors.items()}
    updates = [*honest_round[1:], ClientUpdate("nan", poisoned, {}, 3)]

    # Execute
    result = filter_round(updates)

    # Assert
    assert result["scores"]["nan"]["reasons"] == ["non_finite"]
    assert "nan" in result["flagged"]
    assert "nan" not in result["accepted"]


def test_bad_inputs_are_rejected(honest_round):
    with pytest.raises(NotFound, match="no client updates"):
        run_workload("malicious-filter", WorkloadInputs(round=3), {})
    with pytest.raises(BadRequest, match="at least 3"):
        run_workload("malicious-filter", WorkloadInputs(updates=honest_round[:2]), {})
    with pytest.raises(BadRequest, match="threshold"):
        run_workload("malicious-filter", WorkloadInputs(updates=honest_round), {"threshold": -1})
    with pytest.raises(BadRequest, match="n > 2f"):
        run_workload("malicious-filter", WorkloadInputs(updates=honest_round), {"byzantine": 5})
    with pytest.raises(BadRequest, match="checks"):
        run_workload("malicious-filter", WorkloadInputs(updates=honest_round),
                     {"checks": ["vibes"]})
