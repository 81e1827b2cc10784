"""The aggregate function's step against the real S3 server: updates read ahead, fused in order."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from fedfaas import aggregation, codec, keys
from fedfaas.aggregation import AggregationStep
from fedfaas.config import Settings
from fedfaas.contracts import StepRequest, schema_json
from fedfaas.model_schema import ParameterSchema
from fedfaas.spec import AlgorithmSpec
from fedfaas.store import ObjectStore, digest

DIGESTS: dict[tuple[str, str], str] = {}
"""(job, party) -> the digest an update was stored under, as the gateway records it."""


def _put(store: ObjectStore, job: str, party: str, body: bytes) -> None:
    DIGESTS[job, party] = digest(body)
    store.put(keys.s3_update("t", job, 1, party, digest(body)), body)


def _put_updates(store: ObjectStore, job: str, n: int, size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    updates = {}
    for i in range(n):
        party = f"p{i:02d}"
        w = rng.standard_normal(size).astype(np.float32)
        _put(store, job, party, codec.encode({"w": w}, {"num_examples": i + 1}))
        updates[party] = w
    return updates


def _step(job: str, algorithm: str, parties: list[str], schema: ParameterSchema | None = None,
          **kwargs: object) -> StepRequest:
    digests = {p: DIGESTS.get((job, p), "0" * 64) for p in parties}
    return StepRequest(tenant="t", job=job, round=1, algorithm=AlgorithmSpec(name=algorithm),
                       parties=parties, digests=digests, schema=schema_json(schema),
                       **kwargs)  # type: ignore[arg-type]


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
    part = step.run(_step(job, "fedavg", parties[:7]))
    assert part.parties == parties[:7]
    # It reports what reading and fusing took, for the gateway's eager-step figure.
    assert part.folded_updates == 7 and part.fold_s > 0
    again = step.run(_step(job, "fedavg", parties[:7]))
    assert again.reused and again.fold_s is None
    done = step.run(_step(job, "fedavg", parties[7:], base=part.partial, finalize=True))
    model = codec.decode(store.get(done.model_key))
    np.testing.assert_allclose(model.tensors["w"], _expected(updates), rtol=1e-5, atol=1e-6)

    # A robust rule reads every update at once through the same read-ahead.
    job2 = f"agg-{uuid.uuid4().hex[:8]}"
    updates2 = _put_updates(store, job2, 9, 1000)
    med = step.run(_step(job2, "median", sorted(updates2), finalize=True))
    assert not med.reused and med.parties == sorted(updates2)
    median = codec.decode(store.get(med.model_key)).tensors["w"]
    np.testing.assert_allclose(median, np.median(np.stack(list(updates2.values())), axis=0),
                               rtol=1e-6)


def test_a_missing_update_is_excluded_with_its_reason_whatever_its_place(s3_settings: Settings) -> None:
    store = ObjectStore(s3_settings)
    job = f"agg-{uuid.uuid4().hex[:8]}"
    parties = sorted(_put_updates(store, job, 6, 10))
    step = AggregationStep(store)
    for missing in (["ghost", *parties], [*parties, "ghost"]):
        result = step.run(_step(job, "fedavg", missing))
        assert result.parties == parties
        assert set(result.excluded) == {"ghost"} and "missing" in result.excluded["ghost"]


def test_stored_bytes_that_differ_from_the_acknowledged_digest_are_never_fused(
        s3_settings: Settings) -> None:
    # Prepare: p01's object holds other bytes than the digest the gateway recorded.
    store = ObjectStore(s3_settings)
    job = f"agg-{uuid.uuid4().hex[:8]}"
    updates = _put_updates(store, job, 3, 10)
    tampered = codec.encode({"w": np.full(10, 1e6, np.float32)}, {"num_examples": 1})
    store.put(keys.s3_update("t", job, 1, "p01", DIGESTS[job, "p01"]), tampered)
    # Execute
    done = AggregationStep(store).run(_step(job, "fedavg", sorted(updates), finalize=True))
    # Assert: the other two are fused, p01 is excluded and named.
    assert done.parties == ["p00", "p02"]
    assert "do not match the acknowledged update" in done.excluded["p01"]
    fused = codec.decode(store.get(done.model_key)).tensors["w"]
    expected = (1 * updates["p00"].astype(np.float64) + 3 * updates["p02"]) / 4
    np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("algorithm", ["fedavg", "median"])
def test_an_update_off_the_model_is_excluded_and_the_round_goes_on(s3_settings: Settings,
                                                                 algorithm: str) -> None:
    # Prepare: three updates of the model's shape and one of another, sorted first.
    store = ObjectStore(s3_settings)
    job = f"agg-{uuid.uuid4().hex[:8]}"
    _put(store, job, "a-odd", codec.encode({"w": np.ones((3, 3), np.float32)}, {"num_examples": 1}))
    for i in range(3):
        _put(store, job, f"p{i}", codec.encode({"w": np.full((4, 4), float(i), np.float32)},
                                               {"num_examples": 1}))
    parties = ["a-odd", "p0", "p1", "p2"]
    schema = ParameterSchema((("w", "float32", (4, 4)),))
    step = AggregationStep(store)
    # Execute: with the job's schema, and (a robust rule) without it: the majority's shape wins.
    with_schema = step.run(_step(job, algorithm, parties, finalize=True, schema=schema, min_parties=3))
    # Assert
    assert with_schema.parties == ["p0", "p1", "p2"]
    assert "shape [3, 3], expected [4, 4]" in with_schema.excluded["a-odd"]
    assert json.loads(with_schema.model_dump_json())["schema"] == [["w", "float32", [4, 4]]]
    if algorithm == "median":
        job2 = f"agg-{uuid.uuid4().hex[:8]}"
        for p in parties:
            DIGESTS[job2, p] = DIGESTS[job, p]
            store.put(keys.s3_update("t", job2, 1, p, DIGESTS[job, p]),
                      store.get(keys.s3_update("t", job, 1, p, DIGESTS[job, p])))
        majority = step.run(_step(job2, algorithm, parties, finalize=True))
        assert majority.parties == ["p0", "p1", "p2"] and "a-odd" in majority.excluded


def test_a_final_step_below_the_quorum_writes_no_model(s3_settings: Settings) -> None:
    # Prepare: two updates of different shapes; the first fused defines the model.
    store = ObjectStore(s3_settings)
    job = f"agg-{uuid.uuid4().hex[:8]}"
    _put(store, job, "p0", codec.encode({"w": np.ones((4, 4), np.float32)}, {"num_examples": 5}))
    _put(store, job, "p1", codec.encode({"w": np.ones((3, 3), np.float32)}, {"num_examples": 5}))
    # Execute
    done = AggregationStep(store).run(_step(job, "fedavg", ["p0", "p1"], finalize=True, min_parties=2))
    # Assert
    assert done.model_key is None and done.below_quorum
    assert done.parties == ["p0"] and "p1" in done.excluded
    assert not store.exists(keys.s3_model("t", job, 1))


def test_exclusions_are_carried_by_the_partial_and_its_reuse(s3_settings: Settings) -> None:
    store = ObjectStore(s3_settings)
    job = f"agg-{uuid.uuid4().hex[:8]}"
    updates = _put_updates(store, job, 2, 10)
    step = AggregationStep(store)
    first = step.run(_step(job, "fedavg", [*sorted(updates), "ghost"]))
    again = step.run(_step(job, "fedavg", [*sorted(updates), "ghost"]))
    later = step.run(_step(job, "fedavg", ["ghost"], base=first.partial, finalize=True))
    assert first.excluded == again.excluded and again.reused
    assert set(later.excluded) == {"ghost"} and later.parties == sorted(updates)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("parties", "alice", "parties: expected an array"),
    ("parties", ["alice", "alice"], "a party twice"),
    ("parties", [3], r"parties\.0: expected a string"),
    ("round", 0, "round: Input should be greater than or equal to 1"),
    ("base", "../x", "base: must be a partial id"),
    ("digests", {"alice": "../../x"}, "digests: must map every party"),
    ("digests", {}, "digests: must map every party"),
    ("finalize", 1, "finalize: expected true or false"),
    ("min_parties", True, "min_parties: expected an integer"),
])
def test_malformed_step_requests_are_refused_naming_the_field(field: str, value: object,
                                                                message: str) -> None:
    from fedfaas.errors import BadRequest

    body = {"tenant": "acme", "job": "job-1", "round": 1, "parties": ["alice"],
            "digests": {"alice": "a" * 64}, field: value}
    with pytest.raises(BadRequest, match=message):
        StepRequest.parse(body)
