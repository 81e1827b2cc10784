"""Prometheus metrics: exposed over HTTP by every gunicorn worker, moved by uploads and rounds."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from cache_engine.engine import CacheEngine
from cache_engine.keys import DataKey
from fedfaas import codec
from fedfaas.aggregation import AggregationStep
from fedfaas.devstack.localstack.stack import LocalStack
from fedfaas.spec import JobSpec, ModelSpec, PartyProfile
from fedfaas.store import ObjectStore
from gateway import metrics
from gateway.ingest import Ingest
from gateway.registry import Registry
from gateway.round_state import RoundStore
from gateway.rounds import RoundCoordinator
from tests.conftest import Api

pytestmark = pytest.mark.stack

NAMES = ("fedfaas_updates_received", "fedfaas_update_bytes_received", "fedfaas_update_rejections",
         "fedfaas_aggregation_latency_seconds", "fedfaas_rounds", "fedfaas_active_rounds",
         "fedfaas_metadata_store_up", "fedfaas_http_requests", "fedfaas_http_request_duration_seconds")


def _scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape on a fresh connection (so any gunicorn worker may answer): sample -> value."""
    resp = requests.get(api.base + "/metrics", timeout=30, headers={"Connection": "close"})
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _update(value: float) -> bytes:
    return codec.encode({"w": np.full((2, 2), value, np.float32)}, {"num_examples": 5})


def test_every_family_is_exposed_without_a_token(api: Api) -> None:
    # Execute
    resp = requests.get(api.base + "/metrics", timeout=30)
    # Assert
    assert resp.status_code == 200
    families = {f.name for f in text_string_to_metric_families(resp.text)}
    assert set(NAMES) - families == set()
    assert _value(_scrape(api), "fedfaas_metadata_store_up") == 1.0


def test_an_upload_and_a_rejection_move_the_counters_seen_by_every_worker(api: Api) -> None:
    # Prepare
    jid = f"m-{uuid.uuid4().hex[:8]}"
    job = api.call("POST", "/v1/jobs", api.admin_token, json={
        "job_id": jid, "model": {"name": "m", "size_bytes": 16}, "t_wait_s": 3600, "quorum": 2}).json()
    tokens = [api.call("POST", f"/v1/jobs/{jid}/parties", job["enrollment_token"],
                       json={"party_id": p}).json()["token"] for p in ("alice", "bob")]
    api.call("POST", f"/v1/jobs/{jid}/rounds", api.admin_token)
    body = _update(1.0)
    before = _scrape(api)
    # Execute
    stored = api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", tokens[0], data=body)
    garbage = api.call("POST", f"/v1/jobs/{jid}/rounds/1/updates", tokens[1], data=b"\x00" * 64)
    scrapes = [_scrape(api) for _ in range(6)]
    # Assert
    assert stored.status_code == 201 and garbage.status_code == 400
    for after in scrapes:  # each on a new connection: the workers' counts are summed
        assert _value(after, "fedfaas_updates_received_total") - \
            _value(before, "fedfaas_updates_received_total") == 1
        assert _value(after, "fedfaas_update_bytes_received_total") - \
            _value(before, "fedfaas_update_bytes_received_total") == len(body)
        assert _value(after, "fedfaas_update_rejections_total", reason="bad_body") - \
            _value(before, "fedfaas_update_rejections_total", reason="bad_body") == 1
        route = "/v1/jobs/<job_id>/rounds/<rnd>/updates"
        assert _value(after, "fedfaas_http_requests_total", route=route, method="POST", status="201") >= 1
        assert _value(after, "fedfaas_active_rounds") >= 1  # this job's round 1 is open


def test_finalising_a_round_observes_its_aggregation_latency(api_stack: LocalStack) -> None:
    # Prepare: a real round on the stack's Redis and S3, aggregated in-process
    settings = api_stack.settings()
    store = ObjectStore(settings)
    registry = Registry(redis.Redis.from_url(api_stack.env()["FEDFAAS_REDIS_URL"], socket_timeout=10), store)
    job, _ = registry.create_job(JobSpec(job_id=f"lat-{uuid.uuid4().hex[:8]}",
                                         model=ModelSpec(name="m", size_bytes=16), t_wait_s=3600), "default")
    registry.register_party(job, PartyProfile(party_id="alice"))
    rounds = RoundStore(registry.redis)
    rounds.create(job, registry.round_parties(job))
    rounds.mark_open(job.job_id, 1)
    Ingest(registry, store, settings.max_body_bytes).accept(job, 1, "alice", _update(2.0))
    step = AggregationStep(store)
    coordinator = RoundCoordinator(registry, step.run)
    count = "fedfaas_aggregation_latency_seconds_count"
    before = metrics.REGISTRY.get_sample_value(count) or 0.0
    closed = metrics.REGISTRY.get_sample_value("fedfaas_rounds_total", {"outcome": "closed"}) or 0.0
    # Execute
    record = coordinator.finalize(job, 1)
    # Assert
    assert record.state == "closed"
    assert metrics.REGISTRY.get_sample_value(count) == before + 1
    assert metrics.REGISTRY.get_sample_value("fedfaas_rounds_total", {"outcome": "closed"}) == closed + 1
    assert record.aggregation_latency_s is not None and record.aggregation_latency_s >= 0


def test_cache_hits_and_misses_are_summed_over_tenants_per_policy(api_stack: LocalStack) -> None:
    # Prepare: an engine of its own key prefix; in tenant a the first request misses and places
    # the update, the next two hit; tenant b's only request misses
    client = redis.Redis.from_url(api_stack.env()["FEDFAAS_REDIS_URL"], socket_timeout=10)
    engine = CacheEngine(client, ["cache-0", "cache-1"], budget_bytes=10_000, replicas=0,
                         prefix=f"test-{uuid.uuid4().hex[:8]}")
    plans = []
    for tenant, requests_made in (("a", 3), ("b", 1)):
        key = DataKey.update(tenant, "job-1", 1, "alice")
        engine.ingest(key, 100)
        plans += [engine.plan_request("inference", [key]) for _ in range(requests_made)]
    policy = plans[0].policy
    # Execute
    families = {f.name: f for f in metrics.StateCollector(client, engine).collect()}
    # Assert
    assert [p.hit for p in plans] == [False, True, True, False]
    hits = {s.labels["policy"]: s.value for s in families["fedfaas_cache_hits"].samples}
    misses = {s.labels["policy"]: s.value for s in families["fedfaas_cache_misses"].samples}
    assert hits == {policy: 2} and misses == {policy: 2}
    assert families["fedfaas_metadata_store_up"].samples[0].value == 1
