"""The OpenAPI description against the gateway: same routes, valid document, no 5xx under fuzzing."""

from __future__ import annotations

import re
import uuid
from typing import Any

import jsonschema_rs
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.definitions import OPENAPI_31

from fedfaas import codec
from gateway.app import create_app
from gateway.openapi import build_spec
from tests.conftest import Api

pytestmark = pytest.mark.stack

IGNORED_METHODS = {"HEAD", "OPTIONS"}
EXAMPLES_PER_RUN = 60
QUERIES = "POST /v1/jobs/{job_id}/queries"
STATUSES: dict[str, list[int]] = {}


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


def test_every_route_is_described_and_every_description_has_a_route(api_stack) -> None:  # type: ignore[no-untyped-def]
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
    }
    # Assert
    for name, resp in answers.items():
        errors = [e.message for e in _component(spec, name).iter_errors(resp.json())]
        assert errors == [], (name, resp.text[:300])
    assert answers["Error"].status_code == 404
    assert answers["Round"].json()["your_update"]["party"] == "alice"


def _fixture_job(api: Api) -> dict[str, str]:
    """A job with two parties, round 1 open and one stored update: real ids for the fuzzer."""
    jid = f"fz-{uuid.uuid4().hex[:8]}"
    job = api.call("POST", "/v1/jobs", api.admin_token, json={
        "job_id": jid, "model": {"name": "m", "size_bytes": 64}, "t_wait_s": 3600, "quorum": 2}).json()
    tokens = {}
    for party in ("alice", "bob"):
        resp = api.call("POST", f"/v1/jobs/{jid}/parties", job["enrollment_token"], json={"party_id": party})
        tokens[party] = resp.json()["token"]
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 201
    body = codec.encode({"w": np.ones(4, np.float32)}, {"num_examples": 3})
    assert api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", tokens["alice"], data=body).status_code == 201
    return {"job_id": jid, "party_token": tokens["alice"]}


def _functions_absent(operation: Any, response: Any) -> bool:
    """A query's designed answer when no function can run it: ``api_stack`` deploys none."""
    return (operation.label == QUERIES and response.status_code == 503
            and "Retry-After" in response.headers and response.json().get("error") == "unavailable")


def _fuzz(operation: Any, base_url: str, token: str, pinned: dict[str, Any]) -> None:
    """Run positive and negative cases of one operation; fail on any 5xx."""
    params = {p.name for p in operation.path_parameters}
    fixed = {k: v for k, v in pinned.items() if k in params} or None
    cases = st.one_of(*(operation.as_strategy(mode, path_parameters=fixed)
                        for mode in (schemathesis.GenerationMode.POSITIVE,
                                     schemathesis.GenerationMode.NEGATIVE)))

    @given(case=cases)
    @settings(max_examples=EXAMPLES_PER_RUN, derandomize=False, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        STATUSES.setdefault(operation.label, []).append(response.status_code)
        if not _functions_absent(operation, response):
            case.validate_response(response, checks=[not_a_server_error])

    run()


def test_fuzzing_every_operation_finds_no_server_error(api: Api) -> None:
    # Prepare
    ids = _fixture_job(api)
    pinned = {"job_id": ids["job_id"], "rnd": 1, "party_id": "alice"}
    schema = schemathesis.openapi.from_url(api.base + "/openapi.json", config=schemathesis.Config())
    operations = [result.ok() for result in schema.get_all_operations()]
    # Execute / Assert: anything generated, then real ids with the admin's and a party's token
    for operation in operations:
        _fuzz(operation, api.base, api.admin_token, {})
        _fuzz(operation, api.base, api.admin_token, pinned)
        _fuzz(operation, api.base, ids["party_token"], pinned)
    import collections
    for k, v in STATUSES.items():
        print(k, collections.Counter(v))
    print([o.label for o in operations])
    assert len(operations) == len(_described_routes(build_spec()))
