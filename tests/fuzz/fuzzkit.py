"""Shared pieces of the gateway property tests: bounds, JSON strategies, the "clean answer" check."""

from __future__ import annotations

import uuid
from typing import Any

import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.conftest import Api

#: Every live property test: bounded, reproducible, no per-example deadline.
LIVE = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10,
)


def assert_clean(resp: requests.Response, *ok: int) -> None:
    """A 2xx listed in ``ok``, or a 4xx with a JSON error body; never a 5xx."""
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    if resp.status_code >= 400:
        assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.text[:200]
        body = resp.json()
        assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    else:
        assert resp.status_code in ok, (resp.status_code, resp.text[:500])


def fresh_job(api: Api, parties: int, **spec: Any) -> tuple[dict[str, Any], list[str]]:
    """A job with ``parties`` parties ``p0..`` and round 1 open."""
    body = {"job_id": f"fz-{uuid.uuid4().hex[:10]}", "model": {"name": "m", "size_bytes": 64},
            "quorum": parties, "rounds": 3, "t_wait_s": 600, **spec}
    resp = api.call("POST", "/v1/jobs", api.admin_token, json=body)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    tokens = []
    for i in range(parties):
        reg = api.call("POST", f"/v1/jobs/{job['job_id']}/parties", job["enrollment_token"],
                       json={"party_id": f"p{i}"})
        assert reg.status_code == 201, reg.text
        tokens.append(reg.json()["token"])
    assert api.call("POST", f"/v1/jobs/{job['job_id']}/rounds", api.admin_token).status_code == 201
    return job, tokens
