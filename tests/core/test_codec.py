"""The update wire format: exact round trips, zero-copy decoding, refusal of bad bodies."""

from __future__ import annotations

import ml_dtypes
import msgpack
import numpy as np
import pytest
import torch

from fedfaas import codec
from fedfaas.errors import CodecError, PayloadTooLarge


def _sample() -> dict[str, np.ndarray]:
    return {
        "conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "bn.running_mean": np.array([0.5, -1.5], dtype=np.float16),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "emb": np.array([1.0, 2.5, -3.0], dtype=ml_dtypes.bfloat16),
        "mask": np.array([True, False]),
    }


def test_round_trip_keeps_order_dtype_shape_and_values() -> None:
    # Prepare
    tensors = _sample()
    meta = {"job": "j1", "round": 3, "party": "p1", "num_examples": 120, "train_time_s": 1.5}
    # Execute
    decoded = codec.decode(codec.encode(tensors, meta))
    # Assert
    assert list(decoded.tensors) == list(tensors)
    assert decoded.meta == meta
    for name, arr in tensors.items():
        out = decoded.tensors[name]
        assert out.dtype == arr.dtype and out.shape == arr.shape
        assert out.tobytes() == np.ascontiguousarray(arr).tobytes()


def test_decode_is_zero_copy_and_aligned() -> None:
    # Prepare
    body = bytearray(codec.encode(_sample()))
    # Execute
    decoded = codec.decode(body)
    # Assert: views share the buffer, and every tensor starts on a 64-byte boundary
    arr = decoded.tensors["conv.weight"]
    assert np.shares_memory(arr, np.frombuffer(body, dtype=np.uint8))
    base = np.frombuffer(body, dtype=np.uint8).ctypes.data
    assert all((a.ctypes.data - base) % codec.ALIGN == 0 for a in decoded.tensors.values())


def test_body_is_plain_msgpack_stream() -> None:
    # Prepare
    body = codec.encode({"w": np.ones(3, np.float32)}, {"party": "a"})
    # Execute
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(body)
    header, data = list(unpacker)
    # Assert
    assert header["format"] == "fedfaas.update"
    assert header["tensors"][0][:3] == ["w", "float32", [3]]
    assert isinstance(data, bytes) and len(data) == 12


def test_state_dict_round_trip_with_batchnorm_and_bfloat16() -> None:
    # Prepare
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    model(torch.randn(2, 1, 5, 5))  # bumps num_batches_tracked
    sd = model.state_dict()
    sd["extra.bf16"] = torch.tensor([1.5, -2.0], dtype=torch.bfloat16)
    sd["extra.f16"] = torch.tensor([65504.0], dtype=torch.float16)
    # Execute
    back = codec.to_state_dict(codec.decode(codec.encode(codec.from_state_dict(sd))).tensors)
    # Assert
    assert list(back) == list(sd)
    for name, tensor in sd.items():
        assert back[name].dtype == tensor.dtype
        assert torch.equal(back[name], tensor)


def test_list_of_arrays_helpers() -> None:
    arrays = [np.zeros(2, np.float32), np.ones((2, 2), np.int32)]
    named = codec.from_arrays(arrays)
    assert list(named) == ["0", "1"]
    assert all(np.array_equal(a, b) for a, b in zip(codec.to_arrays(named), arrays, strict=True))


@pytest.mark.parametrize("cut", [0, 5, 40, -1, -13])
def test_truncated_bodies_are_refused(cut: int) -> None:
    body = codec.encode(_sample())
    with pytest.raises(CodecError):
        codec.decode(body[:cut] if cut > 0 else body[: len(body) + cut] if cut else b"")


def test_trailing_garbage_is_refused() -> None:
    with pytest.raises(CodecError):
        codec.decode(codec.encode(_sample()) + b"x")


def _forge(header: dict, data: bytes) -> bytes:
    return msgpack.packb(header) + b"\xc6" + len(data).to_bytes(4, "big") + data


@pytest.mark.parametrize(
    "spec, error",
    [
        (["w", "float32", [4], 0, 16], None),
        (["w", "float32", [10**12, 10**12], 0, 16], PayloadTooLarge),
        (["w", "float32", [5], 0, 16], CodecError),
        (["w", "object", [4], 0, 16], CodecError),
        (["../../etc/passwd", "float32", [4], 0, 16], CodecError),
        (["w", "float32", [-4], 0, 16], CodecError),
        (["w", "float32", [2, 2, 1, 1, 1, 1, 1, 1, 1], 0, 16], CodecError),
        (["w", "float32", [4], 8, 16], CodecError),
        (["w", "float32", "4", 0, 16], CodecError),
    ],
)
def test_forged_headers(spec: list, error: type[Exception] | None) -> None:
    # Prepare
    body = _forge({"format": "fedfaas.update", "version": 1, "meta": {}, "tensors": [spec]}, bytes(16))
    # Execute / Assert
    if error is None:
        assert codec.decode(body).tensors["w"].shape == (4,)
    else:
        with pytest.raises(error):
            codec.decode(body)


def test_limits_on_tensor_count_and_size() -> None:
    tensors = {f"t{i}": np.zeros(1, np.float32) for i in range(5)}
    body = codec.encode(tensors)
    with pytest.raises(PayloadTooLarge):
        codec.decode(body, codec.Limits(max_tensors=4))
    with pytest.raises(PayloadTooLarge):
        codec.decode(body, codec.Limits(max_total_bytes=8))


def test_not_msgpack_and_wrong_version() -> None:
    with pytest.raises(CodecError):
        codec.decode(b"\x80" * 100)
    bad = _forge({"format": "fedfaas.update", "version": 9, "meta": {}, "tensors": []}, b"")
    with pytest.raises(CodecError):
        codec.decode(bad)


def test_count_nonfinite() -> None:
    tensors = {"a": np.array([1.0, np.nan, np.inf], np.float32), "b": np.array([1], np.int64)}
    assert codec.count_nonfinite(tensors) == 2
