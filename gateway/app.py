"""The fedfaas gateway: a stateless Flask app (one per replica, any number of replicas).

It answers parties (register, upload updates, fetch global models), admins
(tenants, jobs, rounds) and analysts (non-training queries).  Every error is a
JSON body ``{"error": code, "message": ...}`` with a 4xx for bad input and 503
with ``Retry-After`` when a backing service is down.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid

import redis
from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from fedfaas.config import Settings, load_settings
from fedfaas.errors import FedfaasError, Unavailable
from fedfaas.meta import connect
from fedfaas.store import ObjectStore
from gateway import logs, metrics, openapi
from gateway.arrivals import StreamConsumer
from gateway.auth import Principal, authenticate
from gateway.bodies import discard_rest
from gateway.ingest import Ingest
from gateway.openapi import Answer, operation
from gateway.ratelimit import install as install_rate_limit
from gateway.registry import Registry
from gateway.schemas import Health, Ready

log = logging.getLogger("fedfaas.gateway")


class Services:
    """Clients a request handler needs; built once per process, holding no FL state."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = connect(settings)
        self.store = ObjectStore(settings)
        self.registry = Registry(self.redis, self.store)
        self.ingest = Ingest(self.registry, self.store, settings.max_body_bytes)

    def principal(self) -> Principal:
        """The authenticated caller of the current request."""
        cached = g.get("principal")
        if cached is None:
            cached = authenticate(self.redis, request.headers.get("Authorization"),
                                  self.settings.admin_token)
            g.principal = cached
        return cached


def error_response(exc: FedfaasError) -> Response:
    """JSON error response for a fedfaas error."""
    resp = jsonify(exc.to_json())
    resp.status_code = exc.status
    if exc.retryable:
        resp.headers["Retry-After"] = str(getattr(exc, "retry_after_s", 2))
    return resp


@operation("system", {200: Answer("The process answers.", Health)}, roles=())
def healthz() -> Response:
    """Liveness probe."""
    return Health(status="ok").answer()


@operation("system", {200: Answer("Ready.", Ready), 503: Answer("A backing service is down.", Ready)},
           roles=())
def readyz() -> Response:
    """Readiness probe: Redis and S3 reachable."""
    services: Services = current_app.extensions["fedfaas"]
    checks = {"redis": False, "s3": services.store.healthy()}
    with contextlib.suppress(redis.RedisError):
        checks["redis"] = bool(services.redis.ping())
    ok = all(checks.values())
    return Ready(status="ok" if ok else "degraded", checks=checks).answer(200 if ok else 503)


def register_routes(app: Flask) -> None:
    """Every route of the gateway (the OpenAPI document is generated from these)."""
    from gateway.api_queries import blueprint as queries
    from gateway.api_v1 import blueprint

    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])
    app.register_blueprint(blueprint)
    app.register_blueprint(queries)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(openapi.blueprint)


def create_app(settings: Settings | None = None, start_background: bool = True) -> Flask:
    """Build the gateway app."""
    settings = settings or load_settings()
    if settings.internal_token is None:
        log.warning("no fedfaas-internal-token secret: every function will refuse this gateway's "
                    "data calls")
    app = Flask("fedfaas-gateway", static_folder=None)  # an API: no static files
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    services = Services(settings)
    app.extensions["fedfaas"] = services
    # First, so that every later hook and handler logs under the request id.
    app.register_blueprint(logs.blueprint)

    @app.errorhandler(FedfaasError)
    def _fedfaas_error(exc: FedfaasError) -> Response:
        if exc.status == 413:
            discard_rest()
        return error_response(exc)

    @app.errorhandler(redis.RedisError)
    def _redis_error(exc: redis.RedisError) -> Response:
        log.warning("redis error: %s", exc)
        return error_response(Unavailable(f"metadata store unavailable ({type(exc).__name__})"))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        if exc.code == 413:
            discard_rest()  # so the client can read the 413 before the connection closes
        code = (exc.name or "error").lower().replace(" ", "_")
        resp = jsonify({"error": code, "message": exc.description})
        resp.status_code = exc.code or 500
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        resp = jsonify({"error": "internal_error", "message": "unexpected server error; see gateway logs"})
        resp.status_code = 500
        return resp

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    install_rate_limit(app, services)

    register_routes(app)
    if settings.flstore:
        from gateway.flstore import FLStoreService

        flstore = FLStoreService(services.redis, services.store, services.registry, settings)
        app.extensions["fedfaas_flstore"] = flstore
        if start_background:
            flstore.start()
    from gateway.driver import aggregate_labels, new_coordinator, start_driver
    from gateway.platform import PlatformFigures
    from gateway.scheduling import JitBridge

    coordinator = new_coordinator(services.registry, settings)
    platform = PlatformFigures(services.redis, aggregate_labels(settings))
    bridge = JitBridge(services.redis, services.registry, coordinator, settings.driver_delta_s, platform)
    app.extensions["fedfaas_jit"] = bridge
    if start_background:
        driver = start_driver(services.registry, bridge, settings)
        app.extensions["fedfaas_driver"] = driver
        if driver is not None:
            # The scheduler's member of the arrivals stream's consumer groups.
            events = StreamConsumer(services.redis, "jit", uuid.uuid4().hex[:12], bridge.on_event,
                                    claim_idle_ms=int(settings.event_claim_idle_s * 1000))
            events.start()
            app.extensions["fedfaas_jit_events"] = events
    return app
