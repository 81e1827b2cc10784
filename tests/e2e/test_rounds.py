"""Rounds end to end on the local stack: real gateway, aggregate function, Redis and S3."""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import pytest

from fedfaas import codec
from gateway.platform import keep_alive_from_labels
from tests.conftest import Api

pytestmark = pytest.mark.stack


def _updates(parties: int, rounds: int) -> dict[tuple[int, int], dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    return {
        (r, p): {
            "conv.weight": rng.standard_normal((16, 8, 3, 3)).astype(np.float32),
            "bn.running_mean": rng.standard_normal(16).astype(np.float16),
            "bn.num_batches_tracked": np.array(10 * r + p, np.int64),
        }
        for r in range(1, rounds + 1) for p in range(parties)
    }


def _wait_closed(api: Api, job_id: str, rnd: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.call("GET", f"/v1/jobs/{job_id}/rounds/{rnd}", api.admin_token).json()
        if status["state"] in ("closed", "failed"):
            return status  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"round {rnd} did not close: {status}")


def _run_job(api: Api, strategy: dict[str, Any], data: dict, parties: int, rounds: int,
             on_update: Any = None, size_bytes: int = 5000) -> list[dict[str, np.ndarray]]:
    job = api.call("POST", "/v1/jobs", api.admin_token, json={
        "job_id": f"e2e-{uuid.uuid4().hex[:8]}", "model": {"name": "cnn", "size_bytes": size_bytes},
        "t_wait_s": 120, "quorum": parties, "rounds": rounds, "strategy": strategy}).json()
    jid = job["job_id"]
    tokens = [api.call("POST", f"/v1/jobs/{jid}/parties", job["enrollment_token"],
                       json={"party_id": f"p{i}"}).json()["token"] for i in range(parties)]
    models = []
    for rnd in range(1, rounds + 1):
        assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 201
        for p in range(parties):
            body = codec.encode(data[(rnd, p)], {"num_examples": 10 + 7 * p, "party": f"p{p}"})
            resp = api.call("POST", f"/v1/jobs/{jid}/rounds/{rnd}/updates", tokens[p], data=body)
            assert resp.status_code == 201, resp.text
            if on_update is not None:
                on_update(rnd, p)
        status = _wait_closed(api, jid, rnd)
        assert status["state"] == "closed", status
        assert status["parties_included"] == [f"p{i}" for i in range(parties)]
        got = api.call("GET", f"/v1/jobs/{jid}/model", tokens[0])
        assert got.headers["X-Fedfaas-Round"] == str(rnd)
        models.append(dict(codec.decode(got.content).tensors))
    return models


def _reference(data: dict, parties: int, rnd: int) -> dict[str, np.ndarray]:
    weights = np.array([10 + 7 * p for p in range(parties)], np.float64)
    weights /= weights.sum()
    out = {}
    for name in data[(rnd, 0)]:
        stacked = np.stack([data[(rnd, p)][name].astype(np.float64) for p in range(parties)])
        mean = np.tensordot(weights, stacked, axes=1)
        dtype = data[(rnd, 0)][name].dtype
        out[name] = np.floor(mean + 0.5).astype(dtype) if dtype.kind == "i" else mean.astype(dtype)
    return out


def test_three_rounds_survive_killed_aggregator(stack_api: Api, faas: Any) -> None:
    # Prepare
    parties, rounds = 5, 3
    data = _updates(parties, rounds)
    strategy = {"name": "batched-serverless", "batch_size": 2}
    killed: list[str] = []

    def kill_mid_round(rnd: int, p: int) -> None:
        # After the first batch of round 2 is being folded, reclaim the aggregate instance.
        if rnd == 2 and p in (2, 3):
            time.sleep(0.3)
            try:
                killed.append(str(faas.kill("aggregate")))
            except Exception as exc:  # no live instance at this instant is fine, retry once
                killed.append(f"miss: {exc}")

    # Execute
    clean = _run_job(stack_api, strategy, data, parties, rounds)
    faulty = _run_job(stack_api, strategy, data, parties, rounds, on_update=kill_mid_round)
    # Assert
    assert any(not k.startswith("miss") for k in killed), killed
    for rnd in range(rounds):
        ref = _reference(data, parties, rnd + 1)
        for name, value in clean[rnd].items():
            assert value.dtype == ref[name].dtype
            np.testing.assert_allclose(value.astype(np.float64), ref[name].astype(np.float64),
                                       rtol=1e-3 if value.dtype == np.float16 else 1e-5, atol=1e-6)
            # Kills regroup the folds; sums then differ by float32 rounding only.
            np.testing.assert_allclose(faulty[rnd][name].astype(np.float64), value.astype(np.float64),
                                       rtol=1e-5, atol=1e-6)
        assert clean[rnd]["bn.num_batches_tracked"].dtype == np.int64


def test_round_without_quorum_fails_visibly_and_late_updates_are_refused(stack_api: Api) -> None:
    # Prepare
    job = stack_api.call("POST", "/v1/jobs", stack_api.admin_token, json={
        "model": {"name": "m", "size_bytes": 10}, "t_wait_s": 1.0, "quorum": 2, "rounds": 2}).json()
    jid = job["job_id"]
    tokens = [stack_api.call("POST", f"/v1/jobs/{jid}/parties", job["enrollment_token"],
                             json={"party_id": f"p{i}"}).json()["token"] for i in range(3)]
    stack_api.call("POST", f"/v1/jobs/{jid}/rounds", stack_api.admin_token)
    body = codec.encode({"w": np.ones(2, np.float32)}, {"num_examples": 1})
    assert stack_api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", tokens[0], data=body).status_code == 201
    # Execute
    status = _wait_closed(stack_api, jid, 1)
    late = stack_api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", tokens[1], data=body)
    # Assert
    assert status["state"] == "failed" and "quorum not met" in status["reason"]
    assert late.status_code == 409 and late.json()["error"] == "round_closed"
    info = stack_api.call("GET", f"/v1/jobs/{jid}", stack_api.admin_token).json()
    assert info["rejections"]["round_closed"] == 1


def test_round_closes_at_t_wait_with_quorum(stack_api: Api) -> None:
    job = stack_api.call("POST", "/v1/jobs", stack_api.admin_token, json={
        "model": {"name": "m", "size_bytes": 10}, "t_wait_s": 1.5, "quorum": 2, "rounds": 1,
        "strategy": {"name": "lazy"}}).json()
    jid = job["job_id"]
    tokens = [stack_api.call("POST", f"/v1/jobs/{jid}/parties", job["enrollment_token"],
                             json={"party_id": f"p{i}"}).json()["token"] for i in range(3)]
    stack_api.call("POST", f"/v1/jobs/{jid}/rounds", stack_api.admin_token)
    for i, value in enumerate((1.0, 3.0)):
        body = codec.encode({"w": np.full(2, value, np.float32)}, {"num_examples": 1})
        stack_api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", tokens[i], data=body)
    status = _wait_closed(stack_api, jid, 1)
    assert status["state"] == "closed" and status["parties_included"] == ["p0", "p1"]
    model = codec.decode(stack_api.call("GET", f"/v1/jobs/{jid}/model", tokens[2]).content).tensors
    np.testing.assert_array_equal(model["w"], np.full(2, 2.0, np.float32))


def test_jit_round_start_uses_the_platforms_keep_alive_and_measured_eager_steps(
        stack_api: Api, faas: Any) -> None:
    # Prepare: an eager serverless job runs single-update steps on aggregate for
    # 5000-byte models; the router runs stack.yml, whose aggregate scales to zero.
    parties = 4
    _run_job(stack_api, {"name": "eager-serverless"}, _updates(parties, 1), parties, 1)
    labels = faas.function("aggregate")["labels"]
    # Execute: a JIT job with models of that size opens a round.
    job = stack_api.call("POST", "/v1/jobs", stack_api.admin_token, json={
        "job_id": f"e2e-{uuid.uuid4().hex[:8]}", "model": {"name": "cnn", "size_bytes": 5000},
        "t_wait_s": 120, "rounds": 1, "strategy": {"name": "jit"}}).json()
    for i in range(2):
        stack_api.call("POST", f"/v1/jobs/{job['job_id']}/parties", job["enrollment_token"],
                       json={"party_id": f"p{i}", "epoch_time_s": 5.0})
    resp = stack_api.call("POST", f"/v1/jobs/{job['job_id']}/rounds", stack_api.admin_token)
    # Assert: its estimate models eager on this platform.
    assert resp.status_code == 201, resp.text
    figures = resp.json()["estimate"]["platform"]
    assert figures["keep_alive_s"] == keep_alive_from_labels(labels)
    assert figures["keep_alive_s"] is not None
    assert figures["eager_step_s"] is not None and 0 < figures["eager_step_s"] < 10


def test_folds_of_several_updates_measure_eager_steps(stack_api: Api) -> None:
    # Prepare: a batched job (k = 2) whose model size no other test uses folds two
    # updates per step on aggregate, never one.
    size, parties = 5123, 8
    _run_job(stack_api, {"name": "batched-serverless", "batch_size": 2}, _updates(parties, 1),
             parties, 1, size_bytes=size)
    # Execute: a JIT job with models of that size opens a round.
    job = stack_api.call("POST", "/v1/jobs", stack_api.admin_token, json={
        "job_id": f"e2e-{uuid.uuid4().hex[:8]}", "model": {"name": "cnn", "size_bytes": size},
        "t_wait_s": 120, "rounds": 1, "strategy": {"name": "jit"}}).json()
    stack_api.call("POST", f"/v1/jobs/{job['job_id']}/parties", job["enrollment_token"],
                   json={"party_id": "p0", "epoch_time_s": 5.0})
    resp = stack_api.call("POST", f"/v1/jobs/{job['job_id']}/rounds", stack_api.admin_token)
    # Assert: eager's step was measured from the batched folds (no formula guess).
    assert resp.status_code == 201, resp.text
    step = resp.json()["estimate"]["platform"]["eager_step_s"]
    assert step is not None and 0 < step < 10


def test_jit_holds_aggregate_warm_for_the_last_update(stack_api: Api, faas: Any) -> None:
    # Prepare: a JIT job whose two parties report 2 s and 3 s epochs; aggregate scales
    # to zero (stack.yml) and eager's instance would be warm for the last update.
    api = stack_api
    job = api.call("POST", "/v1/jobs", api.admin_token, json={
        "job_id": f"e2e-{uuid.uuid4().hex[:8]}", "model": {"name": "cnn", "size_bytes": 5000},
        "t_wait_s": 120, "rounds": 1, "strategy": {"name": "jit"}}).json()
    jid = job["job_id"]
    tokens = [api.call("POST", f"/v1/jobs/{jid}/parties", job["enrollment_token"],
                       json={"party_id": f"p{i}", "epoch_time_s": 2.0 + i}).json()["token"]
              for i in range(2)]
    calls_before = faas.function("aggregate")["invocationCount"]
    # Execute: the round opens and no update comes for a while.
    resp = api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token)
    assert resp.status_code == 201, resp.text
    hold = resp.json()["estimate"]["warm_hold"]
    deadline = time.monotonic() + 10
    while faas.function("aggregate")["invocationCount"] == calls_before:
        assert time.monotonic() < deadline, "the gateway sent no warm-up ping"
        time.sleep(0.1)
    # Assert: the hold pings at a third of the keep-alive, and the round runs as usual.
    figures = resp.json()["estimate"]["platform"]
    assert hold == {"cold_start_s": figures["cold_start_s"], "keep_alive_s": figures["keep_alive_s"],
                    "ping_s": pytest.approx(figures["keep_alive_s"] / 3)}
    for i in range(2):
        body = codec.encode({"w": np.full(2, float(i), np.float32)}, {"num_examples": 1})
        assert api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", tokens[i],
                        data=body).status_code == 201
    assert _wait_closed(api, jid, 1)["state"] == "closed"


def _job(api: Api, parties: int, quorum: int, strategy: str = "lazy", rounds: int = 1
         ) -> tuple[str, list[str]]:
    job = api.call("POST", "/v1/jobs", api.admin_token, json={
        "job_id": f"e2e-{uuid.uuid4().hex[:8]}", "model": {"name": "cnn", "size_bytes": 64},
        "t_wait_s": 120, "quorum": quorum, "rounds": rounds, "strategy": {"name": strategy}}).json()
    jid = job["job_id"]
    tokens = [api.call("POST", f"/v1/jobs/{jid}/parties", job["enrollment_token"],
                       json={"party_id": f"p{i}"}).json()["token"] for i in range(parties)]
    return jid, tokens


def _send(api: Api, jid: str, rnd: int, token: str, party: str, shape: tuple[int, ...]) -> Any:
    body = codec.encode({"w": np.ones(shape, np.float32)}, {"num_examples": 5, "party": party})
    return api.call("POST", f"/v1/jobs/{jid}/rounds/{rnd}/updates", token, data=body)


def test_an_update_off_the_model_is_refused_at_upload_and_the_party_can_correct_it(
        stack_api: Api) -> None:
    # Prepare: a job whose initial model fixes its tensors.
    api = stack_api
    jid, tokens = _job(api, 2, 2)
    initial = codec.encode({"w": np.zeros((4, 4), np.float32)}, {})
    assert api.call("PUT", f"/v1/jobs/{jid}/model", api.admin_token, data=initial).status_code == 201
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 201
    # Execute
    ok = _send(api, jid, 1, tokens[0], "p0", (4, 4))
    wrong = _send(api, jid, 1, tokens[1], "p1", (3, 3))
    stored_after_refusal = api.call("GET", f"/v1/jobs/{jid}/rounds/1/updates/p1", api.admin_token)
    corrected = _send(api, jid, 1, tokens[1], "p1", (4, 4))
    status = _wait_closed(api, jid, 1, timeout=90)
    # Assert: a 400 that says what differs, nothing stored, the correction accepted.
    assert ok.status_code == 201, ok.text
    assert wrong.status_code == 400 and wrong.json()["error"] == "schema_mismatch", wrong.text
    assert "'w' has shape [3, 3], expected [4, 4]" in wrong.json()["message"]
    assert stored_after_refusal.status_code == 404
    assert corrected.status_code == 201, corrected.text
    assert status["state"] == "closed" and status["parties_included"] == ["p0", "p1"], status


def test_one_update_that_cannot_be_fused_is_excluded_and_the_round_goes_on(stack_api: Api) -> None:
    # Prepare: no initial model, three parties, quorum two; a linear rule fuses in party
    # order, so the first update fused defines the model and the odd one sorts last.
    api = stack_api
    jid, tokens = _job(api, 3, 2, rounds=2)
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 201
    # Execute
    for p, shape in enumerate(((4, 4), (4, 4), (3, 3))):
        assert _send(api, jid, 1, tokens[p], f"p{p}", shape).status_code == 201
    status = _wait_closed(api, jid, 1, timeout=90)
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 201
    next_round = _send(api, jid, 2, tokens[2], "p2", (3, 3))
    # Assert: p2 is excluded with its reason, the others make the model; the first
    # global model then fixes the job's tensors, so round 2 refuses p2's at upload.
    assert status["state"] == "closed", status
    assert status["parties_included"] == ["p0", "p1"], status
    assert list(status["excluded"]) == ["p2"] and "shape" in status["excluded"]["p2"], status
    assert next_round.status_code == 400 and next_round.json()["error"] == "schema_mismatch"


def test_a_round_whose_fusable_updates_miss_the_quorum_fails_naming_the_culprit(stack_api: Api) -> None:
    # Prepare: two updates whose tensors disagree in shape, quorum two, no schema yet.
    api = stack_api
    jid, tokens = _job(api, 2, 2)
    assert api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token).status_code == 201
    # Execute
    for p, shape in enumerate(((4, 4), (3, 3))):
        resp = _send(api, jid, 1, tokens[p], f"p{p}", shape)
        assert resp.status_code == 201, resp.text
    status = _wait_closed(api, jid, 1, timeout=90)
    # Assert: failed at once with the reason and the excluded party, not retried.
    assert status["state"] == "failed", status
    assert "quorum not met" in status["reason"] and "p1 (" in status["reason"], status
    assert list(status["excluded"]) == ["p1"], status
