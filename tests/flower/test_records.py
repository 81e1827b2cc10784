"""Flower records <-> fedfaas tensors, the key escaping, and the client mod's fallback."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg, FedMedian, FedProx, FedTrimmedAvg
from hypothesis import given, settings
from hypothesis import strategies as st

from fedfaas import codec
from fedfaas.client import NO_RETRY
from fedfaas.errors import BadRequest
from fedfaas.flower import (
    CONFIG_KEY,
    REF_KEY,
    arrayrecord_to_tensors,
    fedfaas_algorithm,
    from_tensor_name,
    make_upload_mod,
    tensors_to_arrayrecord,
    to_tensor_name,
)


@pytest.mark.parametrize("key", ["fc.weight", "0", "layer[1]:bias", "b64:looks-escaped",
                                 "a..b", "with space", "ü/é", "", "x" * 189])
def test_flower_keys_map_to_codec_names_and_back(key: str) -> None:
    # Execute
    name = to_tensor_name(key)
    # Assert
    assert codec._NAME_RE.match(name)
    assert from_tensor_name(name) == key


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_short_key_round_trips(key: str) -> None:
    name = to_tensor_name(key)
    assert codec._NAME_RE.match(name) and from_tensor_name(name) == key


def test_plain_keys_are_kept_as_they_are() -> None:
    assert to_tensor_name("conv1.weight") == "conv1.weight"


def test_too_long_odd_keys_are_refused() -> None:
    with pytest.raises(BadRequest, match="too long"):
        to_tensor_name("é" * 100)


def test_arrayrecord_round_trips_with_dtypes_and_order() -> None:
    # Prepare
    record = ArrayRecord({"w b": Array(np.arange(6, dtype=np.float32).reshape(2, 3)),
                          "n": Array(np.array(7, np.int64)), "h": Array(np.ones(2, np.float16))})
    # Execute
    tensors = arrayrecord_to_tensors(record)
    body = codec.encode(tensors, {"num_examples": 1})
    back = tensors_to_arrayrecord(codec.decode(body).tensors)
    # Assert
    assert list(back) == ["w b", "n", "h"]
    for key in record:
        original, restored = record[key].numpy(), back[key].numpy()
        assert restored.dtype == original.dtype and restored.shape == original.shape
        np.testing.assert_array_equal(restored, original)


def test_flower_strategies_map_to_fedfaas_algorithms() -> None:
    assert fedfaas_algorithm(FedAvg()) == "fedavg"
    assert fedfaas_algorithm(FedProx()) == "fedprox"
    assert fedfaas_algorithm(FedMedian()) == "median"
    assert fedfaas_algorithm(FedTrimmedAvg()) == "trimmed-mean"


def test_mod_sends_the_update_through_flower_when_fedfaas_is_unreachable() -> None:
    # Prepare: a gateway address nobody listens on
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    mod = make_upload_mod(retry=NO_RETRY)
    content = RecordDict({"arrays": ArrayRecord([np.zeros(2, np.float32)]),
                          CONFIG_KEY: ConfigRecord({"url": url, "job": "j", "round": 1,
                                                    "party": "p", "token": "t"})})
    msg = Message(content, dst_node_id=5, message_type="train")
    context = Context(run_id=1, node_id=5, node_config={}, state=RecordDict(), run_config={})
    seen: list[RecordDict] = []

    def train(m: Message, c: Context) -> Message:
        seen.append(m.content)
        reply = RecordDict({"arrays": ArrayRecord([np.ones(2, np.float32)]),
                            "metrics": MetricRecord({"num-examples": 4})})
        return Message(reply, reply_to=m)

    # Execute
    reply = mod(msg, context, train)
    # Assert: the app never saw the credentials, and the update still travels
    assert CONFIG_KEY not in seen[0]
    assert REF_KEY not in reply.content
    np.testing.assert_array_equal(reply.content.array_records["arrays"]["0"].numpy(), [1, 1])
