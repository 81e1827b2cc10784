"""The OpenAPI document is generated: a model or a route that changes changes the document."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Blueprint, Flask, Response
from pydantic import Field, create_model

from gateway import schemas
from gateway.app import register_routes
from gateway.openapi import ADMINS, Body, build_spec, ok, operation, paths
from gateway.registry import RoundRecord
from gateway.schemas import Round, TenantCreate, UpdateRecord


def _fresh_spec() -> dict[str, Any]:
    return build_spec.__wrapped__()  # type: ignore[attr-defined]  # past the per-process cache


def test_components_are_the_models_own_schemas() -> None:
    # Execute
    components = build_spec()["components"]["schemas"]
    # Assert
    for model in schemas.MODELS:
        own = model.model_json_schema(ref_template="#/components/schemas/{model}")
        own.pop("$defs", None)
        assert components[model.__name__] == own, model.__name__


def test_a_field_added_to_a_response_model_shows_up_in_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the round view as it would be with one more field
    changed = create_model("Round", __base__=Round,
                           t_upd_s=(float | None, Field(None, description="Estimated upload time.")))
    monkeypatch.setattr(schemas, "MODELS", tuple(changed if m is Round else m for m in schemas.MODELS))
    # Execute
    before = build_spec()["components"]["schemas"]["Round"]
    after = _fresh_spec()["components"]["schemas"]["Round"]
    # Assert
    assert "t_upd_s" not in before["properties"]
    assert after["properties"]["t_upd_s"]["description"] == "Estimated upload time."
    assert {k: v for k, v in after["properties"].items() if k != "t_upd_s"} == before["properties"]


def test_a_new_route_is_described_from_its_rule_docstring_and_declaration() -> None:
    # Prepare
    extra = Blueprint("extra", __name__)

    @extra.post("/v1/jobs/<job_id>/notes")
    @operation("jobs", {201: ok("Noted.", UpdateRecord)}, (400,), roles=ADMINS,
               body=Body("The note.", TenantCreate))
    def add_note(job_id: str) -> Response:
        """Add a note to a job.

        Notes are kept with the job.
        """
        return Response()

    app = Flask("test", static_folder=None)
    register_routes(app)
    app.register_blueprint(extra)
    # Execute
    op = paths(app)["/v1/jobs/{job_id}/notes"]["post"]
    # Assert
    assert (op["operationId"], op["summary"], op["description"]) == (
        "extra.add_note", "Add a note to a job", "Notes are kept with the job.")
    assert op["x-roles"] == ["root", "tenant-admin"] and "security" not in op
    assert op["parameters"][0] == {"$ref": "#/components/parameters/JobId"}
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TenantCreate"}
    assert op["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UpdateRecord"}
    assert {"400", "401", "429", "default"} <= set(op["responses"])


def test_a_route_without_a_declaration_fails_the_build_naming_it() -> None:
    # Prepare
    app = Flask("test", static_folder=None)

    @app.get("/undeclared")
    def undeclared() -> str:
        """Nobody declared me."""
        return ""

    # Execute / Assert
    with pytest.raises(LookupError, match="'undeclared'"):
        paths(app)


def test_a_round_view_sends_the_fields_it_was_given_and_explicit_nulls() -> None:
    # Prepare
    record = RoundRecord(job_id="j", round=1, state="open", started_at=1.5, deadline_at=9.5,
                         expected=["a", "b"], quorum=2)
    # Execute
    view = record.public(arrived=0)
    view.your_update = None
    sent = view.model_dump(mode="json")
    # Assert
    assert sent == {"job_id": "j", "round": 1, "state": "open", "started_at": 1.5, "deadline_at": 9.5,
                    "expected": 2, "quorum": 2, "reason": "", "closed_at": None,
                    "model_available": False, "arrived": 0, "your_update": None}


def test_an_answer_the_model_does_not_declare_is_refused() -> None:
    # Execute / Assert: a field added to an answer without its model cannot reach a client
    with pytest.raises(ValueError, match="undeclared"):
        Round.model_validate({"job_id": "j", "round": 1, "state": "open", "started_at": 1.0,
                              "deadline_at": 2.0, "expected": 1, "quorum": 1, "model_available": False,
                              "undeclared": 1})

