"""The aggregate function's step against the real S3 server: updates read ahead, fused in order."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from fedfaas import aggregation, codec, keys
from fedfaas.aggregation import AggregationStep, StepRequest
from fedfaas.config import Settings
from fedfaas.errors import NotFound
from fedfaas.store import ObjectStore


def _put_updates(store: ObjectStore, job: str, n: int, size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    updates = {}
    for i in range(n):
        party = f"p{i:02d}"
        w = rng.standard_normal(size).astype(np.float32)
        store.put(keys.s3_update("t", job, 1, party),
                  codec.encode({"w": w}, {"num_examples": i + 1}))
        updates[party] = w
    return updates


def _expected(updates: dict[str, np.ndarray]) -> np.ndarray:
    weights = np.arange(1, len(updates) + 1, dtype=np.float64)
    stacked = np.stack([updates[p].astype(np.float64) for p in sorted(updates)])
    return (weights[:, None] * stacked).sum(axis=0) / weights.sum()


@pytest.mark.parametrize("read_ahead_bytes", [aggregation.READ_AHEAD_BYTES, 1])
def test_step_fuses_every_update_read_ahead_as_fedavg(s3_settings: Settings,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      read_ahead_bytes: int) -> None:
    # Twelve updates folded in one step, then finalised: the weighted mean of all,
    # whether four are read ahead or (updates larger than the budget) one.
    monkeypatch.setattr(aggregation, "READ_AHEAD_BYTES", read_ahead_bytes)
    store = ObjectStore(s3_settings)
    job = f"agg-{uuid.uuid4().hex[:8]}"
    updates = _put_updates(store, job, 12, 1000)
    step = AggregationStep(store)
    parties = sorted(updates)
    part = step.run(StepRequest("t", job, 1, "fedavg", {}, parties[:7]))
    assert part["parties"] == parties[:7]
    # It reports what reading and fusing took, for the gateway's eager-step figure.
    assert part["folded_updates"] == 7 and part["fold_s"] > 0
    again = step.run(StepRequest("t", job, 1, "fedavg", {}, parties[:7]))
    assert again["reused"] and "fold_s" not in again
    done = step.run(StepRequest("t", job, 1, "fedavg", {}, parties[7:], base=part["partial"],
                                finalize=True))
    model = codec.decode(store.get(done["model_key"]))
    np.testing.assert_allclose(model.tensors["w"], _expected(updates), rtol=1e-5, atol=1e-6)

    # A robust rule reads every update at once through the same read-ahead.
    job2 = f"agg-{uuid.uuid4().hex[:8]}"
    updates2 = _put_updates(store, job2, 9, 1000)
    med = step.run(StepRequest("t", job2, 1, "median", {}, sorted(updates2), finalize=True))
    assert not med["reused"] and med["parties"] == sorted(updates2)
    median = codec.decode(store.get(med["model_key"])).tensors["w"]
    np.testing.assert_allclose(median, np.median(np.stack(list(updates2.values())), axis=0),
                               rtol=1e-6)


def test_missing_update_is_not_found_whatever_its_place(s3_settings: Settings) -> None:
    store = ObjectStore(s3_settings)
    job = f"agg-{uuid.uuid4().hex[:8]}"
    parties = sorted(_put_updates(store, job, 6, 10))
    step = AggregationStep(store)
    for missing in (["ghost", *parties], [*parties, "ghost"]):
        with pytest.raises(NotFound):
            step.run(StepRequest("t", job, 1, "fedavg", {}, missing))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("parties", "alice", "'parties' must be a list"),
    ("parties", ["alice", "alice"], "a party twice"),
    ("parties", [3], "party id"),
    ("round", 0, "'round' must be an integer >= 1"),
    ("base", "../x", "'base' must be a partial id"),
])
def test_malformed_step_requests_are_refused_naming_the_field(field: str, value: object,
                                                                message: str) -> None:
    from fedfaas.errors import BadRequest

    body = {"tenant": "acme", "job": "job-1", "round": 1, "parties": ["alice"], field: value}
    with pytest.raises(BadRequest, match=message):
        StepRequest.parse(body)
