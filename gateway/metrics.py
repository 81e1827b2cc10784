"""Prometheus metrics of the gateway, served at ``GET /metrics``.

Counters and histograms are incremented where things happen: ingest (updates
received, bytes, rejections by reason), round coordination (aggregation
latency, the JIT paper's figure of merit, and round outcomes) and every HTTP
request.  State that lives in Redis is read at scrape time instead, so every
replica reports the same truth: active rounds (the scheduler's queue depth)
and FLStore's cache hits and misses per caching policy.

Under gunicorn each worker is a process: with ``PROMETHEUS_MULTIPROC_DIR`` set
before ``prometheus_client`` is imported (``gateway/wsgi.py`` does this) the
workers share their counters through files in that directory and any worker
answers a scrape with the sum.  Without it, counters are per process.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import redis
from flask import Blueprint, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from fedfaas import keys
from fedfaas.errors import FedfaasError
from fedfaas.spec import ID_RE
from gateway.openapi import Answer, operation

log = logging.getLogger("fedfaas.metrics")

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
# Rounds close seconds (eager) to minutes (lazy, t_wait) after their last update.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))

REGISTRY = CollectorRegistry()

UPDATES_RECEIVED = Counter(
    "fedfaas_updates_received", "Model updates stored durably (in S3, then acknowledged)",
    registry=REGISTRY)
UPDATE_BYTES = Counter(
    "fedfaas_update_bytes_received", "Bytes of model updates stored durably", registry=REGISTRY)
UPDATE_REJECTIONS = Counter(
    "fedfaas_update_rejections", "Model updates refused, by reason", ["reason"], registry=REGISTRY)
AGGREGATION_LATENCY = Histogram(
    "fedfaas_aggregation_latency_seconds",
    "Time from a round's last update arrival to its global model (JIT paper, aggregation latency)",
    buckets=LATENCY_BUCKETS, registry=REGISTRY)
ROUNDS = Counter(
    "fedfaas_rounds", "Rounds ended, by outcome (closed or failed)", ["outcome"], registry=REGISTRY)
HTTP_REQUESTS = Counter(
    "fedfaas_http_requests", "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"], registry=REGISTRY)
HTTP_DURATION = Histogram(
    "fedfaas_http_request_duration_seconds", "Time to answer an HTTP request, by route template",
    ["route", "method"], buckets=HTTP_BUCKETS, registry=REGISTRY)


# Known label values start at 0, so that rates and alerts work before the first event.
REJECTION_REASONS = ("not_in_round", "round_closed", "bad_body", "bad_metadata", "nonfinite")
for _reason in REJECTION_REASONS:
    UPDATE_REJECTIONS.labels(_reason)
for _outcome in ("closed", "failed"):
    ROUNDS.labels(_outcome)


# --- call sites ------------------------------------------------------------------------


def update_stored(size: int) -> None:
    """An update was written to S3 and recorded (ingest step 5)."""
    UPDATES_RECEIVED.inc()
    UPDATE_BYTES.inc(size)


def update_rejected(reason: str) -> None:
    """An update was refused with ``reason`` (e.g. ``bad_body``, ``round_closed``)."""
    UPDATE_REJECTIONS.labels(reason).inc()


def round_closed(latency_s: float) -> None:
    """A round produced its global model ``latency_s`` after its last update arrived."""
    ROUNDS.labels("closed").inc()
    AGGREGATION_LATENCY.observe(latency_s)


def round_failed() -> None:
    """A round failed (e.g. no quorum at ``t_wait``)."""
    ROUNDS.labels("failed").inc()


# --- scrape-time state -----------------------------------------------------------------


class StateCollector(Collector):
    """Gauges and counters read from Redis when scraped; the same on every replica.

    Cache hits and misses are summed over tenants, per caching policy: tenant
    names stay off an endpoint that needs no token.  Finding the tenants that
    have counts walks the keyspace (SCAN), so it is redone at most every
    ``rescan_s`` seconds; counts themselves are read on every scrape.

    Parameters
    ----------
    client
        The gateway's Redis client.
    engine
        FLStore's Cache Engine, or None when FLStore is disabled.
    rescan_s
        Seconds between two searches for tenants with cache counts.
    """

    def __init__(self, client: redis.Redis, engine: Any | None, rescan_s: float = 300.0) -> None:
        self.redis = client
        self.engine = engine
        self.rescan_s = rescan_s
        self._tenants: list[str] = []
        self._scanned_at: float | None = None

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("fedfaas_metadata_store_up", "1 when Redis answered this scrape")
        try:
            families = [self._active_rounds(), *self._cache_stats()]
        except (redis.RedisError, FedfaasError) as exc:
            log.warning("metrics: redis unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _active_rounds(self) -> Metric:
        gauge = GaugeMetricFamily("fedfaas_active_rounds",
                                  "Rounds open or aggregating: the round scheduler's queue depth")
        gauge.add_metric([], float(self.redis.scard(keys.active_rounds())))
        return gauge

    def _tenants_with_stats(self, engine_prefix: str) -> list[str]:
        now = time.monotonic()
        if self._scanned_at is not None and now - self._scanned_at < self.rescan_s:
            return self._tenants
        found = set()
        for raw in self.redis.scan_iter(match=keys.ce_stats(engine_prefix, "*"), count=1000):
            tenant = keys.ce_stats_tenant(engine_prefix, raw.decode() if isinstance(raw, bytes)
                                          else str(raw))
            if tenant is not None and ID_RE.match(tenant):
                found.add(tenant)
        self._tenants, self._scanned_at = sorted(found), now
        return self._tenants

    def _cache_stats(self) -> list[Metric]:
        totals: dict[str, dict[str, int]] = {}
        if self.engine is not None:
            for tenant in self._tenants_with_stats(self.engine.prefix):
                for policy, counts in self.engine.stats(tenant).items():
                    into = totals.setdefault(policy, {"hits": 0, "misses": 0})
                    into["hits"] += counts.get("hits", 0)
                    into["misses"] += counts.get("misses", 0)
        hits = CounterMetricFamily("fedfaas_cache_hits",
                                   "FLStore requests whose data was all in cache functions, by policy",
                                   labels=["policy"])
        misses = CounterMetricFamily("fedfaas_cache_misses",
                                     "FLStore requests that fetched data from the persistent store",
                                     labels=["policy"])
        for policy, counts in sorted(totals.items()):
            hits.add_metric([policy], counts["hits"])
            misses.add_metric([policy], counts["misses"])
        return [hits, misses]


class _Scrape(Collector):
    """What one scrape exposes: this process's (or every worker's) series plus Redis state."""

    def __init__(self, state: StateCollector) -> None:
        self.state = state

    def collect(self) -> Iterable[Metric]:
        if MULTIPROCESS:
            workers = CollectorRegistry()
            multiprocess.MultiProcessCollector(workers)
            yield from workers.collect()
        else:
            yield from REGISTRY.collect()
        yield from self.state.collect()


# --- HTTP ------------------------------------------------------------------------------

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
@operation("system", {200: Answer("Prometheus text exposition.", media="text/plain",
                                  schema={"type": "string"})}, roles=())
def scrape() -> Response:
    """Prometheus metrics.

    No auth, like OpenFaaS's gateway.
    """
    state = current_app.extensions.get("fedfaas_metrics_state")
    if state is None:  # one per app, so that its tenant search is reused between scrapes
        flstore = current_app.extensions.get("fedfaas_flstore")
        state = StateCollector(current_app.extensions["fedfaas"].redis, getattr(flstore, "engine", None))
        current_app.extensions["fedfaas_metrics_state"] = state
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(_Scrape(state)), content_type=content_type)


@blueprint.after_app_request
def _count_request(resp: Response) -> Response:
    # The route template, not the path, keeps the label set bounded.
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    started = g.get("started")
    HTTP_REQUESTS.labels(route, request.method, str(resp.status_code)).inc()
    if started is not None:
        HTTP_DURATION.labels(route, request.method).observe(time.perf_counter() - started)
    return resp
