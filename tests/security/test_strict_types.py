"""Strict types: no bool for an integer, no string for a number, no float for an integer.

In Python ``True == 1`` and ``False == 0``, so a check written as ``value == 1``
or ``isinstance(value, int)`` lets a boolean through.  The wire header is
checked with direct codec calls; every JSON body over real HTTP against real
Redis, S3 and gateway processes, each refusal a 400 naming the field.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgpack
import numpy as np
import pytest
import requests

from fedfaas import codec
from fedfaas.errors import CodecError
from tests.conftest import Api

# --- wire header (codec) ---------------------------------------------------------------


def _forge(header: dict[str, Any], data: bytes = bytes(16)) -> bytes:
    return msgpack.packb(header, use_bin_type=True) + b"\xc6" + len(data).to_bytes(4, "big") + data


def _header(**override: Any) -> dict[str, Any]:
    """A valid header of one float32[4] tensor at offset 0, with fields replaced."""
    header: dict[str, Any] = {"format": codec.FORMAT, "version": codec.VERSION, "meta": {},
                              "tensors": [["w", "float32", [4], 0, 16]], "pad": b""}
    header.update(override)
    return header


def _tensor(**override: Any) -> list[Any]:
    entry = {"name": "w", "dtype": "float32", "shape": [4], "offset": 0, "nbytes": 16}
    entry.update(override)
    return [entry["name"], entry["dtype"], entry["shape"], entry["offset"], entry["nbytes"]]


def test_the_valid_forged_header_decodes() -> None:
    # Prepare
    with_pad, without_pad = _forge(_header()), _forge({k: v for k, v in _header().items() if k != "pad"})
    # Execute
    decoded = [codec.decode(with_pad), codec.decode(without_pad)]
    # Assert: the refusals below are the bad field's doing, nothing else's
    assert all(d.tensors["w"].shape == (4,) for d in decoded)


@pytest.mark.parametrize("header, words", [
    (_header(version=True), ("'version'", "boolean")),
    (_header(version=1.0), ("'version'", "float")),
    (_header(version="1"), ("'version'", "string")),
    (_header(format=codec.FORMAT.encode()), ("'format'", "binary")),
    (_header(format=True), ("'format'", "boolean")),
    (_header(pad="    "), ("'pad'", "string")),
    (_header(pad=0), ("'pad'", "integer")),
    (_header(pad=False), ("'pad'", "boolean")),
    (_header(meta=[]), ("'meta'", "array")),
    (_header(meta={b"party": "p1"}), ("'meta'", "string keys")),
    (_header(tensors={"w": 1}), ("'tensors'", "map")),
])
def test_header_fields_of_the_wrong_type_are_refused(header: dict[str, Any], words: tuple[str, ...]) -> None:
    # Execute
    with pytest.raises(CodecError) as refused:
        codec.decode(_forge(header))
    # Assert
    for word in words:
        assert word in str(refused.value), (word, str(refused.value))


@pytest.mark.parametrize("entry, words", [
    (_tensor(offset=False), ("offset", "boolean")),
    (_tensor(offset=0.0), ("offset", "float")),
    (_tensor(offset="0"), ("offset", "string")),
    (_tensor(nbytes=16.0), ("nbytes", "float")),
    (_tensor(shape=[True]), ("shape", "boolean")),
    (_tensor(shape=[True, True, True, True], nbytes=4), ("shape", "boolean")),
    (_tensor(shape=[4.0]), ("shape", "float")),
    (_tensor(shape=["4"]), ("shape", "string")),
    (_tensor(shape=4), ("shape", "integer")),
    (_tensor(shape=[[4]]), ("shape", "array")),
    (_tensor(dtype=True), ("dtype", "boolean")),
    (_tensor(dtype=b"float32"), ("dtype", "binary")),
    (_tensor(dtype=4), ("dtype", "integer")),
    (_tensor(name=b"w"), ("name", "binary")),
    (_tensor(name=0), ("name", "integer")),
])
def test_tensor_entries_with_a_field_of_the_wrong_type_are_refused(
        entry: list[Any], words: tuple[str, ...]) -> None:
    # Execute
    with pytest.raises(CodecError) as refused:
        codec.decode(_forge(_header(tensors=[entry])))
    # Assert
    for word in words:
        assert word in str(refused.value), (word, str(refused.value))


def test_a_one_byte_tensor_cannot_declare_true_bytes() -> None:
    # Prepare: True == 1 == the right nbytes of a uint8[1] tensor at offset False == 0
    tricks = [_tensor(dtype="uint8", shape=[1], nbytes=True), _tensor(dtype="uint8", shape=[1], nbytes=1,
                                                                        offset=False)]
    # Execute / Assert
    for entry in tricks:
        with pytest.raises(CodecError):
            codec.decode(_forge(_header(tensors=[entry]), bytes(64)))


# --- JSON bodies over HTTP -------------------------------------------------------------

STACK = pytest.mark.stack


def _assert_400(resp: requests.Response, *words: str, code: str = "bad_request") -> None:
    assert resp.status_code == 400, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/json")
    body = resp.json()
    assert body["error"] == code, body
    for word in words:
        assert word in body["message"], (word, body["message"])


def _spec(**extra: Any) -> dict[str, Any]:
    return {"job_id": f"st-{uuid.uuid4().hex[:10]}", "model": {"name": "digits-mlp", "size_bytes": 64},
            "quorum": 1, "rounds": 2, **extra}


@STACK
@pytest.mark.parametrize("extra, words", [
    ({"rounds": "5"}, ("rounds: expected an integer, got a string",)),
    ({"rounds": True}, ("rounds: expected an integer, got a boolean",)),
    ({"rounds": 5.0}, ("rounds: expected an integer, got a float",)),
    ({"quorum": True}, ("quorum: expected an integer, got a boolean",)),
    ({"quorum": "1"}, ("quorum: expected an integer, got a string",)),
    ({"t_wait_s": True}, ("t_wait_s: expected a number, got a boolean",)),
    ({"t_wait_s": "30"}, ("t_wait_s: expected a number, got a string",)),
    ({"model": {"name": "m", "size_bytes": True}}, ("model.size_bytes: expected an integer, got a boolean",)),
    ({"model": {"name": "m", "size_bytes": "64"}}, ("model.size_bytes: expected an integer, got a string",)),
    ({"model": {"name": True, "size_bytes": 64}}, ("model.name: expected a string, got a boolean",)),
    ({"sync": {"unit": "minibatch", "every": True}}, ("sync.every: expected an integer",)),
    ({"strategy": {"name": "batched-serverless", "batch_size": True}},
     ("strategy.batch_size: expected an integer, got a boolean",)),
    ({"strategy": {"name": "jit", "n_agg": "2"}}, ("strategy.n_agg: expected an integer, got a string",)),
    ({"strategy": {"name": "jit", "latency_target": True}}, ("strategy.latency_target", "boolean")),
    ({"strategy": {"name": "jit", "latency_target": "30"}}, ("strategy.latency_target", "string")),
    ({"nonfinite": True}, ("nonfinite", "boolean")),
    ({"name": 7}, ("name: expected a string, got an integer",)),
    ({"job_id": True}, ("job_id: expected a string, got a boolean",)),
    ({"algorithm": {"name": "fedprox", "params": {"mu": True}}}, ("algorithm", "mu")),
    ({"algorithm": {"name": "krum", "params": {"num_malicious": 1.0}}}, ("algorithm", "num_malicious")),
    ({"algorithm": {"name": "fedprox", "params": {"mu": "0.1"}}}, ("algorithm", "mu")),
])
def test_a_job_spec_with_a_field_of_the_wrong_type_gets_a_400_and_no_job(
        api: Api, extra: dict[str, Any], words: tuple[str, ...]) -> None:
    # Prepare
    spec = _spec(**extra)
    job_id = spec["job_id"] if isinstance(spec["job_id"], str) else None
    # Execute
    resp = api.call("POST", "/v1/jobs", api.admin_token, json=spec)
    # Assert
    _assert_400(resp, *words)
    if job_id is not None:
        assert api.call("GET", f"/v1/jobs/{job_id}", api.admin_token).status_code == 404


@STACK
def test_legitimate_numbers_still_work(api: Api) -> None:
    # Prepare: an integer where a float is meant, and a float latency target
    spec = _spec(t_wait_s=30, strategy={"name": "jit", "latency_target": 5},
                 algorithm={"name": "fedprox", "params": {"mu": 1}}, hyperparameters={"lr": 0.1, "bn": True})
    # Execute
    resp = api.call("POST", "/v1/jobs", api.admin_token, json=spec)
    # Assert
    assert resp.status_code == 201, resp.text
    stored = resp.json()["spec"]
    assert stored["t_wait_s"] == 30.0 and stored["rounds"] == 2 and stored["quorum"] == 1
    assert stored["strategy"]["latency_target"] == 5.0
    party = api.call("POST", f"/v1/jobs/{spec['job_id']}/parties", resp.json()["enrollment_token"],
                     json={"party_id": "p1", "epoch_time_s": 3, "dataset_size": 100,
                           "hardware": {"cpus": 2, "gpus": 0}, "bandwidth_up_bps": 1000000})
    assert party.status_code == 201, party.text


@pytest.fixture(scope="module")
def job(api: Api) -> dict[str, Any]:
    """A job with one registered party ``p1`` (its token under ``party_token``) and round 1 open."""
    created = api.call("POST", "/v1/jobs", api.admin_token, json=_spec()).json()
    reg = api.call("POST", f"/v1/jobs/{created['job_id']}/parties", created["enrollment_token"],
                   json={"party_id": "p1", "epoch_time_s": 2.0, "dataset_size": 10})
    assert reg.status_code == 201, reg.text
    assert api.call("POST", f"/v1/jobs/{created['job_id']}/rounds", api.admin_token).status_code == 201
    return {**created, "party_token": reg.json()["token"]}


@STACK
@pytest.mark.parametrize("profile, words", [
    ({"dataset_size": True}, ("dataset_size: expected an integer, got a boolean",)),
    ({"dataset_size": "100"}, ("dataset_size: expected an integer, got a string",)),
    ({"dataset_size": 100.0}, ("dataset_size: expected an integer, got a float",)),
    ({"batch_size": True}, ("batch_size: expected an integer, got a boolean",)),
    ({"epoch_time_s": True}, ("epoch_time_s: expected a number, got a boolean",)),
    ({"minibatch_time_s": "0.5"}, ("minibatch_time_s: expected a number, got a string",)),
    ({"bandwidth_up_bps": "1e6"}, ("bandwidth_up_bps: expected a number, got a string",)),
    ({"hardware": {"gpus": True}}, ("hardware.gpus: expected an integer, got a boolean",)),
    ({"hardware": {"cpus": "4"}}, ("hardware.cpus: expected a number, got a string",)),
    ({"hardware": {"memory_gb": False}}, ("hardware.memory_gb: expected a number, got a boolean",)),
    ({"mode": True}, ("mode", "boolean")),
    ({"party_id": 5}, ("party_id: expected a string, got an integer",)),
])
def test_a_party_profile_with_a_field_of_the_wrong_type_gets_a_400(
        api: Api, job: dict[str, Any], profile: dict[str, Any], words: tuple[str, ...]) -> None:
    # Prepare
    before = api.call("GET", f"/v1/jobs/{job['job_id']}/parties", api.admin_token).json()["parties"]
    # Execute
    resp = api.call("POST", f"/v1/jobs/{job['job_id']}/parties", job["enrollment_token"], json=profile)
    # Assert
    _assert_400(resp, *words)
    after = api.call("GET", f"/v1/jobs/{job['job_id']}/parties", api.admin_token).json()["parties"]
    assert after == before


@STACK
@pytest.mark.parametrize("changes, words", [
    ({"epoch_time_s": True}, ("epoch_time_s: expected a number, got a boolean",)),
    ({"dataset_size": "5"}, ("dataset_size: expected an integer, got a string",)),
    ({"hardware": {"gpus": 1.0}}, ("hardware.gpus: expected an integer, got a float",)),
])
def test_a_party_report_with_a_field_of_the_wrong_type_gets_a_400_and_changes_nothing(
        api: Api, job: dict[str, Any], changes: dict[str, Any], words: tuple[str, ...]) -> None:
    # Prepare
    url = f"/v1/jobs/{job['job_id']}/parties/p1"
    before = api.call("GET", url, job["party_token"]).json()
    # Execute
    resp = api.call("PATCH", url, job["party_token"], json=changes)
    # Assert
    _assert_400(resp, *words)
    assert api.call("GET", url, job["party_token"]).json() == before


@STACK
@pytest.mark.parametrize("body, words", [
    ({"parties": True}, ("parties: expected an array of party ids, got a boolean",)),
    ({"parties": "p1"}, ("parties: expected an array of party ids, got a string",)),
    ({"parties": [1]}, ("parties.0: expected a party id (a string), got an integer",)),
    ({"parties": [True]}, ("parties.0", "boolean")),
])
def test_a_round_start_with_a_field_of_the_wrong_type_gets_a_400(
        api: Api, body: dict[str, Any], words: tuple[str, ...]) -> None:
    # Prepare: a job whose round 1 could open
    created = api.call("POST", "/v1/jobs", api.admin_token, json=_spec()).json()
    jid = created["job_id"]
    assert api.call("POST", f"/v1/jobs/{jid}/parties", created["enrollment_token"],
                    json={"party_id": "p1"}).status_code == 201
    # Execute
    resp = api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token, json=body)
    # Assert
    _assert_400(resp, *words)
    assert api.call("GET", f"/v1/jobs/{jid}", api.admin_token).json()["current_round"] == 0


@STACK
@pytest.mark.parametrize("body, words", [
    ({"tenant": True}, ("tenant: expected a string", "boolean")),
    ({"tenant": 12}, ("tenant: expected a string", "integer")),
])
def test_a_tenant_body_with_a_field_of_the_wrong_type_gets_a_400(
        api: Api, body: dict[str, Any], words: tuple[str, ...]) -> None:
    # Execute
    resp = api.call("POST", "/v1/tenants", api.admin_token, json=body)
    # Assert
    _assert_400(resp, *words)


@STACK
@pytest.mark.parametrize("body, words", [
    ({"workload": "clustering", "round": 1, "params": {"k": True}}, ("'k'", "number", "True")),
    ({"workload": "clustering", "round": 1, "params": {"k": 2.5}}, ("'k'", "integer", "2.5")),
    ({"workload": "clustering", "round": 1, "params": {"k": "2"}}, ("'k'", "number")),
    ({"workload": "scheduling", "round": 1, "params": {"w_speed": True}}, ("'w_speed'", "number")),
    ({"workload": "scheduling", "round": 1, "params": {"w_speed": "0.5"}}, ("'w_speed'", "number")),
    ({"workload": "clustering", "round": 1, "params": {"seed": False}}, ("'seed'", "number")),
    ({"workload": "clustering", "round": True}, ("'round'",)),
    ({"workload": "inference", "round": 1, "arrays": {"x": [[1.0, True]]}}, ("'x'", "only numbers")),
    ({"workload": "inference", "round": 1, "arrays": {"x": [True, False]}}, ("'x'", "only numbers")),
    ({"workload": "inference", "round": 1, "arrays": {"x": [["1.0", "2.0"]]}}, ("'x'", "only numbers")),
])
def test_a_query_with_a_field_of_the_wrong_type_gets_a_400(
        api: Api, job: dict[str, Any], body: dict[str, Any], words: tuple[str, ...]) -> None:
    # Execute
    resp = api.call("POST", f"/v1/jobs/{job['job_id']}/queries", api.admin_token, json=body)
    # Assert
    _assert_400(resp, *words)


@STACK
@pytest.mark.parametrize("entry", [
    _tensor(offset=False), _tensor(shape=[True, True, True, True], nbytes=4), _tensor(dtype=True),
])
def test_an_initial_model_with_a_bool_in_its_header_gets_a_400_and_is_not_stored(
        api: Api, entry: list[Any]) -> None:
    # Prepare
    created = api.call("POST", "/v1/jobs", api.admin_token, json=_spec()).json()
    jid = created["job_id"]
    body = _forge(_header(tensors=[entry]))
    # Execute
    resp = api.call("PUT", f"/v1/jobs/{jid}/model", api.admin_token, data=body)
    # Assert
    _assert_400(resp, code="bad_update_body")
    assert api.call("GET", f"/v1/jobs/{jid}/model", api.admin_token).status_code == 404


@STACK
def test_an_initial_model_with_version_true_gets_a_400(api: Api) -> None:
    # Prepare
    created = api.call("POST", "/v1/jobs", api.admin_token, json=_spec()).json()
    body = _forge(_header(version=True))
    # Execute
    resp = api.call("PUT", f"/v1/jobs/{created['job_id']}/model", api.admin_token, data=body)
    # Assert
    _assert_400(resp, "'version'", "boolean", code="bad_update_body")


@STACK
def test_an_update_with_version_true_gets_a_400(api: Api, job: dict[str, Any]) -> None:
    # Prepare: a real update whose header says version true
    real = codec.encode({"w": np.ones(4, np.float32)}, {"num_examples": 3})
    header, _specs, start = codec.decode_header(real)
    head = msgpack.packb(_header(meta=header, version=True), use_bin_type=True)
    body = head + real[start - 5:]
    # Execute
    resp = api.call("POST", f"/v1/jobs/{job['job_id']}/rounds/1/updates", job["party_token"], data=body)
    # Assert
    _assert_400(resp, "'version'", "boolean", code="bad_update_body")
    status = api.call("GET", f"/v1/jobs/{job['job_id']}/rounds/1", job["party_token"]).json()
    assert status["your_update"] is None
