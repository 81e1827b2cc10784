"""The platform figures behind JIT's "eager" latency target: labels, cold start, measured steps."""

from __future__ import annotations

import pytest
import redis

from fedfaas.errors import Unavailable
from gateway import platform
from gateway.platform import PlatformFigures, eager_step_of_fold, keep_alive_from_labels

ZERO = {"com.openfaas.scale.zero": "true", "com.openfaas.scale.min": "0"}


@pytest.mark.parametrize(("labels", "expected"), [
    ({**ZERO, "com.openfaas.scale.zero-duration": "1m30s"}, 90.0),
    ({**ZERO, "com.openfaas.scale.zero-duration": "3s"}, 3.0),
    # No scale to zero (Community Edition ignores the labels; none given here).
    ({}, None),
    ({"com.openfaas.scale.zero": "false", "com.openfaas.scale.zero-duration": "3s"}, None),
    # A minimum above zero keeps an instance up.
    ({**ZERO, "com.openfaas.scale.min": "1", "com.openfaas.scale.zero-duration": "3s"}, None),
    # Scale to zero after the platform's own default, which the labels do not tell.
    (ZERO, None),
    ({**ZERO, "com.openfaas.scale.zero-duration": "soon"}, None),
])
def test_keep_alive_from_labels(labels: dict[str, str], expected: float | None) -> None:
    assert keep_alive_from_labels(labels) == expected


def test_steps_replace_the_formula_once_measured_and_a_cold_one_barely_counts(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    monkeypatch.delenv("FEDFAAS_AGG_KEEP_ALIVE_S", raising=False)
    monkeypatch.setenv("FEDFAAS_AGG_COLD_START_S", "0.7")
    figures = PlatformFigures(redis_client, lambda: {**ZERO, "com.openfaas.scale.zero-duration": "30s"},
                              namespace="t:jit")
    # Execute / Assert: two steps are not enough; a cold 2 s step among four barely
    # moves the lower quartile (0.10 + 0.75 x 0.01).
    figures.record_step(5000, 0.10)
    figures.record_step(5000, 0.12)
    assert figures.current(5000).eager_step_s is None
    figures.record_step(5000, 2.0)
    figures.record_step(5000, 0.11)
    got = figures.current(5000)
    assert got.eager_step_s == pytest.approx(0.1075)
    assert got.keep_alive_s == 30.0 and got.cold_start_s == 0.7
    # Per model size; the list keeps the latest STEPS_KEPT.
    assert figures.current(999).eager_step_s is None
    for _ in range(platform.STEPS_KEPT):
        figures.record_step(5000, 0.5)
    assert redis_client.llen("t:jit:eager_step:5000") == platform.STEPS_KEPT
    assert figures.current(5000).eager_step_s == 0.5


def test_an_unreachable_platform_keeps_the_last_labels_and_the_env_overrides(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    calls = {"n": 0}

    def labels() -> dict[str, str]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise Unavailable("GET /system/function/aggregate failed: connection refused")
        return {**ZERO, "com.openfaas.scale.zero-duration": "45s"}

    monkeypatch.delenv("FEDFAAS_AGG_KEEP_ALIVE_S", raising=False)
    monkeypatch.delenv("FEDFAAS_AGG_COLD_START_S", raising=False)
    figures = PlatformFigures(redis_client, labels, namespace="t:jit")
    # Execute / Assert
    assert figures.current(10).keep_alive_s == 45.0
    assert figures.current(10).keep_alive_s == 45.0 and calls["n"] == 1  # cached
    figures._labels_at -= platform.LABELS_TTL_S  # the cache expired
    assert figures.current(10).keep_alive_s == 45.0 and calls["n"] == 2  # failed: last known
    assert figures.current(10).cold_start_s == platform.DEFAULT_COLD_START_S
    # The environment wins over the labels (Community Edition ignores them), read at start.
    for value, expected in (("never", None), ("12", 12.0), ("1m30s", 90.0)):
        monkeypatch.setenv("FEDFAAS_AGG_KEEP_ALIVE_S", value)
        assert PlatformFigures(redis_client, labels, namespace="t:jit").current(10).keep_alive_s \
            == expected


@pytest.mark.parametrize("name", ["FEDFAAS_AGG_KEEP_ALIVE_S", "FEDFAAS_AGG_COLD_START_S"])
def test_a_malformed_platform_setting_stops_the_gateway_at_start(
        redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    for bad in ("soon", "nan", "inf", "-1"):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValueError, match=name):
            PlatformFigures(redis_client, dict, namespace="t:jit")


def test_eager_step_of_fold() -> None:
    # One update: the fold is the step.
    assert eager_step_of_fold(0.3, {"folded": ["a"], "fold_s": 0.1}) == 0.3
    # Four updates read and fused in 0.4 s of a 0.7 s fold: the invocation, load and
    # write (0.3 s) plus one update's share (0.1 s).
    assert eager_step_of_fold(0.7, {"folded": ["a", "b", "c", "d"], "fold_s": 0.4}) == \
        pytest.approx(0.4)
    # No work done, or no timing to split it by: nothing to learn.
    assert eager_step_of_fold(0.7, {"folded": []}) is None
    assert eager_step_of_fold(0.7, {"folded": ["a"], "reused": True}) is None
    assert eager_step_of_fold(0.7, {"folded": ["a", "b"]}) is None
    assert eager_step_of_fold(0.7, {"folded": ["a", "b"], "fold_s": "slow"}) is None
    # A fold time above the wall time (clock skew) cannot make a step negative.
    assert eager_step_of_fold(0.5, {"folded": ["a", "b"], "fold_s": 2.0}) == pytest.approx(0.25)
