"""Coordinate-wise model shards: exact reassembly and sharded fusion == direct fusion."""

from __future__ import annotations

import numpy as np
import pytest

from fedfaas import codec
from fedfaas.errors import BadRequest, FusionError
from fedfaas.fusion import (
    Piece,
    assemble_shards,
    fedavg,
    get_algorithm,
    median,
    shard_ranges,
    squared_distances,
    take_shard,
)


def _model(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "big": rng.standard_normal((40, 25)).astype(np.float32),   # 4000 B
        "bias": rng.standard_normal(10).astype(np.float32),        # 40 B
        "empty": np.zeros((0, 3), np.float32),
        "count": np.array(int(rng.integers(0, 9)), np.int64),     # 8 B
        "half": rng.standard_normal(300).astype(np.float16),       # 600 B
    }


def test_one_shard_holds_every_tensor_whole() -> None:
    # Execute
    (shard,) = shard_ranges(_model(), 1)
    # Assert
    assert [p.name for p in shard.pieces] == ["big", "bias", "empty", "count", "half"]
    assert all(p.whole for p in shard.pieces) and shard.nbytes == 4648


def test_shards_balance_bytes_and_split_only_the_big_tensor() -> None:
    # Execute
    shards = shard_ranges(_model(), 4)
    # Assert: ideal cuts at 1162, 2324, 3486 B fall inside "big" and round to whole elements
    assert [s.nbytes for s in shards] == [1160, 1164, 1164, 1160]
    assert shards[0].pieces == (Piece("big", 0, 290, False),)
    assert all(not p.whole for s in shards[:3] for p in s.pieces if p.name == "big")
    assert [p.name for p in shards[3].pieces] == ["big", "bias", "empty", "count", "half"]


def test_cuts_snap_to_nearby_tensor_boundaries() -> None:
    # Prepare: two tensors of 1000 and 1100 bytes; the ideal cut (1050) is 50 B from a boundary
    spec = {"a": np.zeros(250, np.float32), "b": np.zeros(275, np.float32)}
    # Execute
    shards = shard_ranges(spec, 2)
    # Assert
    assert shards[0].pieces == (Piece("a", 0, 250, True),)
    assert shards[1].pieces == (Piece("b", 0, 275, True),)


def test_more_shards_than_elements_leaves_some_empty() -> None:
    # Execute
    shards = shard_ranges({"w": np.zeros(2, np.float32)}, 5)
    # Assert
    assert sum(len(s.pieces) for s in shards) == 2
    assert sum(s.nbytes for s in shards) == 8


@pytest.mark.parametrize("n_shards", [1, 2, 3, 7, 64])
def test_take_then_assemble_is_exact(n_shards: int) -> None:
    # Prepare
    model = _model()
    shards = shard_ranges(model, n_shards)
    # Execute
    back = assemble_shards([take_shard(model, s) for s in shards], shards, model)
    # Assert
    assert list(back) == list(model)
    for k in model:
        assert back[k].dtype == model[k].dtype
        np.testing.assert_array_equal(back[k], model[k])


def test_shard_specs_can_come_from_a_codec_header() -> None:
    # Prepare
    model = _model()
    _, specs, _ = codec.decode_header(codec.encode(model))
    # Execute / Assert
    assert shard_ranges(specs, 3) == shard_ranges(model, 3)


def test_sharded_fedavg_equals_direct_fedavg() -> None:
    # Prepare: shards travel through the codec as an aggregator function would get them
    updates = [_model(seed) for seed in range(4)]
    weights = [1, 2, 3, 4]
    shards = shard_ranges(updates[0], 3)
    # Execute
    parts = []
    for shard in shards:
        pieces = [codec.decode(codec.encode(take_shard(u, shard))).tensors for u in updates]
        parts.append(fedavg(pieces, weights))
    fused = assemble_shards(parts, shards, updates[0])
    # Assert
    direct = fedavg(updates, weights)
    for k in direct:
        np.testing.assert_array_equal(fused[k], direct[k])


def test_sharded_median_equals_direct_median() -> None:
    # Prepare
    updates = [_model(seed) for seed in range(5)]
    shards = shard_ranges(updates[0], 4)
    # Execute
    parts = [median([take_shard(u, s) for u in updates]) for s in shards]
    fused = assemble_shards(parts, shards, updates[0])
    # Assert
    direct = median(updates)
    for k in direct:
        np.testing.assert_array_equal(fused[k], direct[k])


def test_sharded_krum_distances_add_up_to_the_direct_ones() -> None:
    # Prepare
    updates = [_model(seed) for seed in range(5)]
    shards = shard_ranges(updates[0], 3)
    # Execute
    summed = sum(squared_distances([take_shard(u, s) for u in updates]) for s in shards)
    # Assert
    np.testing.assert_allclose(summed, squared_distances(updates), rtol=1e-9)


def test_sharded_fedadam_equals_direct_fedadam() -> None:
    # Prepare
    updates = [_model(seed) for seed in range(3)]
    global_model = _model(10)
    shards = shard_ranges(global_model, 2)
    algorithm = get_algorithm("fedadam")
    # Execute
    parts = [algorithm.fuse([take_shard(u, s) for u in updates], [1, 2, 3],
                           global_model=take_shard(global_model, s)).model for s in shards]
    fused = assemble_shards(parts, shards, global_model)
    # Assert
    direct = algorithm.fuse(updates, [1, 2, 3], global_model=global_model).model
    for k in direct:
        np.testing.assert_allclose(fused[k].astype(np.float64), direct[k].astype(np.float64),
                                   rtol=1e-6)


def test_bad_shard_counts_are_rejected() -> None:
    # Execute / Assert
    for bad in (0, -1, 1.5, True):
        with pytest.raises(BadRequest, match="n_shards"):
            shard_ranges(_model(), bad)  # type: ignore[arg-type]


def test_assembling_with_a_missing_piece_is_rejected() -> None:
    # Prepare
    model = _model()
    shards = shard_ranges(model, 2)
    parts = [take_shard(model, s) for s in shards]
    del parts[1][shards[1].pieces[-1].key]
    # Execute / Assert
    with pytest.raises(FusionError, match="fused shard 1 lacks tensor"):
        assemble_shards(parts, shards, model)
