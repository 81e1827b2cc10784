"""fedfaas.models: registry, ResNet-18 layout, weight loading, local training, client splits."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from fedfaas.codec import decode, encode
from fedfaas.errors import BadRequest
from fedfaas.models import (
    MODELS,
    build_model,
    dirichlet_split,
    evaluate,
    iid_split,
    load_state,
    state_arrays,
    train_local,
)


def test_resnet18_has_torchvisions_layout():
    # Execute
    model = build_model("resnet18")
    state = model.state_dict()

    # Assert: 11,689,512 parameters and 122 state entries, as torchvision's resnet18
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    assert len(state) == 122
    assert tuple(state["conv1.weight"].shape) == (64, 3, 7, 7)
    assert "layer2.0.downsample.1.running_var" in state and "fc.bias" in state
    assert tuple(build_model("resnet18", small_input=True, num_classes=10)
                 .state_dict()["conv1.weight"].shape) == (64, 3, 3, 3)


def test_seeded_builds_are_reproducible_and_registry_errors_are_clear():
    a = state_arrays(build_model("digits-cnn", seed=5))
    b = state_arrays(build_model("digits-cnn", seed=5))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert set(MODELS) == {"digits-mlp", "digits-cnn", "resnet18"}
    with pytest.raises(BadRequest, match="unknown model 'vgg'"):
        build_model("vgg")
    with pytest.raises(BadRequest, match="bad arguments for model 'digits-mlp'"):
        build_model("digits-mlp", depth=3)


def test_load_state_through_the_codec_with_bfloat16(digits):
    # Prepare: weights travel as bfloat16 over the wire
    source = build_model("digits-mlp", seed=1)
    wire = {k: v.astype(ml_dtypes.bfloat16) for k, v in state_arrays(source).items()}
    decoded = decode(encode(wire)).tensors

    # Execute
    model = load_state(build_model("digits-mlp"), decoded)

    # Assert
    got = state_arrays(model)
    for k, v in wire.items():
        np.testing.assert_array_equal(got[k], v.astype(np.float32))
    with pytest.raises(BadRequest, match=r"shape \(3,\)"):
        load_state(model, {**decoded, "out.bias": np.zeros(3, np.float32)})
    with pytest.raises(BadRequest, match="missing"):
        load_state(model, {"out.bias": decoded["out.bias"]})


def test_train_local_learns_and_is_deterministic(digits):
    # Prepare
    runs = []
    for _ in range(2):
        model = build_model("digits-mlp", seed=0)
        before = evaluate(model, digits.x_test, digits.y_test)[0]
        # Execute
        stats = train_local(model, digits.x_train, digits.y_train, epochs=3, lr=0.05, seed=4)
        runs.append((before, evaluate(model, digits.x_test, digits.y_test)[0], stats))

    # Assert
    (before, after, stats), (_, after2, stats2) = runs
    assert after > 0.85 > before
    assert after == after2 and stats == stats2
    assert stats["num_examples"] == len(digits.y_train)


def test_dirichlet_split_skews_labels_and_covers_every_row(digits):
    # Execute
    skewed = dirichlet_split(digits.y_train, 5, alpha=0.1, seed=2, min_size=10)
    mild = dirichlet_split(digits.y_train, 5, alpha=100.0, seed=2)

    # Assert
    for parts in (skewed, mild):
        rows = np.sort(np.concatenate(parts))
        np.testing.assert_array_equal(rows, np.arange(len(digits.y_train)))
    def top_share(parts):
        return np.mean([np.bincount(digits.y_train[p], minlength=10).max() / len(p) for p in parts])
    assert top_share(skewed) > 0.4 > 0.15 > top_share(mild)
    assert min(len(p) for p in skewed) >= 10
    assert [p.tolist() for p in skewed] == [p.tolist() for p in
                                            dirichlet_split(digits.y_train, 5, 0.1, 2, 10)]
    assert [len(p) for p in iid_split(10, 3)] == [4, 3, 3]
    with pytest.raises(BadRequest):
        dirichlet_split(digits.y_train, 5, alpha=0.0)
