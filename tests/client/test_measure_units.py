"""Pure parts of the SDK: bandwidth EWMA, training timer, Retry-After parsing, payload shapes."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from fedfaas.client import BandwidthMeter, Retry, as_tensors, measure_training, parse_retry_after
from fedfaas.errors import BadRequest


def test_bandwidth_is_an_ewma_of_bits_per_second() -> None:
    # Prepare
    meter = BandwidthMeter(alpha=0.5, min_bytes=100)
    # Execute
    first = meter.observe(1000, 1.0)   # 8000 bit/s
    meter.observe(50, 0.001)           # too small to say anything about bandwidth
    second = meter.observe(1000, 0.5)  # 16000 bit/s
    # Assert
    assert first == 8000.0
    assert second == 0.5 * 16000 + 0.5 * 8000
    assert meter.samples == 2


def test_measure_training_reports_per_epoch_and_per_minibatch_times() -> None:
    # Execute
    with measure_training(epochs=2, minibatches=8) as timer:
        assert timer.elapsed_s is None
        torch.randn(64, 64) @ torch.randn(64, 64)
    # Assert
    assert timer.elapsed_s is not None and timer.elapsed_s > 0
    assert timer.epoch_time_s == pytest.approx(timer.elapsed_s / 2)
    assert timer.minibatch_time_s == pytest.approx(timer.elapsed_s / 8)


def test_measure_training_records_nothing_when_training_fails() -> None:
    # Execute
    with pytest.raises(ZeroDivisionError), measure_training() as timer:
        _ = 1 / 0
    # Assert
    assert timer.elapsed_s is None and timer.epoch_time_s is None


@pytest.mark.parametrize(("header", "seconds"), [
    ("3", 3.0), (" 0 ", 0.0), ("-4", 0.0), ("Wed, 01 Jan 2025 00:00:10 GMT", 10.0),
    ("soon", None), ("", None), (None, None),
])
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds


def test_retry_after_is_capped() -> None:
    import random

    assert Retry(max_retry_after_s=5).wait_s(0, 3600.0, random.Random(0)) == 5


def test_retry_refuses_to_retry_client_errors() -> None:
    with pytest.raises(ValueError, match="429"):
        Retry(statuses=frozenset({409, 503}))


def test_as_tensors_accepts_state_dicts_mappings_and_lists() -> None:
    # Prepare
    state = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    # Execute
    from_torch = as_tensors(state)
    from_list = as_tensors([np.zeros(2, np.float32), np.ones(1, np.int64)])
    # Assert
    assert list(from_torch) == ["w", "n"] and from_torch["n"].dtype == np.int64
    np.testing.assert_array_equal(from_torch["w"], [1.0, 2.0])
    assert list(from_list) == ["0", "1"]


@pytest.mark.parametrize("bad", [{}, [], "weights", {"w": [1, 2]}, [np.zeros(1), [1]],
                                 {"a": np.zeros(1), "b": torch.zeros(1)}])
def test_as_tensors_rejects_what_is_not_an_update(bad: object) -> None:
    with pytest.raises(BadRequest):
        as_tensors(bad)  # type: ignore[arg-type]
