"""The gateway's ``/system`` API, ``/healthz`` and ``/metrics`` for the local router.

OpenFaaS paths (``/system/functions``, ``/system/function/<name>``,
``/system/scale-function/<name>``) answer in the gateway's JSON shape; the
local extras are ``/system/accounting`` (+ ``/reset``), ``/system/instances``
and ``/system/kill/<name>``.  Metrics use the gateway's series names with
``function_name`` = ``<name>.<namespace>`` as recent gateways do.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from fedfaas.devstack.faas.pool import FunctionPool
from fedfaas.errors import BadRequest, FedfaasError, NotFound


class GatewayMetrics:
    """Prometheus series under the OpenFaaS gateway's names, plus container-seconds."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.registry = CollectorRegistry()
        self.invocations = Counter(
            "gateway_function_invocation",
            "Individual function metrics",
            ["function_name", "code"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "gateway_functions_seconds", "Function time taken", ["function_name"], registry=self.registry
        )
        self.replicas = Gauge(
            "gateway_service_count",
            "Current count of replicas for function",
            ["function_name"],
            registry=self.registry,
        )
        self.container_seconds = Gauge(
            "fedfaas_function_container_seconds",
            "Alive time of every replica since the router started",
            ["function_name"],
            registry=self.registry,
        )

    def label(self, name: str) -> str:
        """The ``function_name`` label of a function."""
        return f"{name}.{self.namespace}"

    def observe(self, name: str, status: int, seconds: float) -> None:
        """Count one invocation."""
        self.invocations.labels(self.label(name), str(status)).inc()
        self.seconds.labels(self.label(name)).observe(seconds)

    def render(self, pools: Mapping[str, FunctionPool]) -> bytes:
        """Text exposition, with the replica gauges refreshed."""
        now = time.monotonic()
        for name, pool in pools.items():
            self.replicas.labels(self.label(name)).set(len(pool.live))
            alive = sum(now - i.started_mono for i in pool.instances.values())
            self.container_seconds.labels(self.label(name)).set(pool.lifetime_container_s + alive)
        return generate_latest(self.registry)


def find_pool(pools: Mapping[str, FunctionPool], name: str, namespace: str) -> FunctionPool:
    """The pool of ``name`` or ``name.<namespace>``; NotFound otherwise."""
    suffix = "." + namespace
    pool = pools.get(name[: -len(suffix)] if name.endswith(suffix) else name)
    if pool is None:
        raise NotFound(f"function {name!r} is not deployed")
    return pool


class SystemApi:
    """Handlers of ``/system/*``, ``/healthz`` and ``/metrics``.

    Parameters
    ----------
    pools
        The router's function pools (shared, not copied).
    namespace
        Reported namespace of every function.
    metrics
        The router's metrics.
    is_warm
        Whether the floor replicas had their first chance to start.
    """

    def __init__(
        self,
        pools: Mapping[str, FunctionPool],
        namespace: str,
        metrics: GatewayMetrics,
        is_warm: Callable[[], bool],
    ) -> None:
        self.pools = pools
        self.namespace = namespace
        self.metrics = metrics
        self.is_warm = is_warm
        self.created = time.time()

    def routes(self) -> list[web.RouteDef]:
        """Route table entries of this API."""
        return [
            web.get("/system/functions", self.list_functions),
            web.get("/system/function/{name}", self.get_function),
            web.post("/system/scale-function/{name}", self.scale_function),
            web.get("/system/accounting", self.get_accounting),
            web.post("/system/accounting/reset", self.reset_accounting),
            web.get("/system/instances", self.get_instances),
            web.post("/system/kill/{name}", self.kill_instance),
            web.get("/healthz", self.healthz),
            web.get("/metrics", self.get_metrics),
        ]

    def _pool(self, request: web.Request) -> FunctionPool:
        return find_pool(self.pools, request.match_info["name"], self.namespace)

    def function_status(self, pool: FunctionPool) -> dict[str, Any]:
        """One function in the gateway's ``FunctionStatus`` JSON shape."""
        spec = pool.spec
        return {
            "name": spec.name,
            "image": spec.image,
            "namespace": self.namespace,
            "envProcess": spec.fprocess or "python index.py",
            "envVars": spec.environment,
            "constraints": list(spec.constraints),
            "secrets": list(spec.secrets),
            "labels": spec.labels,
            "annotations": spec.annotations,
            "limits": spec.limits or None,
            "requests": spec.requests or None,
            "readOnlyRootFilesystem": spec.readonly_root_filesystem,
            "invocationCount": pool.invocation_count,
            "replicas": len(pool.live),
            "availableReplicas": len(pool.ready),
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
        }

    async def list_functions(self, request: web.Request) -> web.Response:
        """``GET /system/functions``."""
        return web.json_response([self.function_status(p) for p in self.pools.values()])

    async def get_function(self, request: web.Request) -> web.Response:
        """``GET /system/function/<name>``."""
        return web.json_response(self.function_status(self._pool(request)))

    async def scale_function(self, request: web.Request) -> web.Response:
        """``POST /system/scale-function/<name>`` with ``{"serviceName", "replicas"}``."""
        pool = self._pool(request)
        body = await json_body(request)
        service = body.get("serviceName", pool.name)
        if service not in (pool.name, f"{pool.name}.{self.namespace}"):
            raise BadRequest(f"serviceName {service!r} does not match the path ({pool.name})")
        replicas = body.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise BadRequest("replicas must be an integer")
        await pool.scale_to(replicas)
        return web.json_response({"serviceName": pool.name, "replicas": replicas}, status=202)

    async def get_accounting(self, request: web.Request) -> web.Response:
        """``GET /system/accounting``: container-seconds, calls and cold starts per function."""
        functions = {name: pool.accounting_view() for name, pool in self.pools.items()}
        keys = next(iter(functions.values())).keys()
        totals = {key: sum(f[key] for f in functions.values()) for key in keys}
        since = min(p.accounting.since_wall for p in self.pools.values())
        return web.json_response(
            {"since": since, "now": time.time(), "functions": functions, "total": totals}
        )

    async def reset_accounting(self, request: web.Request) -> web.Response:
        """``POST /system/accounting/reset``: start a new accounting period for every function."""
        for pool in self.pools.values():
            pool.reset_accounting()
        return web.json_response({"since": time.time()})

    async def get_instances(self, request: web.Request) -> web.Response:
        """``GET /system/instances``: every replica with pid, port, state and calls in flight."""
        now = time.monotonic()
        return web.json_response(
            {name: [i.describe(now) for i in pool.instances.values()] for name, pool in self.pools.items()}
        )

    async def kill_instance(self, request: web.Request) -> web.Response:
        """``POST /system/kill/<name>`` (optional ``{"instance": idx}``): SIGKILL one replica."""
        pool = self._pool(request)
        body = await json_body(request) if request.body_exists else {}
        idx = body.get("instance")
        if idx is not None and (not isinstance(idx, int) or isinstance(idx, bool)):
            raise BadRequest("instance must be an integer")
        inst = await pool.kill(idx)
        return web.json_response({"function": pool.name, "instance": inst.idx, "pid": inst.pid})

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: 200 once the floor replicas had their first chance to start."""
        if not self.is_warm():
            return web.json_response({"status": "warming"}, status=503)
        return web.Response(text="OK")

    async def get_metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics`` in the Prometheus text format."""
        body = self.metrics.render(self.pools)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def json_error(exc: FedfaasError) -> web.Response:
    """The JSON error response for ``exc``."""
    return web.json_response(exc.to_json(), status=exc.status)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body; BadRequest when it is anything else."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def read_credentials(secrets_dir: Path | None) -> tuple[str, str] | None:
    """Basic-auth credentials from the gateway's ``basic-auth-user``/``-password`` secrets."""
    if secrets_dir is None:
        return None
    try:
        user = (secrets_dir / "basic-auth-user").read_text().strip()
        password = (secrets_dir / "basic-auth-password").read_text().strip()
    except OSError:
        return None
    return (user, password) if user and password else None


def authorized(header: str, credentials: tuple[str, str]) -> bool:
    """Whether an ``Authorization`` header carries ``credentials`` (constant-time compare)."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user_ok = hmac.compare_digest(user.encode(), credentials[0].encode())
    return hmac.compare_digest(password.encode(), credentials[1].encode()) and user_ok
