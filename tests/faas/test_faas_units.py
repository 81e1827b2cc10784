"""Pure parts of the runtime: scale policy, demand window, router options, handler overlay."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fedfaas.devstack.faas.instance import build_overlay
from fedfaas.devstack.faas.options import RouterOptions
from fedfaas.devstack.faas.replica import DemandWindow, ScalePolicy
from fedfaas.openfaas.stackfile import FunctionSpec


def _spec(**kwargs: object) -> FunctionSpec:
    return FunctionSpec(name="f", lang="python3-http", handler=Path("/tmp/f"), image="f", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec_args", "floor", "max_replicas", "zero"),
    [
        ({}, 0, 5, True),
        ({"scale_min": 1}, 1, 5, False),
        ({"scale_min": 0, "scale_zero": True}, 0, 5, True),
        ({"scale_zero": False}, 1, 5, False),
        ({"scale_min": 2, "scale_zero": True}, 2, 5, False),
        ({"scale_max": 10}, 0, 5, True),
        ({"scale_max": 2, "scale_min": 2}, 2, 2, False),
    ],
)
def test_scale_policy_resolves_labels_against_defaults(
    spec_args: dict[str, object], floor: int, max_replicas: int, zero: bool
) -> None:
    # Prepare
    options = RouterOptions(scale_zero=True, replica_cap=5)
    # Execute
    policy = ScalePolicy.for_function(_spec(**spec_args), options)
    # Assert
    assert (policy.floor, policy.max_replicas, policy.scale_zero) == (floor, max_replicas, zero)


def test_scale_policy_takes_timeouts_and_slots_from_the_function() -> None:
    # Prepare
    options = RouterOptions(
        exec_timeout_s=10.0, upstream_timeout_s=60.0, idle_s=300.0, instance_concurrency=4
    )
    # Execute
    own = ScalePolicy.for_function(
        _spec(exec_timeout_s=120.0, max_inflight=1, scale_zero_duration_s=5.0), options
    )
    default = ScalePolicy.for_function(_spec(), options)
    # Assert
    assert (own.exec_timeout_s, own.capacity, own.idle_s) == (60.0, 1, 5.0)
    assert (default.exec_timeout_s, default.capacity, default.idle_s) == (10.0, 4, 300.0)


def test_demand_window_keeps_the_peak_until_it_slides_out() -> None:
    # Prepare
    window = DemandWindow(window_s=8.0, buckets=8)
    # Execute
    window.note(100.0, 3)
    window.note(100.5, 1)
    peak_inside = window.peak()
    window.note(106.0, 0)
    peak_later = window.peak()
    window.note(110.0, 0)
    peak_after = window.peak()
    # Assert
    assert (peak_inside, peak_later, peak_after) == (3, 3, 0)


def test_router_options_round_trip_through_flags() -> None:
    # Prepare
    options = RouterOptions(scale_zero=False, idle_s=1.5, replica_cap=7, namespace="fl")
    parser = argparse.ArgumentParser()
    RouterOptions.add_arguments(parser)
    # Execute
    parsed = RouterOptions.from_namespace(parser.parse_args(options.to_args()))
    # Assert
    assert parsed == options


def test_router_options_refuse_non_positive_values() -> None:
    # Execute / Assert
    with pytest.raises(ValueError, match="idle_s"):
        RouterOptions(idle_s=0)


def test_overlay_lays_out_the_function_package(tmp_path: Path) -> None:
    # Prepare
    handler = tmp_path / "src"
    handler.mkdir()
    (handler / "handler.py").write_text("def handle(e, c): return None\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    app = tmp_path / "app"
    # Execute
    build_overlay(handler, [shared], app)
    # Assert
    function = app / "function"
    assert sorted(p.name for p in function.iterdir()) == ["__init__.py", "handler.py", "shared"]
    assert (function / "handler.py").resolve() == (handler / "handler.py").resolve()
    assert (function / "shared").resolve() == shared.resolve()
    assert not (handler / "__init__.py").exists()  # the user's folder is never written to


@pytest.mark.parametrize(("status", "own", "expected"), [
    (200, False, "ok"),
    (401, True, "token_refused"),
    (403, False, "token_refused"),
    (500, True, "failed"),
    (507, True, "out_of_memory"),
    (503, True, "own_unavailable"),
    (400, True, "refused"),
    (404, True, "refused"),
    (429, False, "busy"),
    (503, False, "busy"),
    (504, False, "busy"),
    (500, False, "unreachable"),  # OpenFaaS' proxy: "Can't reach service"
    (502, False, "unreachable"),
    (404, False, "platform_refused"),
])
def test_function_answers_are_told_apart_by_the_functions_mark(status: int, own: bool,
                                                               expected: str) -> None:
    import requests

    from fedfaas.config import FUNCTION_ERROR_HEADER
    from fedfaas.openfaas.client import classify_answer

    resp = requests.Response()
    resp.status_code = status
    if own:
        resp.headers[FUNCTION_ERROR_HEADER] = "1"
    assert classify_answer(resp).value == expected
