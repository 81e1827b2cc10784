"""The model-update wire format (one codec for updates, models and partial aggregates).

A body is a valid msgpack stream of exactly two objects::

    header : map  {"format": "fedfaas.update", "version": 1,
                   "meta": {str: scalar | list | map},
                   "tensors": [[name, dtype, shape, offset, nbytes], ...],
                   "pad": bin}
    data   : bin32  the tensors' raw little-endian bytes

``offset`` is relative to the start of the data section; every tensor and the
data section itself start on a 64-byte boundary (the ``pad`` field makes it so),
which lets :func:`decode` hand out ``np.frombuffer`` views over the received
buffer: decoding copies no tensor bytes.  Tensor order is preserved, so a torch
``state_dict`` round-trips exactly, including float16, bfloat16 and integer
buffers such as BatchNorm's ``num_batches_tracked``.

Nothing here unpickles: the header is plain msgpack with strict limits and the
data section is only ever viewed as numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ml_dtypes
import msgpack
import numpy as np

from fedfaas.errors import CodecError, PayloadTooLarge
from fedfaas.spec import json_type

if TYPE_CHECKING:
    import torch

FORMAT = "fedfaas.update"
VERSION = 1
ALIGN = 64
_BIN32 = 0xC6

#: Wire dtype name -> numpy dtype (always little-endian).
DTYPES: dict[str, np.dtype[Any]] = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}
_NAME_OF_DTYPE = {dt: name for name, dt in DTYPES.items()}
_NAME_RE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9_.:\-\[\]]{1,256}$")


@dataclass(frozen=True)
class Limits:
    """Bounds that a decoded body must respect.

    Defaults suit models up to ~2 GiB; the gateway lowers ``max_total_bytes``
    to its configured body limit.
    """

    max_tensors: int = 100_000
    max_rank: int = 8
    max_total_bytes: int = 2 * 1024**3
    max_header_bytes: int = 16 * 1024**2
    max_meta_items: int = 256


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class TensorSpec:
    """Where one tensor lives in the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass
class ModelUpdate:
    """A decoded body: ordered named tensors plus metadata.

    ``meta`` usually carries ``job``, ``round``, ``party``, ``num_examples`` and
    ``train_time_s``; the codec itself only requires it to be a flat-ish map.
    """

    tensors: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Total bytes of all tensors."""
        return sum(int(a.nbytes) for a in self.tensors.values())


def dtype_name(dtype: np.dtype[Any]) -> str:
    """Wire name of a numpy dtype; raises :class:`CodecError` for unsupported ones."""
    dt = np.dtype(dtype).newbyteorder("<") if np.dtype(dtype).byteorder == ">" else np.dtype(dtype)
    name = _NAME_OF_DTYPE.get(dt)
    if name is None:
        raise CodecError(f"unsupported tensor dtype {dtype}; supported: {', '.join(DTYPES)}")
    return name


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def encode_parts(
    tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None
) -> tuple[list[bytes | memoryview], int]:
    """Encode without joining: the buffers to write in order, and their total length.

    Streaming writers (S3 multipart, HTTP chunked) use this to avoid one copy of
    the whole model.
    """
    specs: list[list[Any]] = []
    chunks: list[bytes | memoryview] = []
    offset = 0
    for name, array in tensors.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise CodecError(f"tensor name {name!r} is not allowed (1-256 chars of A-Za-z0-9_.:-[], no '..')")
        arr = np.asarray(array)
        wire = dtype_name(arr.dtype)
        if arr.ndim > DEFAULT_LIMITS.max_rank:
            raise CodecError(f"tensor {name!r} has rank {arr.ndim} > {DEFAULT_LIMITS.max_rank}")
        flat = np.ascontiguousarray(arr).astype(DTYPES[wire], copy=False).reshape(-1).view(np.uint8)
        gap = _align(offset) - offset
        if gap:
            chunks.append(b"\0" * gap)
            offset += gap
        specs.append([name, wire, list(arr.shape), offset, int(flat.nbytes)])
        chunks.append(memoryview(flat.data))
        offset += int(flat.nbytes)
    header: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "meta": dict(meta or {}),
        "tensors": specs,
        "pad": b"",
    }
    try:
        base = msgpack.packb(header, use_bin_type=True)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"metadata cannot be encoded: {exc}") from exc
    # pad stays below 64 bytes, so its bin8 prefix never changes size.
    header["pad"] = b"\0" * ((-(len(base) + 5)) % ALIGN)
    head = msgpack.packb(header, use_bin_type=True)
    data_prefix = bytes([_BIN32]) + offset.to_bytes(4, "big")
    return [head, data_prefix, *chunks], len(head) + 5 + offset


def encode(tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> bytes:
    """Encode named tensors and metadata into one body."""
    parts, _ = encode_parts(tensors, meta)
    return b"".join(parts)


def _read_header(view: memoryview, limits: Limits) -> tuple[dict[str, Any], int]:
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        max_buffer_size=limits.max_header_bytes,
        max_str_len=limits.max_header_bytes,
        max_bin_len=ALIGN,
        max_array_len=max(limits.max_tensors, limits.max_meta_items),
        max_map_len=limits.max_meta_items,
        max_ext_len=0,
    )
    window = 64 * 1024
    fed = 0
    while True:
        end = min(len(view), window, limits.max_header_bytes)
        unpacker.feed(bytes(view[fed:end]))
        fed = end
        try:
            header = unpacker.unpack()
            break
        except msgpack.OutOfData:
            if fed >= len(view):
                raise CodecError("body is truncated inside the header") from None
            if fed >= limits.max_header_bytes:
                raise PayloadTooLarge(
                    f"update header exceeds {limits.max_header_bytes} bytes"
                ) from None
            window *= 4
        except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
                msgpack.StackError) as exc:
            raise CodecError(f"body is not a fedfaas update: {exc}") from None
    if not isinstance(header, dict):
        raise CodecError("body is not a fedfaas update: header is not a map")
    return header, unpacker.tell()


def _kind(value: Any) -> str:
    """A msgpack value's type as an error message names it (JSON's words, msgpack's for the rest)."""
    if isinstance(value, bytes | bytearray):
        return "binary"
    if isinstance(value, dict):
        return "a map"
    return "nil" if value is None else json_type(value)


def _is_int(value: Any) -> bool:
    # bool is an int subclass (True == 1) and 16.0 == 16: neither is a wire integer.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_meta(meta: Any) -> dict[str, Any]:
    # What the values mean (job, round, party, ...) is the ingest's to check; the
    # codec guarantees a map with string keys.
    if not isinstance(meta, dict):
        raise CodecError(f"header field 'meta' must be a map, got {_kind(meta)}")
    for key in meta:
        if not isinstance(key, str):
            raise CodecError(f"header field 'meta' must have string keys, got {_kind(key)}")
    return meta


def _check_envelope(header: dict[str, Any]) -> None:
    """The header's own fields: ``format``, ``version`` and ``pad`` (``tensors`` is checked per entry)."""
    fmt = header.get("format")
    if not isinstance(fmt, str):
        raise CodecError(f"header field 'format' must be the string {FORMAT!r}, got {_kind(fmt)}")
    if fmt != FORMAT:
        raise CodecError(f"header 'format' must be {FORMAT!r}")
    version = header.get("version")
    if not _is_int(version):
        raise CodecError(f"header field 'version' must be an integer, got {_kind(version)}")
    if version != VERSION:
        raise CodecError(f"unsupported format version {version!r}; expected {VERSION}")
    # Optional (hand-built bodies may leave it out); the unpacker bounds its length.
    if "pad" in header and not isinstance(header["pad"], bytes):
        raise CodecError(f"header field 'pad' must be binary, got {_kind(header['pad'])}")


def decode_header(buf: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS
                  ) -> tuple[dict[str, Any], list[TensorSpec], int]:
    """Validate a body and return its metadata, tensor specs and data-section offset.

    Every structural rule is checked here, before anything touches the data:
    format and version, names, dtypes, shapes, sizes against ``limits`` and
    against the bytes actually present.  Raises :class:`CodecError` (400) or
    :class:`PayloadTooLarge` (413).
    """
    view = memoryview(buf).cast("B") if not isinstance(buf, memoryview) else buf.cast("B")
    if len(view) < 8:
        raise CodecError("body is empty or too short to be a fedfaas update")
    header, pos = _read_header(view, limits)
    _check_envelope(header)
    meta = _check_meta(header.get("meta", {}))
    raw_specs = header.get("tensors")
    if not isinstance(raw_specs, list):
        raise CodecError(f"header field 'tensors' must be an array, got {_kind(raw_specs)}")
    if len(raw_specs) > limits.max_tensors:
        raise PayloadTooLarge(f"{len(raw_specs)} tensors exceed the limit of {limits.max_tensors}")
    if len(view) < pos + 5 or view[pos] != _BIN32:
        raise CodecError("body is truncated or malformed: data section missing")
    data_len = int.from_bytes(view[pos + 1 : pos + 5], "big")
    data_start = pos + 5
    if data_start + data_len != len(view):
        raise CodecError(
            f"data section declares {data_len} bytes but {len(view) - data_start} are present"
        )
    specs: list[TensorSpec] = []
    seen: set[str] = set()
    end = 0
    total = 0
    for i, raw in enumerate(raw_specs):
        if not (isinstance(raw, list) and len(raw) == 5):
            raise CodecError(f"tensor entry {i} must be [name, dtype, shape, offset, nbytes]")
        name, dtype, shape, offset, nbytes = raw
        if not isinstance(name, str):
            raise CodecError(f"tensor entry {i}: name must be a string, got {_kind(name)}")
        if not _NAME_RE.fullmatch(name):
            raise CodecError(f"tensor entry {i} has an invalid name")
        if name in seen:
            raise CodecError(f"tensor name {name!r} appears twice")
        seen.add(name)
        if not isinstance(dtype, str):
            raise CodecError(f"tensor {name!r}: dtype must be a string, got {_kind(dtype)}")
        if dtype not in DTYPES:
            raise CodecError(f"tensor {name!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list):
            raise CodecError(f"tensor {name!r}: shape must be an array of integers, got {_kind(shape)}")
        if len(shape) > limits.max_rank:
            raise CodecError(f"tensor {name!r} shape must be a list of rank <= {limits.max_rank}")
        for d in shape:
            if not _is_int(d):
                raise CodecError(f"tensor {name!r}: shape must hold integers, got {_kind(d)}")
            if d < 0:
                raise CodecError(f"tensor {name!r} shape must hold non-negative integers")
        # Python ints: a hostile shape cannot overflow the size check.
        expected = math.prod(shape) * DTYPES[dtype].itemsize
        if expected > limits.max_total_bytes:
            raise PayloadTooLarge(f"tensor {name!r} declares {expected} bytes, over the limit")
        # 16.0 == 16 in Python: a float nbytes would pass and break np.frombuffer later.
        if not _is_int(nbytes):
            raise CodecError(f"tensor {name!r}: nbytes must be an integer, got {_kind(nbytes)}")
        if nbytes != expected:
            raise CodecError(f"tensor {name!r}: nbytes {nbytes!r} does not match shape and dtype")
        if not _is_int(offset):
            raise CodecError(f"tensor {name!r}: offset must be an integer, got {_kind(offset)}")
        if offset < end or offset % ALIGN:
            raise CodecError(f"tensor {name!r} has an invalid offset {offset!r}")
        if offset + nbytes > data_len:
            raise CodecError(f"tensor {name!r} extends past the end of the body (truncated?)")
        total += nbytes
        if total > limits.max_total_bytes:
            raise PayloadTooLarge(f"update holds more than {limits.max_total_bytes} tensor bytes")
        end = offset + nbytes
        specs.append(TensorSpec(name, dtype, tuple(shape), offset, nbytes))
    return meta, specs, data_start


def decode(buf: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> ModelUpdate:
    """Decode a body into read-only numpy views over ``buf`` (zero-copy)."""
    meta, specs, data_start = decode_header(buf, limits)
    tensors: dict[str, np.ndarray] = {}
    for spec in specs:
        dt = DTYPES[spec.dtype]
        count = spec.nbytes // dt.itemsize
        arr = np.frombuffer(buf, dtype=dt, count=count, offset=data_start + spec.offset)
        tensors[spec.name] = arr.reshape(spec.shape)
    return ModelUpdate(tensors=tensors, meta=meta)


def count_nonfinite(tensors: Mapping[str, np.ndarray]) -> int:
    """Number of NaN or infinite values across the floating-point tensors."""
    bad = 0
    for arr in tensors.values():
        if arr.dtype.kind == "f" or arr.dtype == DTYPES["bfloat16"]:
            values = arr.astype(np.float32, copy=False).reshape(-1)
            # A sum is finite whenever every term is (barring overflow), and is 3x
            # cheaper than isfinite over the whole tensor; count exactly otherwise.
            if np.isfinite(np.add.reduce(values, dtype=np.float64)):
                continue
            bad += int(values.size - np.count_nonzero(np.isfinite(values)))
    return bad


# --- torch and list-of-arrays helpers -------------------------------------------------


def from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Numpy views of a torch ``state_dict`` (order and dtypes kept, bfloat16 included)."""
    import torch

    out: dict[str, np.ndarray] = {}
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            out[name] = t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        else:
            out[name] = t.numpy()
    return out


def to_state_dict(tensors: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Torch tensors (copies, writable) from decoded numpy arrays."""
    import torch

    out: dict[str, torch.Tensor] = {}
    for name, arr in tensors.items():
        if arr.dtype == DTYPES["bfloat16"]:
            out[name] = torch.from_numpy(np.array(arr.view(np.int16))).view(torch.bfloat16)
        else:
            out[name] = torch.from_numpy(np.array(arr))
    return out


def from_arrays(arrays: Sequence[np.ndarray] | Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Name a list of arrays ``"0"``, ``"1"``, ... in order."""
    return {str(i): np.asarray(a) for i, a in enumerate(arrays)}


def to_arrays(tensors: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The tensors as a list, in their stored order."""
    return list(tensors.values())
