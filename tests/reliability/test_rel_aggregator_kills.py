"""Aggregate instances SIGKILLed in the middle of steps: the round completes with the same model.

JIT paper 5.5: partial aggregates are checkpointed in S3 and steps are
idempotent, so a reclaimed aggregator costs time, never correctness.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from fedfaas import codec
from fedfaas.errors import FedfaasError
from tests.reliability.conftest import FaultStack
from tests.reliability.faults import (
    Ledger,
    call,
    decode_model,
    log_text,
    make_job,
    max_abs_diff,
    upload,
    wait_round,
    weighted_mean,
)

pytestmark = pytest.mark.stack

PARTIES = 6
MAX_KILLS = 3


def _updates() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(11)
    return [{"w": rng.standard_normal((1024, 1024), dtype=np.float32),
             "b": rng.standard_normal(1024, dtype=np.float32)} for _ in range(PARTIES)]


class _Reclaimer(threading.Thread):
    """Kills aggregate replicas that are busy with a step, like a provider reclaiming them."""

    def __init__(self, fs: FaultStack) -> None:
        super().__init__(daemon=True)
        self.fs = fs
        self.kills: list[dict[str, Any]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set() and len(self.kills) < MAX_KILLS:
            try:
                busy = [i for i in self.fs.faas.instances().get("aggregate", []) if i["inflight"] > 0]
                if busy:
                    self.kills.append(self.fs.faas.kill("aggregate", instance=busy[0]["instance"]))
                    self.done.wait(0.5)  # let the retry reach a fresh instance
            except FedfaasError:
                pass  # the busy replica finished or died on its own meanwhile
            self.done.wait(0.01)


def _run_round(fs: FaultStack, data: list[dict[str, np.ndarray]], reclaim: bool
               ) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    jid, tokens = make_job(fs.session, fs.base, fs.admin, PARTIES,
                           {"name": "batched-serverless", "batch_size": 2})
    reclaimer = _Reclaimer(fs)
    if reclaim:
        reclaimer.start()
    ledger = Ledger()
    try:
        for p, tensors in enumerate(data):
            body = codec.encode(tensors, {"num_examples": 10 + p})
            answer = upload(fs.session, fs.base, f"/v1/jobs/{jid}/rounds/1/updates", tokens[p], body,
                            f"p{p}", ledger)
            assert answer == 201, answer
        status = wait_round(fs.session, fs.base, jid, 1, fs.admin, timeout_s=120)
    finally:
        reclaimer.done.set()
        if reclaim:
            reclaimer.join(10)
    assert status["state"] == "closed", status
    assert status["parties_included"] == [f"p{p}" for p in range(PARTIES)]
    model = call(fs.session, "GET", f"{fs.base}/v1/jobs/{jid}/model", tokens[0])
    assert model.headers["X-Fedfaas-Round"] == "1"
    return decode_model(model.content), reclaimer.kills


def test_round_completes_with_the_fault_free_model_when_aggregators_are_killed(fs: FaultStack) -> None:
    # Prepare
    data = _updates()
    reference = weighted_mean(data, [10 + p for p in range(PARTIES)])
    clean, _ = _run_round(fs, data, reclaim=False)
    failed_steps_before = log_text(fs.stack, "gateway").count("aggregate step failed")
    # Execute
    faulty, kills = _run_round(fs, data, reclaim=True)
    # Assert
    assert kills, "no aggregate step was in flight to kill"
    assert log_text(fs.stack, "gateway").count("aggregate step failed") > failed_steps_before
    assert max_abs_diff(faulty, clean) <= 1e-5
    assert max_abs_diff(clean, reference) <= 1e-5
    assert all(faulty[k].dtype == np.float32 for k in faulty)

