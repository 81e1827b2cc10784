"""Flower records <-> fedfaas updates, and the keys both sides of the integration agree on.

Flower's ``ArrayRecord`` keys are free-form strings; fedfaas tensor names must
match ``^[A-Za-z0-9_.:\\-\\[\\]]{1,256}$`` without ``..`` (:mod:`fedfaas.codec`).
Keys that already fit are kept as they are, so FLStore's workloads see the
familiar ``state_dict`` names; the others are written ``b64:<urlsafe base64>``,
which maps back exactly.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict

from fedfaas.errors import BadRequest

#: ConfigRecord the strategy adds to train messages: where and as whom to upload.
CONFIG_KEY = "fedfaas"
#: ConfigRecord a client mod puts in its reply instead of the uploaded ArrayRecord.
REF_KEY = "fedfaas-ref"
#: Flower's default weighting metric, the FedAvg weight.
NUM_EXAMPLES_METRIC = "num-examples"
ESCAPE_PREFIX = "b64:"

_NAME_RE = re.compile(r"^(?!.*\.\.)[A-Za-z0-9_.:\-\[\]]{1,256}$")


def to_tensor_name(key: str) -> str:
    """The fedfaas tensor name of a Flower ``ArrayRecord`` key (reversible)."""
    if _NAME_RE.match(key) and not key.startswith(ESCAPE_PREFIX):
        return key
    encoded = ESCAPE_PREFIX + base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
    if len(encoded) > 256:
        raise BadRequest(f"ArrayRecord key {key[:40]!r}... is too long to store in fedfaas "
                         f"({len(key.encode())} bytes; at most 189 for keys outside "
                         "A-Za-z0-9_.:-[])")
    return encoded


def from_tensor_name(name: str) -> str:
    """The Flower key a fedfaas tensor name stands for (inverse of :func:`to_tensor_name`)."""
    if not name.startswith(ESCAPE_PREFIX):
        return name
    body = name[len(ESCAPE_PREFIX):]
    try:
        return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest(f"tensor name {name!r} is not a valid escaped Flower key") from None


def arrayrecord_to_tensors(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Named numpy arrays of an ``ArrayRecord``, in order, with fedfaas-safe names."""
    out: dict[str, np.ndarray] = {}
    for key, array in record.items():
        try:
            out[to_tensor_name(key)] = array.numpy()
        except TypeError as exc:  # a serialisation type other than numpy
            raise BadRequest(f"ArrayRecord entry {key!r} cannot be stored: {exc}") from None
    if not out:
        raise BadRequest("the ArrayRecord holds no arrays")
    return out


def tensors_to_arrayrecord(tensors: Mapping[str, np.ndarray]) -> ArrayRecord:
    """An ``ArrayRecord`` with the original Flower keys from fedfaas tensors."""
    return ArrayRecord({from_tensor_name(name): Array(np.asarray(value))
                        for name, value in tensors.items()})


def arrayrecord_nbytes(record: ArrayRecord) -> int:
    """Raw tensor bytes of an ``ArrayRecord`` (the model size ``M`` of a job spec)."""
    total = 0
    for array in record.values():
        itemsize = np.dtype(array.dtype).itemsize if array.dtype else 1
        total += int(np.prod(array.shape, dtype=np.int64)) * itemsize
    return total


def single_metrics(content: RecordDict) -> MetricRecord | None:
    """The reply's only ``MetricRecord`` (Flower strategies require exactly one)."""
    records = list(content.metric_records.values())
    return records[0] if len(records) == 1 else None


def num_examples(content: RecordDict, weighted_by_key: str) -> int:
    """The FedAvg weight of a reply as the integer fedfaas stores as ``num_examples``."""
    metrics = single_metrics(content)
    value: Any = None if metrics is None else metrics.get(weighted_by_key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise BadRequest(f"the reply has no non-negative {weighted_by_key!r} in a single "
                         "MetricRecord (the weight Flower's strategies use)")
    return round(value)


def metric_meta(content: RecordDict) -> dict[str, Any]:
    """The reply's metrics as plain values, stored with the update for FLStore's workloads."""
    metrics = single_metrics(content)
    if metrics is None:
        return {}
    return {k: (list(v) if isinstance(v, list) else v) for k, v in metrics.items()}
