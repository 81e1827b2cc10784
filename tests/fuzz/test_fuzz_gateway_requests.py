"""Property tests of paths, query parameters and headers of the live gateway: never a 5xx."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import Api
from tests.fuzz.fuzzkit import LIVE, assert_clean, fresh_job

pytestmark = [pytest.mark.stack, pytest.mark.timeout(240)]

ROUTES = [
    ("GET", "/v1/jobs/{job}"), ("GET", "/v1/jobs/{job}/model"), ("GET", "/v1/jobs/{job}/parties"),
    ("GET", "/v1/jobs/{job}/parties/{party}"), ("PATCH", "/v1/jobs/{job}/parties/{party}"),
    ("GET", "/v1/jobs/{job}/rounds/{round}"), ("GET", "/v1/jobs/{job}/rounds/{round}/model"),
    ("POST", "/v1/jobs/{job}/rounds/{round}/updates"),
    ("GET", "/v1/jobs/{job}/rounds/{round}/updates/{party}"),
    ("POST", "/v1/jobs/{job}/rounds"), ("PUT", "/v1/jobs/{job}/model"), ("POST", "/v1/jobs/{job}/parties"),
    ("POST", "/v1/jobs/{job}/queries"), ("GET", "/v1/queries/{party}"), ("GET", "/v1/jobs"),
]
hostile_segments = st.sampled_from([
    "..", "../..", "%2e%2e", "..%2F..%2Fetc", "a:b", "p0:claim", "*", "ff:token:x", "A", "-a", "a" * 64,
    "0", "-1", "1e3", "99999999999999999999", " ", "%00", "p0/../p1", "\\", "\u00e9", "\U0001f600",
]) | st.text(min_size=1, max_size=70)


@pytest.fixture(scope="module")
def job(api: Api) -> tuple[dict[str, Any], list[str]]:
    """A job with two parties and round 1 open."""
    return fresh_job(api, 2)


@LIVE
@given(route=st.sampled_from(ROUTES), job_id=hostile_segments | st.just("JOB"),
       party=hostile_segments | st.just("p0"), rnd=hostile_segments | st.just("1"),
       who=st.sampled_from(["admin", "party", "enroll", "none"]))
def test_hostile_path_segments(api: Api, job: tuple[dict[str, Any], list[str]], route: tuple[str, str],
                               job_id: str, party: str, rnd: str, who: str) -> None:
    # Prepare
    info, tokens = job
    token = {"admin": api.admin_token, "party": tokens[0], "enroll": info["enrollment_token"],
             "none": None}[who]
    method, template = route
    path = template.format(job=quote(info["job_id"] if job_id == "JOB" else job_id, safe=""),
                           party=quote(party, safe=""), round=quote(rnd, safe=""))
    # Execute
    resp = api.call(method, path, token, data=b"{}" if method != "GET" else None)
    # Assert: no update body is valid here, so a write can never succeed
    assert_clean(resp, 200, 201, 202)
    if method == "POST" and template.endswith("/updates"):
        assert resp.status_code >= 400


query_values = st.text(max_size=30) | st.sampled_from(["-1", "0", "1", "1e9", "99999999999", "true", ""])


@LIVE
@given(name=st.sampled_from(["round", "tenant", "wait", "x"]) | st.text(max_size=10), value=query_values,
       path=st.sampled_from(["/v1/jobs/JOB/model", "/v1/jobs", "/v1/jobs/JOB/queries", "/v1/workloads"]))
def test_hostile_query_parameters(api: Api, job: tuple[dict[str, Any], list[str]], name: str, value: str,
                                  path: str) -> None:
    # Prepare
    info, tokens = job
    method = "POST" if path.endswith("queries") else "GET"
    # Execute
    token = tokens[0] if "model" in path else api.admin_token
    resp = api.call(method, path.replace("JOB", info["job_id"]), token, params={name: value},
                    json={"workload": "nope"} if method == "POST" else None)
    # Assert
    assert_clean(resp, 200)


# HTTP clients refuse header values with control characters or leading blanks.
latin1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
                 max_size=80).map(str.lstrip)
odd_bearers = st.sampled_from(["Bearer", "Bearer ", "bearer  x", "Basic YTpi", "Bearer " + "x" * 600])


@LIVE
@given(authorization=latin1 | odd_bearers, content_type=latin1,
       extra=st.dictionaries(st.from_regex(r"X-[A-Za-z]{1,10}", fullmatch=True), latin1, max_size=3))
def test_hostile_headers(api: Api, job: tuple[dict[str, Any], list[str]], authorization: str,
                         content_type: str, extra: dict[str, str]) -> None:
    # Prepare
    info, _ = job
    headers = {"Authorization": authorization, "Content-Type": content_type, **extra}
    # Execute
    upload = api.call("POST", f"/v1/jobs/{info['job_id']}/rounds/1/updates", None, headers=headers, data=b"x")
    status = api.call("GET", f"/v1/jobs/{info['job_id']}/rounds/1", None, headers=headers)
    # Assert
    assert upload.status_code == 401 and status.status_code == 401
    assert_clean(upload)
    assert_clean(status)
