"""Shared update maths: Gram matrix, FedAvg dtypes, CountSketch, robust z-scores, validation."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from fedfaas.errors import BadRequest, NotFound
from fedfaas.workloads import ClientUpdate
from fedfaas.workloads.params import REQUIRED, Param, validate_params
from fedfaas.workloads.updates import (
    check_round_updates,
    coordinate_median,
    count_sketch,
    fedavg,
    gram_matrix,
    iter_blocks,
    robust_z,
)


def _u(name: str, **tensors: np.ndarray) -> ClientUpdate:
    return ClientUpdate(name, tensors)


def test_gram_matrix_over_blocks_equals_numpy():
    # Prepare: tensors split across several tiny blocks
    rng = np.random.default_rng(0)
    updates = [_u(f"c{i}", a=rng.normal(size=(5, 3)), b=rng.normal(size=7)) for i in range(4)]
    X = np.stack([np.concatenate([u.tensors["a"].ravel(), u.tensors["b"]]) for u in updates])
    base = {"a": np.ones((5, 3)), "b": np.zeros(7)}

    # Execute
    blocks = list(iter_blocks(updates, ["a", "b"], base, block_elems=8))
    gram = gram_matrix(updates, ["a", "b"])

    # Assert
    assert len(blocks) > 2
    np.testing.assert_allclose(np.concatenate(blocks, axis=1), X - np.r_[np.ones(15), np.zeros(7)])
    np.testing.assert_allclose(gram, X @ X.T)


def test_fedavg_keeps_dtypes_and_averages_integer_buffers():
    # Prepare
    a = _u("a", w=np.array([1.0, 2.0], dtype=ml_dtypes.bfloat16), n=np.array(10, np.int64))
    b = _u("b", w=np.array([3.0, 6.0], dtype=ml_dtypes.bfloat16), n=np.array(20, np.int64))

    # Execute
    avg = fedavg([a, b], [1.0, 3.0])

    # Assert: Flower's in-place variant would zero ``n``
    assert avg["w"].dtype == ml_dtypes.bfloat16
    np.testing.assert_allclose(avg["w"].astype(np.float32), [2.5, 5.0])
    assert avg["n"].dtype == np.int64 and int(avg["n"]) == 18
    with pytest.raises(BadRequest, match="weights"):
        fedavg([a, b], [0.0, 0.0])


def test_count_sketch_preserves_inner_products():
    # Prepare: two correlated 200k-parameter updates
    rng = np.random.default_rng(1)
    x = rng.normal(size=200_000)
    y = 0.6 * x + 0.8 * rng.normal(size=200_000)
    updates = [_u("x", w=x), _u("y", w=y)]

    # Execute
    S = count_sketch(updates, ["w"], None, dim=4096, seed=2)
    again = count_sketch(updates, ["w"], None, dim=4096, seed=2)

    # Assert
    cos = S[0] @ S[1] / np.linalg.norm(S, axis=1).prod()
    assert cos == pytest.approx(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)), abs=0.05)
    np.testing.assert_array_equal(S, again)


def test_robust_z_by_hand():
    # median 2, MAD 1 -> scale 1.4826
    np.testing.assert_allclose(robust_z(np.array([1.0, 2.0, 3.0, 2.0, 8.0])),
                               np.array([-1, 0, 1, 0, 6]) / 1.4826)
    # MAD 0: the scaled mean absolute deviation (6 / 5 * 1.2533) stands in
    np.testing.assert_allclose(robust_z(np.array([2.0, 2.0, 2.0, 2.0, 8.0]))[-1],
                               6 / (1.2533 * 6 / 5))
    np.testing.assert_allclose(robust_z(np.ones(4)), 0.0)
    np.testing.assert_allclose(robust_z(np.array([1.0, 1.1, 1.2]), min_scale=1.0), [-0.1, 0, 0.1])


def test_round_validation_messages():
    ok = _u("a", w=np.zeros(2))
    with pytest.raises(NotFound):
        check_round_updates("w", [], min_clients=1)
    with pytest.raises(BadRequest, match="appear more than once"):
        check_round_updates("w", [ok, ok], min_clients=1)
    with pytest.raises(BadRequest, match="several rounds"):
        check_round_updates("w", [ClientUpdate("a", ok.tensors, round=1),
                                  ClientUpdate("b", ok.tensors, round=2)], min_clients=1)
    with pytest.raises(BadRequest, match=r"shape \(3,\), expected \(2,\)"):
        check_round_updates("w", [ok, _u("b", w=np.zeros(3))], min_clients=1)
    with pytest.raises(BadRequest, match="base model lacks"):
        check_round_updates("w", [ok], min_clients=1, base={"v": np.zeros(2)})
    with pytest.raises(BadRequest, match="no floating-point"):
        check_round_updates("w", [_u("a", n=np.zeros(2, np.int64))], min_clients=1)


def test_param_schema():
    schema = (Param("k", "int", 3, "k", minimum=1), Param("mode", "str", "a", "m", choices=("a",)),
              Param("names", "str_list", None, "n"))
    assert validate_params("w", schema, {"k": 4.0}) == {"k": 4, "mode": "a", "names": None}
    for bad, rule in (({"k": 0}, ">= 1"), ({"k": "3"}, "number"), ({"mode": "b"}, "one of a"),
                      ({"names": [1]}, "list of strings"), ({"k": None}, "null")):
        with pytest.raises(BadRequest, match=rule):
            validate_params("w", schema, bad)
    with pytest.raises(BadRequest, match="'k' is required"):
        validate_params("w", (Param("k", "int", REQUIRED, "k"),), {})


@pytest.mark.parametrize("rows", [1, 4, 5, 70])
def test_coordinate_median_matches_numpy(rows):
    block = np.random.default_rng(rows).normal(size=(rows, 33))
    np.testing.assert_allclose(coordinate_median(block), np.median(block, axis=0))
