"""DataKey validation, string form and ordering."""

from __future__ import annotations

import pytest

from cache_engine.keys import DataKey
from fedfaas.errors import BadRequest


def test_string_form_round_trips_and_starts_with_tenant() -> None:
    # Prepare
    keys = [
        DataKey.update("acme", "job-1", 7, "client-3"),
        DataKey.model("acme", "job-1", 7),
        DataKey.meta("acme", "job-1", 7),
        DataKey.meta("acme", "job-1", 7, "c-9"),
    ]

    # Execute
    texts = [k.to_str() for k in keys]

    # Assert
    assert texts == [
        "acme:job-1:update:7:client-3",
        "acme:job-1:model:7",
        "acme:job-1:meta:7",
        "acme:job-1:meta:7:c-9",
    ]
    assert [DataKey.from_str(t) for t in texts] == keys
    assert DataKey.from_str(texts[0].encode()) == keys[0]


@pytest.mark.parametrize("bad", ["", "a:b", "a/b", "..", "a..b", "-lead", "x" * 64, "sp ace", 5])
def test_bad_ids_are_rejected(bad: object) -> None:
    # Execute / Assert
    with pytest.raises(BadRequest):
        DataKey.update("acme", "job", 0, bad)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        DataKey.model(bad, "job", 0)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        DataKey.meta("acme", bad, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("rnd", [-1, True, 1.0, "3", 10**9])
def test_bad_rounds_are_rejected(rnd: object) -> None:
    with pytest.raises(BadRequest):
        DataKey.model("acme", "job", rnd)  # type: ignore[arg-type]


def test_kind_and_client_must_agree() -> None:
    with pytest.raises(BadRequest):
        DataKey("acme", "job", 0, None, "update")
    with pytest.raises(BadRequest):
        DataKey("acme", "job", 0, "c1", "model")
    with pytest.raises(BadRequest):
        DataKey("acme", "job", 0, None, "weights")


@pytest.mark.parametrize("text", ["acme:job:update", "acme:job:model:x", "a:b:c:1:d:e", "acme:job:weights:1"])
def test_malformed_strings_are_rejected(text: str) -> None:
    with pytest.raises(BadRequest):
        DataKey.from_str(text)


def test_keys_sort_with_round_level_entries_first() -> None:
    # Prepare
    a = DataKey.meta("t", "j", 1, "c1")
    b = DataKey.meta("t", "j", 1)
    c = DataKey.meta("t", "j", 0, "c2")

    # Execute / Assert
    assert sorted([a, b, c]) == [c, b, a]
