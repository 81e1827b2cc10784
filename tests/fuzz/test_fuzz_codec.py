"""Property tests of the wire format: hostile bytes give CodecError or PayloadTooLarge, nothing else.

Arbitrary bytes, mutated valid bodies and hand-built headers with hostile
fields must never raise another exception, never allocate what a header
merely declares, and never hang.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedfaas import codec
from fedfaas.errors import CodecError, PayloadTooLarge

BOUNDED = settings(max_examples=100, deadline=None, derandomize=True)
LIMITS = codec.Limits(max_total_bytes=1 << 20, max_tensors=64, max_header_bytes=1 << 16)
pytestmark = pytest.mark.timeout(120)


def _decode_or_refuse(buf: bytes) -> codec.ModelUpdate | None:
    """Decode; a refusal must be one of the codec's two errors (anything else fails the test)."""
    try:
        update = codec.decode(buf, LIMITS)
    except (CodecError, PayloadTooLarge):
        return None
    total = 0
    for arr in update.tensors.values():
        assert not arr.flags.writeable
        total += arr.nbytes
    assert total <= len(buf)
    return update


def _array(dtype: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    values = np.asarray(np.random.default_rng(seed).standard_normal(shape) * 100)
    return values.astype(codec.DTYPES[dtype])


arrays = st.builds(
    _array,
    st.sampled_from(sorted(codec.DTYPES)),
    st.lists(st.integers(0, 5), max_size=3).map(tuple),
    st.integers(0, 2**16),
)
tensor_dicts = st.dictionaries(st.from_regex(r"[a-z][a-z0-9_.]{0,12}", fullmatch=True), arrays,
                               min_size=1, max_size=4)


@BOUNDED
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_cleanly(buf: bytes) -> None:
    _decode_or_refuse(buf)


@BOUNDED
@given(tensor_dicts, st.data())
def test_mutated_valid_bodies_are_refused_cleanly_or_decode_in_bounds(
        tensors: dict[str, np.ndarray], data: st.DataObject) -> None:
    # Prepare
    body = bytearray(codec.encode(tensors, {"party": "p1", "round": 3, "num_examples": 5}))
    kind = data.draw(st.sampled_from(["truncate", "flip", "insert", "delete", "overwrite"]))
    at = data.draw(st.integers(0, len(body) - 1))
    if kind == "truncate":
        mutated = bytes(body[:at])
    elif kind == "flip":
        body[at] ^= 1 << data.draw(st.integers(0, 7))
        mutated = bytes(body)
    elif kind == "insert":
        mutated = bytes(body[:at]) + data.draw(st.binary(min_size=1, max_size=16)) + bytes(body[at:])
    elif kind == "delete":
        mutated = bytes(body[:at]) + bytes(body[at + data.draw(st.integers(1, 16)):])
    else:
        patch = data.draw(st.binary(min_size=1, max_size=8))
        mutated = bytes(body[:at]) + patch + bytes(body[at + len(patch):])
    # Execute / Assert
    _decode_or_refuse(mutated)


json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
                | st.text(max_size=20))
hostile_values = st.recursive(json_scalars | st.binary(max_size=16),
                              lambda inner: st.lists(inner, max_size=4)
                              | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
tensor_entries = st.lists(st.one_of(
    st.tuples(st.text(max_size=12) | st.sampled_from(["../etc/passwd", "a/b", "..", "w", ""]),
              st.sampled_from([*codec.DTYPES, "float128", "object", "<U8", "complex64"]),
              st.lists(st.integers(-5, 2**62), max_size=9),
              st.integers(-64, 2**40), st.integers(-1, 2**63)).map(list),
    hostile_values), max_size=5)


@BOUNDED
@given(
    fmt=st.sampled_from([codec.FORMAT, "other"]) | hostile_values,
    version=st.sampled_from([codec.VERSION, 2]) | hostile_values,
    meta=st.dictionaries(st.text(max_size=8), hostile_values, max_size=4) | hostile_values,
    tensors=tensor_entries | hostile_values,
    data_len=st.integers(0, 512),
    declared_len=st.none() | st.integers(0, 2**32 - 1),
)
def test_hand_built_headers_with_hostile_fields_are_refused_cleanly(
        fmt: Any, version: Any, meta: Any, tensors: Any, data_len: int, declared_len: int | None) -> None:
    # Prepare
    header = {"format": fmt, "version": version, "meta": meta, "tensors": tensors, "pad": b""}
    head = msgpack.packb(header, use_bin_type=True)
    length = data_len if declared_len is None else declared_len
    body = head + bytes([0xC6]) + length.to_bytes(4, "big") + bytes(data_len)
    # Execute / Assert
    _decode_or_refuse(body)


bad_fields = st.one_of(st.integers(-(2**63), 2**64 - 1), st.booleans(), st.floats(), st.none(),
                       st.text(max_size=6), st.lists(st.integers(-3, 2**33), max_size=9))


@BOUNDED
@given(st.lists(st.tuples(st.sampled_from(sorted(codec.DTYPES)),
                          st.lists(st.integers(0, 4), max_size=3)), min_size=1, max_size=3),
       st.data())
def test_tensor_tables_with_one_bad_field_are_refused_cleanly(
        layout: list[tuple[str, list[int]]], data: st.DataObject) -> None:
    # Prepare: a consistent table of tensors, then one field of one entry replaced
    entries: list[list[Any]] = []
    offset = 0
    for i, (dtype, shape) in enumerate(layout):
        nbytes = int(np.prod(shape, dtype=np.int64)) * codec.DTYPES[dtype].itemsize
        entries.append([f"t{i}", dtype, shape, offset, nbytes])
        offset += (nbytes + 63) // 64 * 64
    victim = data.draw(st.integers(0, len(entries) - 1))
    field = data.draw(st.integers(0, 4))
    right: Any = entries[victim][field]
    lookalikes: list[Any] = [float(right)] if isinstance(right, int) else \
        [[float(d) for d in right]] if isinstance(right, list) else [right.encode()]
    entries[victim][field] = data.draw(bad_fields | st.sampled_from(lookalikes)
                                       | st.just(entries[max(0, victim - 1)][field]))
    head = msgpack.packb({"format": codec.FORMAT, "version": codec.VERSION, "meta": {},
                          "tensors": entries, "pad": b""}, use_bin_type=True)
    body = head + bytes([0xC6]) + offset.to_bytes(4, "big") + bytes(offset)
    # Execute / Assert
    _decode_or_refuse(body)


@BOUNDED
@given(st.lists(st.integers(2**20, 2**40), min_size=1, max_size=8),
       st.sampled_from(sorted(codec.DTYPES)))
def test_huge_declared_shapes_are_refused_before_any_allocation(shape: list[int], dtype: str) -> None:
    # Prepare: the header claims a giant tensor over an empty data section
    declared = int(np.prod(shape, dtype=object)) * codec.DTYPES[dtype].itemsize
    head = msgpack.packb({"format": codec.FORMAT, "version": codec.VERSION, "meta": {},
                          "tensors": [["w", dtype, shape, 0, min(2**64 - 1, declared)]], "pad": b""},
                         use_bin_type=True)
    # Execute / Assert
    with pytest.raises(PayloadTooLarge):
        codec.decode(head + bytes([0xC6, 0, 0, 0, 0]), LIMITS)


@BOUNDED
@given(tensor_dicts, st.dictionaries(st.sampled_from(["party", "job", "note"]),
                                     st.text(max_size=10), max_size=3))
def test_valid_bodies_round_trip_exactly(tensors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
    # Execute
    decoded = codec.decode(codec.encode(tensors, meta))
    # Assert
    assert decoded.meta == meta and list(decoded.tensors) == list(tensors)
    for name, arr in tensors.items():
        assert decoded.tensors[name].dtype == arr.dtype and decoded.tensors[name].shape == arr.shape
        assert decoded.tensors[name].tobytes() == arr.tobytes()
