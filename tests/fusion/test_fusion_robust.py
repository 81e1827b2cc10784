"""Median, trimmed mean, Krum, Multi-Krum and Bulyan on hand-computed arrays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from fedfaas.errors import FusionError
from fedfaas.fusion import (
    bulyan,
    bulyan_combine,
    bulyan_select,
    get_algorithm,
    krum,
    krum_select,
    median,
    model_spec,
    multi_krum,
    squared_distances,
    trimmed_mean,
)


def _ups(rows: Sequence[Sequence[float]]) -> list[dict[str, np.ndarray]]:
    return [{"w": np.array(r, np.float32)} for r in rows]


def test_median_by_hand() -> None:
    # Prepare
    updates = _ups([[1, 2, 3, 4], [5, 6, 7, 8], [0, 10, -1, 4]])
    # Execute
    fused = median(updates)
    # Assert
    np.testing.assert_array_equal(fused["w"], [1, 6, 3, 4])


def test_median_ignores_one_huge_outlier() -> None:
    # Prepare
    updates = _ups([[1, 1, 1, 1], [2, 2, 2, 2], [1e30, -1e30, 1e30, 1e30]])
    # Execute
    result = get_algorithm("median").fuse(updates, [1, 1, 10**9])
    # Assert
    np.testing.assert_array_equal(result.model["w"], [2, 1, 2, 2])


def test_trimmed_mean_by_hand() -> None:
    # Prepare: beta 0.25 of 4 updates trims one value at each end of each coordinate
    updates = _ups([[1, 0, 5, 2], [5, 0, 5, 4], [9, 0, 5, 6], [100, 0, -5, 8]])
    # Execute
    fused = trimmed_mean(updates, 0.25)
    # Assert
    np.testing.assert_array_equal(fused["w"], [7, 0, 5, 5])


def test_trimmed_mean_with_beta_zero_is_the_plain_mean() -> None:
    # Prepare
    updates = _ups([[1, 2, 3, 4], [3, 4, 5, 6]])
    # Execute
    result = get_algorithm("trimmed-mean", beta=0.0).fuse(updates, [1, 1])
    # Assert
    np.testing.assert_array_equal(result.model["w"], [2, 3, 4, 5])


def test_trimmed_mean_that_trims_everything_is_rejected() -> None:
    # Execute / Assert
    with pytest.raises(FusionError, match="trims all 2 updates"):
        trimmed_mean(_ups([[1, 2, 3, 4], [3, 4, 5, 6]]), 0.49 + 0.01)


# Squared distances: ab=1 ac=4 ad=9 bc=5 bd=10 cd=13, e far from all.
KRUM_ROWS = [[0, 0, 0, 0], [1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 3, 0], [100, 100, 100, 100]]


def test_squared_distances_match_the_definition() -> None:
    # Prepare
    rng = np.random.default_rng(3)
    updates = [{"a": rng.standard_normal((3, 4)).astype(np.float32) + 1e3,
                "b": rng.standard_normal(5).astype(np.float16),
                "n": np.array(int(rng.integers(0, 1000)), np.int64)} for _ in range(6)]
    # Execute
    dist = squared_distances(updates)
    # Assert: brute force over float tensors only
    flat = [np.concatenate([u["a"].ravel().astype(np.float64), u["b"].astype(np.float64)])
             for u in updates]
    brute = np.array([[np.sum((x - y) ** 2) for y in flat] for x in flat])
    np.testing.assert_allclose(dist, brute, rtol=1e-9, atol=1e-9)


def test_krum_picks_the_most_central_update() -> None:
    # Prepare: scores over n - f - 2 = 2 neighbours: a=1+4, b=1+5, c=4+5, d=9+10, e huge
    updates = _ups(KRUM_ROWS)
    # Execute
    fused = krum(updates, num_malicious=1)
    result = get_algorithm("krum", num_malicious=1).fuse(updates, [1] * 5, list("abcde"))
    # Assert
    np.testing.assert_array_equal(fused["w"], [0, 0, 0, 0])
    assert result.parties == ["a"]
    scores = result.meta["krum_scores"]
    assert [round(scores[p], 9) for p in "abcd"] == [5, 6, 9, 19] and scores["e"] > 1e4


def test_multi_krum_averages_the_best_scores() -> None:
    # Prepare
    updates = _ups(KRUM_ROWS)
    # Execute: the three best are a, b, c; by default n - f = 4 are kept
    fused = multi_krum(updates, num_malicious=1, num_selected=3)
    default = get_algorithm("multi-krum", num_malicious=1).fuse(updates, [1] * 5, list("abcde"))
    # Assert
    np.testing.assert_allclose(fused["w"], [1 / 3, 2 / 3, 0, 0], rtol=1e-6)
    assert default.parties == ["a", "b", "c", "d"]
    np.testing.assert_allclose(default.model["w"], [0.25, 0.5, 0.75, 0])


def test_krum_with_too_few_updates_is_rejected() -> None:
    # Execute / Assert: n must exceed 2f + 2
    with pytest.raises(FusionError, match="more than 2f \\+ 2 = 4 updates for f = 1, got 4"):
        krum(_ups(KRUM_ROWS[:4]), num_malicious=1)
    with pytest.raises(FusionError, match="cannot select 6 of 5"):
        krum_select(np.zeros((5, 5)), 1, 6)


def test_bulyan_selection_by_hand() -> None:
    # Prepare: points 0..5 and an outlier on a line; f = 1 selects n - 2f = 5 by iterated Krum
    points = np.array([0, 1, 2, 3, 4, 5, 1000], np.float64)
    dist = (points[:, None] - points[None, :]) ** 2
    # Execute
    chosen = bulyan_select(dist, 1)
    # Assert
    assert chosen == [2, 3, 1, 4, 0]


def test_bulyan_coordinate_step_by_hand() -> None:
    # Prepare: 5 selected, f = 1: average the 3 values closest to each coordinate's median
    selected = _ups([[0, 5, 1, -1], [1, 5, 2, -1], [2, 5, 3, 4], [10, 5, 4, 4], [-7, 100, 5, 4]])
    # Execute
    fused = bulyan_combine(selected, 1, model_spec(selected[0]))
    # Assert
    np.testing.assert_array_equal(fused["w"], [1, 5, 3, 4])


def test_bulyan_excludes_a_byzantine_update() -> None:
    # Prepare
    rows = [[i, i, i, i] for i in range(6)] + [[1e6, -1e6, 1e6, -1e6]]
    updates = _ups(rows)
    # Execute
    fused = bulyan(updates, num_malicious=1)
    result = get_algorithm("bulyan", num_malicious=1).fuse(updates, [1] * 7, list("abcdefg"))
    # Assert
    np.testing.assert_array_equal(fused["w"], [2, 2, 2, 2])
    assert "g" not in result.parties and len(result.parties) == 5


def test_bulyan_with_too_few_updates_is_rejected() -> None:
    # Execute / Assert
    with pytest.raises(FusionError, match="at least 4f \\+ 3 = 7 updates for f = 1, got 6"):
        bulyan(_ups([[i, i, i, i] for i in range(6)]), num_malicious=1)


def test_robust_rules_bound_memory_by_chunks() -> None:
    # Prepare: a budget of 64 bytes forces many chunks per tensor
    from fedfaas.fusion.stacking import coordinatewise

    rng = np.random.default_rng(0)
    updates = [{"w": rng.standard_normal((5, 7)).astype(np.float32)} for _ in range(5)]
    spec = model_spec(updates[0])
    # Execute
    chunked = coordinatewise(updates, spec, lambda b: np.median(b, axis=0), budget=64)
    # Assert
    np.testing.assert_array_equal(chunked["w"], np.median(np.stack([u["w"] for u in updates]),
                                                          axis=0))
