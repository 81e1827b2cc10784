"""The per-party request rate limit (429 + Retry-After) and the body size limit (413), live."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedfaas import codec, keys
from fedfaas.devstack.localstack.stack import LocalStack
from fedfaas.store import ObjectStore, digest
from gateway.ratelimit import RateLimited, RateLimiter
from tests.conftest import Api
from tests.security.conftest import MAX_BODY, RATE_PER_MIN

pytestmark = pytest.mark.stack


Pool = tuple[str, Iterator[tuple[str, str]]]


def _job(api: Api, parties: int, admin: str | None = None) -> tuple[dict[str, Any], list[str]]:
    job = api.call("POST", "/v1/jobs", admin or api.admin_token, json={
        "model": {"name": "m", "size_bytes": 64}, "quorum": parties, "rounds": 2, "t_wait_s": 600}).json()
    tokens = [api.call("POST", f"/v1/jobs/{job['job_id']}/parties", job["enrollment_token"],
                       json={"party_id": f"p{i}"}).json()["token"] for i in range(parties)]
    assert api.call("POST", f"/v1/jobs/{job['job_id']}/rounds", admin or api.admin_token).status_code == 201
    return job, tokens


def _start_of_a_window(margin_s: float = 5.0) -> None:
    """Wait for a fresh one-minute window when the current one is about to end."""
    left = 60.0 - time.time() % 60.0
    if left < margin_s:
        time.sleep(left + 0.05)


def test_fixed_window_counts_per_subject(limited_stack: LocalStack) -> None:
    # Prepare
    client = redis.Redis.from_url(limited_stack.env()["FEDFAAS_REDIS_URL"], socket_timeout=5)
    limiter = RateLimiter(client, per_window=3, window_s=60)
    subject = f"party:{uuid.uuid4().hex}:p0"
    # Execute
    counts = [limiter.hit(subject, now=1200.5) for _ in range(3)]
    with pytest.raises(RateLimited) as over:
        limiter.hit(subject, now=1210.0)
    other = limiter.hit(subject + "x", now=1210.0)
    next_window = limiter.hit(subject, now=1260.0)
    # Assert
    assert counts == [1, 2, 3]
    assert over.value.status == 429 and over.value.retry_after_s == 50
    assert other == 1 and next_window == 1


def test_a_party_over_its_rate_gets_429_and_others_are_unaffected(limited_api: Api,
                                                                  limited_stack: LocalStack) -> None:
    # Prepare
    job, tokens = _job(limited_api, 2)
    jid = job["job_id"]
    status_url = f"/v1/jobs/{jid}/rounds/1"
    body = codec.encode({"w": np.ones(3, np.float32)}, {"num_examples": 1})
    _start_of_a_window()
    # Execute
    allowed = [limited_api.call("GET", status_url, tokens[0]).status_code for _ in range(RATE_PER_MIN)]
    over = limited_api.call("GET", status_url, tokens[0])
    upload = limited_api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", tokens[0], data=body)
    neighbour = limited_api.call("GET", status_url, tokens[1])
    operator = [limited_api.call("GET", status_url, limited_api.admin_token).status_code
                for _ in range(RATE_PER_MIN + 5)]
    # Assert
    assert allowed == [200] * RATE_PER_MIN
    for resp in (over, upload):
        assert resp.status_code == 429, resp.text
        assert resp.json()["error"] == "rate_limited"
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert neighbour.status_code == 200
    assert operator == [200] * (RATE_PER_MIN + 5)
    arrived = limited_api.call("GET", status_url, limited_api.admin_token).json()["arrived"]
    assert arrived == 0
    store = ObjectStore(limited_stack.settings())
    assert not list(store.list(keys.s3_party_updates("default", jid, 1, "p0")))


def test_a_tenant_admin_token_is_rate_limited(limited_api: Api) -> None:
    # Prepare
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    admin = limited_api.call("POST", "/v1/tenants", limited_api.admin_token,
                             json={"tenant": tenant}).json()["admin_token"]
    _start_of_a_window()
    # Execute
    answers = [limited_api.call("GET", f"/v1/jobs?tenant={tenant}", admin).status_code
               for _ in range(RATE_PER_MIN + 1)]
    # Assert
    assert answers == [200] * RATE_PER_MIN + [429]


@pytest.fixture(scope="module")
def round_parties(limited_api: Api) -> Iterator[Pool]:
    """An open round with many parties, handed out one per upload."""
    job, tokens = _job(limited_api, 40)
    yield job["job_id"], iter([(f"p{i}", t) for i, t in enumerate(tokens)])


def _chunks(body: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i:i + size]


def test_an_oversized_body_gets_413_json_and_nothing_is_stored(
        limited_api: Api, limited_stack: LocalStack, round_parties: Pool) -> None:
    # Prepare
    jid, parties = round_parties
    party, token = next(parties)
    body = codec.encode({"w": np.zeros(MAX_BODY // 4, np.float32)}, {"num_examples": 1})
    url = f"/v1/jobs/{jid}/rounds/1/updates"
    # Execute
    declared = limited_api.call("POST", url, token, data=body)
    chunked = limited_api.call("POST", url, token, data=_chunks(body))
    big_json = limited_api.call("POST", "/v1/jobs", limited_api.admin_token,
                                json={"model": {"name": "x" * MAX_BODY, "size_bytes": 1}})
    # Assert
    assert len(body) > MAX_BODY
    for resp in (declared, chunked, big_json):
        assert resp.status_code == 413, resp.text[:300]
        assert resp.headers["Content-Type"].startswith("application/json")
    store = ObjectStore(limited_stack.settings())
    assert not list(store.list(keys.s3_party_updates("default", jid, 1, party)))


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.integers(min_value=-40, max_value=40), chunked=st.booleans())
def test_bodies_around_the_limit_are_either_stored_whole_or_refused_with_413(
        limited_api: Api, limited_stack: LocalStack, round_parties: Pool,
        extra: int, chunked: bool) -> None:
    # Prepare: a valid update whose length is the limit plus a few float32s
    jid, parties = round_parties
    party, token = next(parties)
    header = len(codec.encode({"w": np.zeros(0, np.float32)}, {"num_examples": 1}))
    body = codec.encode({"w": np.ones((MAX_BODY - header) // 4 + extra, np.float32)}, {"num_examples": 1})
    # Execute
    resp = limited_api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", token,
                            data=_chunks(body) if chunked else body)
    # Assert
    store = ObjectStore(limited_stack.settings())
    key = keys.s3_update("default", jid, 1, party, digest(body))
    if len(body) > MAX_BODY:
        assert resp.status_code == 413, resp.text
        assert not list(store.list(keys.s3_party_updates("default", jid, 1, party)))
    else:
        assert resp.status_code == 201, resp.text
        assert store.get(key) == body
