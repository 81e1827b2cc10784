"""PartialAggregate: streaming, merging, checkpointing through the codec, resuming."""

from __future__ import annotations

import numpy as np
import pytest
from fusion_helpers import reference_mean

from fedfaas import codec
from fedfaas.errors import Conflict, FusionError
from fedfaas.fusion import PartialAggregate, fedavg, merge_tree


def _updates(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"w": rng.standard_normal((3, 5)).astype(np.float32),
             "h": rng.standard_normal(7).astype(np.float16),
             "n": np.array(int(rng.integers(0, 100)), np.int64)} for _ in range(n)]


WEIGHTS = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0]
PARTIES = [f"p{i}" for i in range(6)]


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
        np.testing.assert_allclose(a[k].astype(np.float64), b[k].astype(np.float64),
                                   rtol=1e-6, atol=1e-3 if a[k].dtype == np.float16 else 1e-6)


def test_one_at_a_time_equals_all_at_once() -> None:
    # Prepare
    updates = _updates(6)
    partial = PartialAggregate()
    # Execute
    for u, w, p in zip(updates, WEIGHTS, PARTIES, strict=True):
        partial.add(u, w, p)
    # Assert
    _assert_same(partial.finalize(), fedavg(updates, WEIGHTS, PARTIES))
    assert partial.count == 6 and partial.total_weight == sum(WEIGHTS)


def test_matches_a_float64_reference() -> None:
    # Prepare
    updates = _updates(6)
    # Execute
    fused = fedavg(updates, WEIGHTS)
    # Assert
    ref = reference_mean(updates, WEIGHTS)
    np.testing.assert_allclose(fused["w"], ref["w"], rtol=1e-6, atol=1e-6)
    assert int(fused["n"]) == int(np.floor(ref["n"] + 0.5))


def test_merge_of_two_partials_equals_direct_fusion() -> None:
    # Prepare
    updates = _updates(6)
    left, right = PartialAggregate(), PartialAggregate()
    left.add_many(updates[:2], WEIGHTS[:2], PARTIES[:2])
    right.add_many(updates[2:], WEIGHTS[2:], PARTIES[2:])
    # Execute
    merged = left.merge(right)
    # Assert
    _assert_same(merged.finalize(), fedavg(updates, WEIGHTS))
    assert merged.parties == PARTIES


def test_merge_tree_of_uneven_partials_equals_direct_fusion() -> None:
    # Prepare
    updates = _updates(6)
    partials = [PartialAggregate() for _ in range(5)]
    for i, (u, w, p) in enumerate(zip(updates, WEIGHTS, PARTIES, strict=True)):
        partials[min(i, 4)].add(u, w, p)
    # Execute
    root = merge_tree(partials)
    # Assert
    _assert_same(root.finalize(), fedavg(updates, WEIGHTS))
    assert sorted(root.parties) == PARTIES


def test_merge_with_an_empty_partial_changes_nothing() -> None:
    # Prepare
    updates = _updates(2)
    full = PartialAggregate()
    full.add_many(updates, [1, 2], ["a", "b"])
    # Execute
    into_empty = PartialAggregate().merge(full)
    into_full = full.merge(PartialAggregate())
    # Assert
    _assert_same(into_empty.finalize(), fedavg(updates, [1, 2]))
    _assert_same(into_full.finalize(), fedavg(updates, [1, 2]))


def test_a_party_added_twice_is_a_conflict_and_changes_nothing() -> None:
    # Prepare
    updates = _updates(2)
    partial = PartialAggregate()
    partial.add(updates[0], 1, "a")
    before = partial.finalize()
    # Execute / Assert
    with pytest.raises(Conflict, match="party 'a' is already"):
        partial.add(updates[1], 1, "a")
    assert partial.count == 1 and "a" in partial
    _assert_same(partial.finalize(), before)


def test_merging_overlapping_partials_is_a_conflict() -> None:
    # Prepare
    updates = _updates(3)
    left, right = PartialAggregate(), PartialAggregate()
    left.add_many(updates[:2], [1, 1], ["a", "b"])
    right.add_many(updates[1:], [1, 1], ["b", "c"])
    # Execute / Assert
    with pytest.raises(Conflict, match="party 'b'"):
        left.merge(right)
    with pytest.raises(Conflict, match="party 'b'"):
        merge_tree([left, right])
    assert left.count == 2


def test_merging_partials_of_different_models_is_rejected() -> None:
    # Prepare
    left, right = PartialAggregate(), PartialAggregate()
    left.add({"w": np.zeros(4, np.float32)}, 1, "a")
    right.add({"w": np.zeros(5, np.float32)}, 1, "b")
    # Execute / Assert
    with pytest.raises(FusionError, match="tensor 'w' is \\[4\\] float32 vs \\[5\\] float32"):
        left.merge(right)


def test_a_mismatched_update_leaves_the_partial_unchanged() -> None:
    # Prepare
    partial = PartialAggregate()
    partial.add({"w": np.ones(4, np.float32)}, 1, "a")
    # Execute / Assert
    with pytest.raises(FusionError, match="party 'b': tensor 'w' has shape"):
        partial.add({"w": np.ones(5, np.float32)}, 1, "b")
    assert partial.parties == ["a"] and partial.total_weight == 1.0


def test_finalize_of_an_empty_partial_is_rejected() -> None:
    # Execute / Assert
    with pytest.raises(FusionError, match="no updates"):
        PartialAggregate().finalize()


def test_consumed_partial_cannot_be_reused() -> None:
    # Prepare
    partial = PartialAggregate()
    partial.add({"w": np.ones(4, np.float32)}, 2, "a")
    # Execute
    model = partial.finalize(consume=True)
    # Assert
    np.testing.assert_array_equal(model["w"], np.ones(4, np.float32))
    with pytest.raises(Conflict, match="consumed"):
        partial.add({"w": np.ones(4, np.float32)}, 1, "b")


def test_resume_from_a_stored_partial_equals_direct_fusion() -> None:
    # Prepare: three parties folded in, then checkpointed with the codec
    updates = _updates(6)
    first = PartialAggregate()
    first.add_many(updates[:3], WEIGHTS[:3], PARTIES[:3])
    tensors, meta = first.to_tensors()
    body = codec.encode(tensors, meta)
    # Execute: a new process decodes it and continues
    stored = codec.decode(body)
    resumed = PartialAggregate.from_tensors(stored.tensors, stored.meta)
    for u, w, p in zip(updates[3:], WEIGHTS[3:], PARTIES[3:], strict=True):
        resumed.add(u, w, p)
    # Assert
    _assert_same(resumed.finalize(), fedavg(updates, WEIGHTS))
    assert resumed.parties == PARTIES
    with pytest.raises(Conflict):
        resumed.add(updates[0], 1, "p0")


def test_resume_adopts_writable_buffers_without_copying() -> None:
    # Prepare
    partial = PartialAggregate()
    partial.add({"w": np.array([2, 4, 6, 8], np.float32)}, 2, "a")
    tensors, meta = partial.to_tensors()
    stored = codec.decode(bytearray(codec.encode(tensors, meta)))
    # Execute
    resumed = PartialAggregate.from_tensors(stored.tensors, stored.meta, copy=False)
    resumed.add({"w": np.full(4, 2, np.float32)}, 2, "b")
    # Assert: the mean is right and the decoded buffer itself accumulated
    np.testing.assert_array_equal(resumed.finalize()["w"], [2, 3, 4, 5])
    assert not np.array_equal(stored.tensors["w"], [2, 4, 6, 8])


def test_an_empty_partial_round_trips() -> None:
    # Prepare
    tensors, meta = PartialAggregate().to_tensors()
    stored = codec.decode(codec.encode(tensors, meta))
    # Execute
    resumed = PartialAggregate.from_tensors(stored.tensors, stored.meta)
    resumed.add({"w": np.ones(4, np.float32)}, 1, "a")
    # Assert
    np.testing.assert_array_equal(resumed.finalize()["w"], np.ones(4, np.float32))


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "model"}, "not a partial aggregate"),
    ({"parties": "a"}, "lists 'parties' and 'dtypes'"),
    ({"parties": ["a", "a"]}, "appears twice"),
    ({"dtypes": ["complex64"]}, "unknown dtype"),
    ({"dtypes": ["float64"]}, "expected float64 for float64 updates"),
    ({"dtypes": []}, "1 tensors but 0 dtypes"),
    ({"w_ref": 0}, "'w_ref' must be a number > 0"),
    ({"total_weight": float("nan")}, "'total_weight' must be a number > 0"),
])
def test_a_corrupt_stored_partial_is_rejected(change: dict[str, object], message: str) -> None:
    # Prepare
    partial = PartialAggregate()
    partial.add({"w": np.ones(4, np.float32)}, 1, "a")
    tensors, meta = partial.to_tensors()
    # Execute / Assert
    with pytest.raises(FusionError, match=message):
        PartialAggregate.from_tensors(tensors, {**meta, **change})
