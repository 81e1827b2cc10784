"""The OpenAPI description against the gateway: same routes, valid document, no 5xx under fuzzing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import jsonschema_rs
import numpy as np
import pytest
from schemathesis.specs.openapi.definitions import OPENAPI_31

from fedfaas import codec
from fedfaas.devstack.localstack.stack import LocalStack
from fedfaas.spec import ID_RE
from gateway.app import create_app
from gateway.openapi import build_spec
from tests.conftest import Api

pytestmark = pytest.mark.stack

IGNORED_METHODS = {"HEAD", "OPTIONS"}
# Bounded fuzzing: coverage-phase cases (boundaries, wrong types, missing fields) plus this
# many generated valid and invalid cases per operation, derandomised (deterministic mode).
EXAMPLES = 10
# What a party's token may call; the party run sticks to these to stay within its rate limit.
PARTY_OPERATIONS = ("v1.get_job", "v1.get_latest_model", "v1.get_round_model", "v1.get_party",
                    "v1.update_party", "v1.get_round", "v1.post_update", "v1.get_update")


def _flask_routes(app: Any) -> set[tuple[str, str, str]]:
    """(OpenAPI path template, method, endpoint) of every Flask rule."""
    out = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in set(rule.methods or ()) - IGNORED_METHODS:
            out.add((path, method.lower(), rule.endpoint))
    return out


def _described_routes(spec: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(path, method, op["operationId"])
            for path, item in spec["paths"].items() for method, op in item.items()}


def _path_params(spec: dict[str, Any], op: dict[str, Any]) -> set[str]:
    names = set()
    for param in op.get("parameters", []):
        if "$ref" in param:
            param = spec["components"]["parameters"][param["$ref"].rsplit("/", 1)[-1]]
        if param["in"] == "path":
            names.add(param["name"])
    return names


def test_every_route_is_described_and_every_description_has_a_route(api_stack: LocalStack) -> None:
    # Prepare
    app = create_app(api_stack.settings(), start_background=False)
    spec = build_spec()
    # Execute
    routes, described = _flask_routes(app), _described_routes(spec)
    # Assert
    assert routes - described == set(), "routes missing from the OpenAPI description"
    assert described - routes == set(), "described operations the gateway does not serve"
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert _path_params(spec, op) == set(re.findall(r"{([^}]+)}", path)), (method, path)


def test_served_document_is_valid_openapi_31_and_needs_no_token(api: Api) -> None:
    # Execute
    resp = api.call("GET", "/openapi.json")
    # Assert
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("application/json")
    spec = resp.json()
    assert spec == build_spec()
    errors = [e.message for e in jsonschema_rs.validator_for(OPENAPI_31).iter_errors(spec)]
    assert errors == []
    job_spec = spec["components"]["schemas"]["JobSpec"]
    assert "model" in job_spec["required"] and job_spec["additionalProperties"] is False
    assert job_spec["properties"]["job_id"]["anyOf"][0]["pattern"] == ID_RE.pattern


def _component(spec: dict[str, Any], name: str) -> Any:
    """A validator for one component schema, its references resolved within the document."""
    root = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    return jsonschema_rs.validator_for(root)


def test_answers_match_their_described_schemas(api: Api) -> None:
    # Prepare
    spec = build_spec()
    ids = _fixture_job(api)
    jid = ids["job_id"]
    # Execute
    answers = {
        "Job": api.call("GET", f"/v1/jobs/{jid}", api.admin_token),
        "Round": api.call("GET", f"/v1/jobs/{jid}/rounds/1", ids["party_token"]),
        "PartyList": api.call("GET", f"/v1/jobs/{jid}/parties", api.admin_token),
        "Party": api.call("GET", f"/v1/jobs/{jid}/parties/alice", ids["party_token"]),
        "Error": api.call("GET", f"/v1/jobs/{jid}/rounds/9", api.admin_token),
        "Workloads": api.call("GET", "/v1/workloads"),
        "Estimates": api.call("GET", f"/v1/jobs/{jid}/estimates", api.admin_token),
    }
    # Assert
    for name, resp in answers.items():
        errors = [e.message for e in _component(spec, name).iter_errors(resp.json())]
        assert errors == [], (name, resp.text[:300])
    assert answers["Error"].status_code == 404
    assert answers["Round"].json()["your_update"]["party"] == "alice"


def _fixture_job(api: Api) -> dict[str, str]:
    """A job with an initial model, two parties, round 1 open and alice's update stored."""
    jid = f"fz-{uuid.uuid4().hex[:8]}"
    job = api.call("POST", "/v1/jobs", api.admin_token, json={
        "job_id": jid, "model": {"name": "m", "size_bytes": 64}, "t_wait_s": 3600, "quorum": 2}).json()
    tokens = {}
    for party in ("alice", "bob"):
        resp = api.call("POST", f"/v1/jobs/{jid}/parties", job["enrollment_token"], json={"party_id": party})
        tokens[party] = resp.json()["token"]
    model = codec.encode({"w": np.zeros(4, np.float32)}, {})
    assert api.call("PUT", f"/v1/jobs/{jid}/model", api.admin_token, data=model).status_code == 201
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 201
    body = codec.encode({"w": np.ones(4, np.float32)}, {"num_examples": 3})
    assert api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", tokens["alice"], data=body).status_code == 201
    return {"job_id": jid, "party_token": tokens["alice"]}


def _config(api: Api, token: str, pinned: dict[str, Any]) -> str:
    """schemathesis.toml: the token, real path ids, bounded and derandomised generation."""
    lines = [
        f'base-url = "{api.base}"', "workers = 1",
        f'headers = {{ Authorization = "Bearer {token}" }}',
        "[generation]", 'mode = "all"', f"max-examples = {EXAMPLES}", "deterministic = true",
        'database = "none"',
        "[phases]", "examples.enabled = false", "coverage.enabled = true", "fuzzing.enabled = true",
        "stateful.enabled = false",
        "[parameters]", *(f'"path.{name}" = {json.dumps(value)}' for name, value in pinned.items()),
        # A query needs functions to run on and ``api_stack`` deploys none: its designed answer
        # is then 503 with Retry-After.
        "[[operations]]", 'include-operation-id = "queries.submit_query"',
        'checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]',
    ]
    return "\n".join(lines) + "\n"


def _fuzz(api: Api, tmp_path: Path, token: str, pinned: dict[str, Any],
          operations: tuple[str, ...] = ()) -> None:
    """Run schemathesis against the live gateway; fail on any 5xx, with its report."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(api, token, pinned))
    argv = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run",
            f"{api.base}/openapi.json", "--checks", "not_a_server_error", "--request-timeout", "60"]
    argv += [arg for op in operations for arg in ("--include-operation-id", op)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "generated" in done.stdout and " 0 generated" not in done.stdout


@pytest.fixture(scope="module")
def fuzz_job(api: Api) -> dict[str, str]:
    """Real ids for the fuzzer."""
    return _fixture_job(api)


def test_fuzzing_real_ids_as_admin_finds_no_server_error(api: Api, tmp_path: Path,
                                                         fuzz_job: dict[str, str]) -> None:
    # Prepare / Execute / Assert: every operation, path ids pinned to the fixture job's
    _fuzz(api, tmp_path, api.admin_token, {"job_id": fuzz_job["job_id"], "rnd": 1, "party_id": "alice"})


def test_fuzzing_real_ids_as_party_finds_no_server_error(api: Api, tmp_path: Path,
                                                         fuzz_job: dict[str, str]) -> None:
    # Prepare / Execute / Assert: what a party may call, with alice's token
    _fuzz(api, tmp_path, fuzz_job["party_token"],
          {"job_id": fuzz_job["job_id"], "rnd": 1, "party_id": "alice"}, PARTY_OPERATIONS)
