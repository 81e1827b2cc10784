"""Malformed input the gateway once answered with a 5xx (or stored), now a 4xx JSON naming the problem.

Real HTTP against real Redis, S3 and gateway processes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import requests

from fedfaas import codec
from fedfaas.models import build_model, state_arrays
from tests.conftest import Api
from tests.security.conftest import MAX_BODY

pytestmark = pytest.mark.stack

JSON = {"Content-Type": "application/json"}
DEEP = "[" * 100_000 + "]" * 100_000


def _spec(**extra: object) -> dict[str, object]:
    return {"job_id": f"au-{uuid.uuid4().hex[:10]}", "model": {"name": "digits-mlp", "size_bytes": 64},
            "quorum": 1, "rounds": 2, **extra}


def _assert_4xx(resp: requests.Response, status: int, *words: str) -> None:
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    assert isinstance(body.get("error"), str)
    for word in words:
        assert word in body["message"], (word, body["message"])


@pytest.mark.parametrize("raw", [
    '"hyperparameters": {"lr": NaN}',
    '"hyperparameters": {"lr": -Infinity}',
    '"algorithm": {"name": "fedprox", "params": {"mu": Infinity}}',
    '"t_wait_s": NaN',
])
def test_non_finite_numbers_in_a_job_spec_get_a_400_and_nothing_is_stored(api: Api, raw: str) -> None:
    # Prepare: Python's json (and so a hand-written body) may carry NaN/Infinity tokens.
    spec = _spec()
    text = json.dumps(spec)[:-1] + ", " + raw + "}"
    # Execute
    resp = api.call("POST", "/v1/jobs", api.admin_token, data=text, headers=JSON)
    # Assert
    _assert_4xx(resp, 400, "finite")
    assert api.call("GET", f"/v1/jobs/{spec['job_id']}", api.admin_token).status_code == 404


@pytest.mark.parametrize("algorithm", [
    {"name": "no-such-fusion"},
    {"name": "fedprox", "params": {"mu": -1}},
    {"name": "fedavg", "params": {"name": "fedprox"}},
])
def test_a_job_whose_fusion_algorithm_cannot_run_is_refused_at_creation(
        api: Api, algorithm: dict[str, object]) -> None:
    # Prepare
    spec = _spec(algorithm=algorithm)
    # Execute
    resp = api.call("POST", "/v1/jobs", api.admin_token, json=spec)
    # Assert: refused now, instead of every round of the job hanging in "aggregating".
    _assert_4xx(resp, 400)
    assert api.call("GET", f"/v1/jobs/{spec['job_id']}", api.admin_token).status_code == 404


def test_json_nested_too_deeply_gets_a_400(api: Api) -> None:
    # Execute
    resp = api.call("POST", "/v1/jobs", api.admin_token, data=DEEP, headers=JSON)
    # Assert
    _assert_4xx(resp, 400, "nested")


def _job_with_open_round(api: Api, **extra: object) -> str:
    job = api.call("POST", "/v1/jobs", api.admin_token, json=_spec(**extra)).json()
    jid = job["job_id"]
    assert api.call("POST", f"/v1/jobs/{jid}/parties", job["enrollment_token"],
                    json={"party_id": "alice"}).status_code == 201
    model = codec.encode(state_arrays(build_model("digits-mlp", seed=0)), {})
    assert api.call("PUT", f"/v1/jobs/{jid}/model", api.admin_token, data=model).status_code == 201
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 201
    return jid


@pytest.mark.parametrize(("raw", "words"), [
    ('{"x": "not numbers"}', ("'x'", "numbers")),
    ('{"x": [[1, 2], [3]]}', ("'x'", "rectangular")),
    ('{"x": [[1, NaN]]}', ("'x'", "NaN")),
    ('{"x": [[1, 1e39]]}', ("'x'", "float32")),  # finite in JSON, inf in the workload
    ('{"x_val": [[1, 2]], "y_val": {"a": 1}}', ("'y_val'",)),
])
def test_a_query_with_malformed_arrays_gets_a_400(api: Api, raw: str, words: tuple[str, ...]) -> None:
    # Prepare
    jid = _job_with_open_round(api)
    body = '{"workload": "inference", "round": 1, "arrays": ' + raw + "}"
    # Execute
    resp = api.call("POST", f"/v1/jobs/{jid}/queries", api.admin_token, data=body, headers=JSON)
    # Assert: refused at the gateway, never a 5xx from a function that choked on it.
    _assert_4xx(resp, 400, *words)


def test_a_query_on_a_job_with_deeply_nested_model_kwargs_gets_a_400(api: Api) -> None:
    # Prepare
    jid = _job_with_open_round(api, hyperparameters={"model_kwargs": DEEP})
    # Execute
    resp = api.call("POST", f"/v1/jobs/{jid}/queries", api.admin_token,
                    json={"workload": "inference", "round": 1, "params": {"inputs": [[0.0] * 64]}})
    # Assert
    _assert_4xx(resp, 400, "model_kwargs")


def test_an_oversized_chunked_validation_set_gets_a_413(limited_api: Api) -> None:
    # Prepare
    job = limited_api.call("POST", "/v1/jobs", limited_api.admin_token, json=_spec()).json()
    rows = MAX_BODY // (64 * 4) + 16
    body = codec.encode({"x_val": np.ones((rows, 64), np.float32), "y_val": np.zeros(rows, np.float32)}, {})
    assert len(body) > MAX_BODY

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start:start + 64 * 1024]

    # Execute: no Content-Length, so the server only sees the size while reading.
    resp = limited_api.call("PUT", f"/v1/jobs/{job['job_id']}/validation", limited_api.admin_token,
                            data=chunks())
    # Assert
    _assert_4xx(resp, 413, "limit")
