"""Property tests of update uploads on the live gateway: refused with a 4xx and nothing stored,
or stored byte for byte; NaN/Inf refused by default and flagged when the job says so; replays
and updates claiming another party are refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedfaas import codec, keys
from fedfaas.devstack.localstack.stack import LocalStack
from fedfaas.store import ObjectStore, digest
from tests.conftest import Api
from tests.fuzz.fuzzkit import LIVE, assert_clean, fresh_job

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

Pool = tuple[str, Iterator[tuple[str, str]]]


def _pool(api: Api, parties: int, **spec: Any) -> Pool:
    job, tokens = fresh_job(api, parties, **spec)
    return job["job_id"], iter([(f"p{i}", t) for i, t in enumerate(tokens)])


@pytest.fixture(scope="module")
def pool(api: Api) -> Pool:
    """An open round with plenty of parties, one per example (an accepted update uses one up)."""
    return _pool(api, 160)


@pytest.fixture(scope="module")
def flag_pool(api: Api) -> Pool:
    """The same for a job whose spec says NaN/Inf updates are accepted and flagged."""
    return _pool(api, 40, nonfinite="flag")


def _meta(job_id: str, party: str, **extra: Any) -> dict[str, Any]:
    return {"job": job_id, "round": 1, "party": party, "num_examples": 4, **extra}


def _nothing_stored(api: Api, store: ObjectStore, job_id: str, party: str) -> None:
    resp = api.call("GET", f"/v1/jobs/{job_id}/rounds/1/updates/{party}", api.admin_token)
    assert resp.status_code == 404, resp.text[:200]
    assert not list(store.list(keys.s3_party_updates("default", job_id, 1, party)))


def _stored_whole(api: Api, store: ObjectStore, resp: Any, body: bytes) -> dict[str, Any]:
    record: dict[str, Any] = resp.json()
    assert record["digest"] == digest(body) and record["size"] == len(body)
    assert store.get(record["key"]) == body
    return record


@LIVE
@given(seed=st.integers(0, 2**16), kind=st.sampled_from(["truncate", "flip", "insert", "delete"]),
       where=st.floats(0, 1), junk=st.binary(min_size=1, max_size=12))
def test_mutated_updates_are_refused_or_stored_whole(api: Api, api_stack: LocalStack, pool: Pool, seed: int,
                                                      kind: str, where: float, junk: bytes) -> None:
    # Prepare
    job_id, parties = pool
    party, token = next(parties)
    rng = np.random.default_rng(seed)
    body = bytearray(codec.encode({"w": rng.standard_normal((3, 5)).astype(np.float32),
                                   "n": np.arange(4, dtype=np.int64)}, _meta(job_id, party)))
    at = int(where * (len(body) - 1))
    if kind == "truncate":
        mutated = bytes(body[:at])
    elif kind == "flip":
        body[at] ^= junk[0] or 1
        mutated = bytes(body)
    elif kind == "insert":
        mutated = bytes(body[:at]) + junk + bytes(body[at:])
    else:
        mutated = bytes(body[:at]) + bytes(body[at + len(junk):])
    store = ObjectStore(api_stack.settings())
    # Execute
    resp = api.call("POST", f"/v1/jobs/{job_id}/rounds/1/updates", token, data=mutated)
    # Assert
    assert_clean(resp, 201)
    if resp.status_code == 201:
        _stored_whole(api, store, resp, mutated)
    else:
        _nothing_stored(api, store, job_id, party)


def _raw(job_id: str, party: str, entries: list[list[Any]], data_len: int, **meta: Any) -> bytes:
    header = {"format": codec.FORMAT, "version": codec.VERSION, "meta": _meta(job_id, party, **meta),
              "tensors": entries, "pad": b""}
    head = msgpack.packb(header, use_bin_type=True)
    return head + bytes([0xC6]) + data_len.to_bytes(4, "big") + bytes(data_len)


def _crafted(kind: str, job_id: str, party: str, value: Any) -> tuple[bytes, int, str]:
    """A hostile update body, the status it must get, and the error code (or "" for any)."""
    w = np.ones(4, np.float32)
    if kind == "nonfinite":
        w[int(value) % 4] = [np.nan, np.inf, -np.inf][int(value) % 3]
        return codec.encode({"w": w}, _meta(job_id, party)), 400, "nonfinite"
    if kind == "dtype":
        return _raw(job_id, party, [["w", value, [4], 0, 16]], 64), 400, "bad_update_body"
    if kind == "shape":
        return _raw(job_id, party, [["w", "float32", [2**20, int(value) + 2**12], 0, 0]], 64), 413, ""
    if kind == "name":
        return _raw(job_id, party, [[value, "float32", [4], 0, 16]], 64), 400, "bad_update_body"
    if kind == "party":
        return codec.encode({"w": w}, _meta(job_id, "p0" if party != "p0" else "p1")), 400, ""
    if kind == "job":
        return codec.encode({"w": w}, _meta(value, party)), 400, ""
    if kind == "round":
        return codec.encode({"w": w}, _meta(job_id, party, round=value)), 400, ""
    if kind == "num_examples":
        return codec.encode({"w": w}, _meta(job_id, party, num_examples=value)), 400, ""
    return codec.encode({"w": w}, _meta(job_id, party, train_time_s=value)), 400, ""


crafted_cases = st.one_of(
    st.tuples(st.just("nonfinite"), st.integers(0, 11)),
    st.tuples(st.just("dtype"), st.sampled_from(["float128", "object", "<U8", "complex64", "F4", "", "i8"])),
    st.tuples(st.just("shape"), st.integers(0, 2**20)),
    st.tuples(st.just("name"), st.sampled_from(["../../etc/passwd", "a/b", "..", "a..b", "", "w\x00",
                                                  "ff:token:x\n", "x" * 257, "%2e%2e"])),
    st.tuples(st.just("party"), st.none()),
    st.tuples(st.just("job"), st.sampled_from(["other-job", "../x", "", "JOB:1"])),
    st.tuples(st.just("round"), st.sampled_from([0, 2, -1, "1", None, 10**12])),
    st.tuples(st.just("num_examples"), st.sampled_from([-1, "4", 4.5, True, 10**13, None, [4]])),
    st.tuples(st.just("train_time_s"), st.sampled_from([-1.0, float("nan"), float("inf"), "1", True])),
)


@LIVE
@given(case=crafted_cases)
def test_crafted_hostile_updates_get_the_right_4xx_and_nothing_is_stored(
        api: Api, api_stack: LocalStack, pool: Pool, case: tuple[str, Any]) -> None:
    # Prepare
    job_id, parties = pool
    party, token = next(parties)
    body, status, code = _crafted(case[0], job_id, party, case[1])
    # Execute
    resp = api.call("POST", f"/v1/jobs/{job_id}/rounds/1/updates", token, data=body)
    # Assert
    assert resp.status_code == status, (case, resp.status_code, resp.text[:300])
    assert_clean(resp)
    assert not code or resp.json()["error"] == code
    _nothing_stored(api, ObjectStore(api_stack.settings()), job_id, party)


@settings(LIVE, max_examples=25)
@given(size=st.integers(1, 40), bad=st.sets(st.integers(0, 39), min_size=1, max_size=5),
       dtype=st.sampled_from(["float32", "float16", "bfloat16", "float64"]))
def test_nonfinite_updates_are_stored_and_flagged_when_the_job_says_flag(
        api: Api, api_stack: LocalStack, flag_pool: Pool, size: int, bad: set[int], dtype: str) -> None:
    # Prepare
    job_id, parties = flag_pool
    party, token = next(parties)
    w = np.linspace(-1, 1, size).astype(codec.DTYPES[dtype])
    positions = sorted(i for i in bad if i < size)
    for n, i in enumerate(positions):
        w[i] = [np.nan, np.inf, -np.inf][n % 3]
    body = codec.encode({"w": w, "steps": np.array([3], np.int64)}, _meta(job_id, party))
    # Execute
    resp = api.call("POST", f"/v1/jobs/{job_id}/rounds/1/updates", token, data=body)
    # Assert
    assert resp.status_code == 201, resp.text
    record = _stored_whole(api, ObjectStore(api_stack.settings()), resp, body)
    assert record["nonfinite"] == len(positions)


def test_replayed_update_of_a_previous_round_is_refused(api: Api, api_stack: LocalStack) -> None:
    # Prepare: round 1 fails at t_wait (quorum 2, one update), round 2 opens
    job, tokens = fresh_job(api, 2, t_wait_s=1.0)
    job_id = job["job_id"]
    old = codec.encode({"w": np.full(3, 2.0, np.float32)}, _meta(job_id, "p0"))
    assert api.call("POST", f"/v1/jobs/{job_id}/rounds/1/updates", tokens[0], data=old).status_code == 201
    deadline = time.monotonic() + 30
    while api.call("GET", f"/v1/jobs/{job_id}/rounds/1", api.admin_token).json()["state"] != "failed":
        assert time.monotonic() < deadline, "round 1 did not fail at t_wait"
        time.sleep(0.1)
    assert api.call("POST", f"/v1/jobs/{job_id}/rounds", api.admin_token).status_code == 201
    fresh = codec.encode({"w": np.full(3, 2.0, np.float32)}, {**_meta(job_id, "p0"), "round": 2})
    # Execute
    replay = api.call("POST", f"/v1/jobs/{job_id}/rounds/2/updates", tokens[0], data=old)
    stolen = api.call("POST", f"/v1/jobs/{job_id}/rounds/2/updates", tokens[1], data=old)
    accepted = api.call("POST", f"/v1/jobs/{job_id}/rounds/2/updates", tokens[0], data=fresh)
    # Assert
    assert replay.status_code == 400 and "round" in replay.json()["message"]
    assert stolen.status_code == 400
    assert accepted.status_code == 201
    status = api.call("GET", f"/v1/jobs/{job_id}/rounds/2", api.admin_token).json()
    assert status["arrived_parties"] == ["p0"]
    assert ObjectStore(api_stack.settings()).get(accepted.json()["key"]) == fresh
