"""Local OpenFaaS gateway: runs every function of ``stack.yml`` as processes behind its API.

Paths, as on the OpenFaaS gateway: ``/function/<name>[/path]`` (sync, any
method), ``/async-function/<name>[/path]`` (202, optional ``X-Callback-Url``),
``/system/functions``, ``/system/function/<name>``,
``/system/scale-function/<name>``, ``/healthz`` and ``/metrics``.  Local
extras under ``/system`` (behind the same basic auth): ``accounting`` and
``accounting/reset`` (container-seconds per function, the cost the JIT and
FLStore papers compare), ``instances`` and ``kill/<name>`` (fault injection).

Usage::

    python -m fedfaas.faas.router --stack stack.yml --port 8080 --state-dir .fedfaas/faas
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from yarl import URL

from fedfaas.errors import BadRequest, FedfaasError, NotFound, PayloadTooLarge, Unauthorized
from fedfaas.faas.asyncq import AsyncCall, AsyncQueue, CallResult
from fedfaas.faas.launcher import Launcher, write_pid_file
from fedfaas.faas.options import RouterOptions
from fedfaas.faas.pool import FunctionPool, ScalePolicy
from fedfaas.faas.stackfile import StackFile, load_stack

log = logging.getLogger("fedfaas.faas")

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "expect",
        "x-callback-url",
    }
)
_SKIP_AUTO_HEADERS = frozenset({"Content-Type", "User-Agent", "Accept", "Accept-Encoding"})
_CHUNK = 1 << 16
_CONNECT_TIMEOUT_S = 5.0


class FunctionTimeout(FedfaasError):
    """The function did not answer within its exec timeout (504)."""

    status = 504
    code = "function_timeout"
    retryable = True


class BadGateway(FedfaasError):
    """The replica went away during the call, e.g. it was killed (502); safe to retry."""

    status = 502
    code = "function_unreachable"
    retryable = True


Deliver = Callable[[aiohttp.ClientResponse], Awaitable[None]]


class GatewayMetrics:
    """Prometheus series under the OpenFaaS gateway's names (``function_name`` = name.namespace)."""

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
            "gateway_functions_seconds",
            "Function time taken",
            ["function_name"],
            registry=self.registry,
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


class Router:
    """The gateway: HTTP API, function pools, autoscaler ticks and the async queue."""

    def __init__(
        self,
        stack: StackFile,
        options: RouterOptions,
        state_dir: Path,
        secrets_dir: Path | None,
        env: Mapping[str, str],
        python: str = sys.executable,
    ) -> None:
        self.stack = stack
        self.options = options
        self.state_dir = state_dir
        self.launcher = Launcher(state_dir, env, secrets_dir, stack.copy_paths, python)
        for spec in stack.functions.values():
            self.launcher.prepare(spec)
        self.auth = _read_credentials(secrets_dir)
        self.metrics = GatewayMetrics(options.namespace)
        self.pools: dict[str, FunctionPool] = {}
        self.warm = False
        self._http: aiohttp.ClientSession | None = None
        self._callbacks: aiohttp.ClientSession | None = None
        self._queue: AsyncQueue | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._created = time.time()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open sessions, create pools, start the floor replicas, the ticker and the queue."""
        # Fresh connections to replicas: a pooled one may point at a replica that was killed.
        connector = aiohttp.TCPConnector(force_close=True, limit=0)
        self._http = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        self._callbacks = aiohttp.ClientSession()
        for name, spec in self.stack.functions.items():
            policy = ScalePolicy.for_function(spec, self.options)
            self.pools[name] = FunctionPool(spec, policy, self.launcher, self._http, self.options)
        for pool in self.pools.values():
            pool.autoscale()
        self._queue = AsyncQueue(
            self._run_async,
            self._callbacks,
            self.options.async_workers,
            self.options.async_queue_size,
            self.options.callback_timeout_s,
            self.options.callback_retries,
        )
        self._queue.start()
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        asyncio.get_running_loop().create_task(self._warm_up())

    async def close(self) -> None:
        """Stop the queue, the ticker and every replica (SIGTERM, grace, SIGKILL)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._queue is not None:
            await self._queue.close()
        await asyncio.gather(*(p.close(self.options.grace_s) for p in self.pools.values()))
        for session in (self._http, self._callbacks):
            if session is not None:
                await session.close()

    async def _tick(self) -> None:
        period = min(1.0, max(0.05, min(p.policy.idle_s for p in self.pools.values()) / 4))
        while True:
            await asyncio.sleep(period)
            for pool in self.pools.values():
                pool.autoscale()

    async def _warm_up(self) -> None:
        deadline = time.monotonic() + self.options.start_timeout_s
        while time.monotonic() < deadline and any(
            p.policy.floor > 0 and len(p.ready) < p.policy.floor and p.live for p in self.pools.values()
        ):
            await asyncio.sleep(0.05)
        self.warm = True

    # ------------------------------------------------------------ the app

    def make_app(self) -> web.Application:
        """The aiohttp application with every gateway route."""
        app = web.Application(
            middlewares=[self._errors_middleware, self._auth_middleware],
            client_max_size=self.options.max_body_bytes,
        )
        any_method = [
            web.route("*", p, self.handle_sync) for p in ("/function/{name}", "/function/{name}/{tail:.*}")
        ]
        app.add_routes(
            [
                *any_method,
                web.route("*", "/async-function/{name}", self.handle_async),
                web.route("*", "/async-function/{name}/{tail:.*}", self.handle_async),
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
        )
        return app

    @web.middleware
    async def _errors_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except FedfaasError as exc:
            return _json_error(exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = exc.reason.lower().replace(" ", "_")
            message = f"{request.method} {request.path}: {exc.reason}"
            return web.json_response(
                {"error": code, "message": message},
                status=exc.status,
                headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
            )

    @web.middleware
    async def _auth_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        auth, header = self.auth, request.headers.get("Authorization", "")
        if auth and request.path.startswith("/system/") and not _authorized(header, auth):
            response = _json_error(Unauthorized("basic auth credentials are required"))
            response.headers["WWW-Authenticate"] = 'Basic realm="Restricted"'
            return response
        return await handler(request)

    # ----------------------------------------------------------- invocation

    def _pool(self, name: str) -> FunctionPool:
        suffix = "." + self.options.namespace
        short = name[: -len(suffix)] if name.endswith(suffix) else name
        pool = self.pools.get(short)
        if pool is None:
            raise NotFound(f"function {name!r} is not deployed")
        return pool

    async def handle_sync(self, request: web.Request) -> web.StreamResponse:
        """``/function/<name>[/path]``: proxy the call to a replica, streaming both ways."""
        pool = self._pool(request.match_info["name"])
        call_id = request.headers.get("X-Call-Id") or str(uuid.uuid4())
        start_ns = time.time_ns()
        if (request.content_length or 0) > self.options.max_body_bytes:
            raise PayloadTooLarge(f"body exceeds {self.options.max_body_bytes} bytes")
        began = time.monotonic()
        stream = web.StreamResponse()

        async def deliver(upstream: aiohttp.ClientResponse) -> None:
            stream.set_status(upstream.status, upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                    stream.headers.add(key, value)
            _call_headers(stream.headers, call_id, start_ns, time.monotonic() - began)
            if upstream.content_length is not None:
                stream.content_length = upstream.content_length
            await stream.prepare(request)
            async for chunk in upstream.content.iter_chunked(_CHUNK):
                await stream.write(chunk)
            await stream.write_eof()

        data = request.content if request.body_exists else None
        headers = _forward_headers(request, call_id, start_ns)
        try:
            await self._invoke(
                pool, request.method, _upstream_path(request), headers, data, call_id, deliver, is_async=False
            )
        except FedfaasError as exc:
            if stream.prepared:
                raise  # headers are out: aborting the connection is the only honest signal
            response = _json_error(exc)
            _call_headers(response.headers, call_id, start_ns, time.monotonic() - began)
            return response
        return stream

    async def handle_async(self, request: web.Request) -> web.Response:
        """``/async-function/<name>[/path]``: accept with 202, run later, POST the callback."""
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        pool = self._pool(request.match_info["name"])
        call_id = request.headers.get("X-Call-Id") or str(uuid.uuid4())
        start_ns = time.time_ns()
        callback = request.headers.get("X-Callback-Url")
        if callback is not None:
            url = URL(callback)
            if url.scheme not in ("http", "https") or not url.host:
                raise BadRequest(f"X-Callback-Url must be an http(s) URL, got {callback!r}")
        body = await request.read()
        headers = _forward_headers(request, call_id, start_ns)
        assert self._queue is not None
        self._queue.submit(
            AsyncCall(
                function=pool.name,
                method="POST",
                path_qs=_upstream_path(request),
                headers=tuple(headers.items()),
                body=body,
                call_id=call_id,
                callback_url=callback,
                start_ns=start_ns,
            )
        )
        return web.Response(status=202, headers={"X-Call-Id": call_id, "X-Start-Time": str(start_ns)})

    async def _run_async(self, call: AsyncCall) -> CallResult:
        result = CallResult(status=500)
        began = time.monotonic()

        async def collect(upstream: aiohttp.ClientResponse) -> None:
            result.status = upstream.status
            result.headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            result.body = await upstream.read()

        try:
            await self._invoke(
                self.pools[call.function],
                call.method,
                call.path_qs,
                dict(call.headers),
                call.body,
                call.call_id,
                collect,
                is_async=True,
            )
        except FedfaasError as exc:
            result.status = exc.status
            result.body = json.dumps(exc.to_json()).encode()
            result.headers = {"Content-Type": "application/json"}
        result.duration_s = time.monotonic() - began
        return result

    async def _invoke(
        self,
        pool: FunctionPool,
        method: str,
        path_qs: str,
        headers: Mapping[str, str],
        data: Any,
        call_id: str,
        deliver: Deliver,
        is_async: bool,
    ) -> None:
        """Take a replica, send the call, hand the response to ``deliver``; log and count it."""
        assert self._http is not None
        began = time.monotonic()
        status, inst, cold = 500, None, False
        try:
            inst, cold = await pool.acquire(self.options.queue_timeout_s)
            url = URL(f"http://127.0.0.1:{inst.port}{path_qs}", encoded=True)
            limit = pool.policy.exec_timeout_s
            timeout = aiohttp.ClientTimeout(total=limit, sock_connect=_CONNECT_TIMEOUT_S)
            try:
                async with self._http.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    timeout=timeout,
                    allow_redirects=False,
                    skip_auto_headers=_SKIP_AUTO_HEADERS,
                ) as upstream:
                    status = upstream.status
                    await deliver(upstream)
            except TimeoutError as exc:
                raise FunctionTimeout(
                    f"function {pool.name} did not answer within {limit:g}s (exec_timeout)"
                ) from exc
            except aiohttp.ClientError as exc:
                raise BadGateway(
                    f"replica {inst.idx} of {pool.name} went away: {type(exc).__name__}"
                ) from exc
        except FedfaasError as exc:
            status = exc.status
            raise
        finally:
            elapsed = time.monotonic() - began
            if inst is not None:
                pool.release(inst, elapsed)
            pool.record_call(status)
            self.metrics.observe(pool.name, status, elapsed)
            log.info(
                "call",
                extra={
                    "fields": {
                        "function": pool.name,
                        "call_id": call_id,
                        "method": method,
                        "status": status,
                        "duration_s": round(elapsed, 6),
                        "instance": inst.idx if inst else None,
                        "cold_start": cold,
                        "async": is_async,
                    }
                },
            )

    # -------------------------------------------------------------- system

    def _function_status(self, pool: FunctionPool) -> dict[str, Any]:
        spec = pool.spec
        return {
            "name": spec.name,
            "image": spec.image,
            "namespace": self.options.namespace,
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
            "createdAt": _rfc3339(self._created),
        }

    async def list_functions(self, request: web.Request) -> web.Response:
        """``GET /system/functions``."""
        return web.json_response([self._function_status(p) for p in self.pools.values()])

    async def get_function(self, request: web.Request) -> web.Response:
        """``GET /system/function/<name>``."""
        return web.json_response(self._function_status(self._pool(request.match_info["name"])))

    async def scale_function(self, request: web.Request) -> web.Response:
        """``POST /system/scale-function/<name>`` with ``{"serviceName", "replicas"}``."""
        pool = self._pool(request.match_info["name"])
        body = await _json_body(request)
        service = body.get("serviceName", pool.name)
        if service not in (pool.name, f"{pool.name}.{self.options.namespace}"):
            raise BadRequest(f"serviceName {service!r} does not match the path ({pool.name})")
        replicas = body.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise BadRequest("replicas must be an integer")
        await pool.scale_to(replicas)
        return web.json_response({"serviceName": pool.name, "replicas": replicas}, status=202)

    async def get_accounting(self, request: web.Request) -> web.Response:
        """``GET /system/accounting``: container-seconds, calls and cold starts per function."""
        functions = {name: dict(pool.accounting_view()) for name, pool in self.pools.items()}
        totals = {
            key: sum(f[key] for f in functions.values())  # type: ignore[misc]
            for key in next(iter(functions.values()))
        }
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
        pool = self._pool(request.match_info["name"])
        body = await _json_body(request) if request.body_exists else {}
        idx = body.get("instance")
        if idx is not None and (not isinstance(idx, int) or isinstance(idx, bool)):
            raise BadRequest("instance must be an integer")
        inst = await pool.kill(idx)
        return web.json_response({"function": pool.name, "instance": inst.idx, "pid": inst.pid})

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: 200 once the floor replicas had their first chance to start."""
        if not self.warm:
            return web.json_response({"status": "warming"}, status=503)
        return web.Response(text="OK")

    async def get_metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics`` in the Prometheus text format."""
        body = self.metrics.render(self.pools)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# ------------------------------------------------------------------ helpers


def _upstream_path(request: web.Request) -> str:
    """The path (and raw query) after ``/function/<name>``, as the replica should see it."""
    raw = request.rel_url.raw_path
    parts = raw.split("/", 3)  # "", "function", "<name>", "rest"
    path = "/" + parts[3] if len(parts) > 3 else "/"
    query = request.rel_url.raw_query_string
    return f"{path}?{query}" if query else path


def _forward_headers(request: web.Request, call_id: str, start_ns: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    for key, value in request.headers.items():
        if key.lower() not in _HOP_BY_HOP and key.lower() not in ("x-call-id", "x-start-time"):
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    headers["X-Call-Id"] = call_id
    headers["X-Start-Time"] = str(start_ns)
    headers["X-Forwarded-Host"] = request.host
    if request.remote:
        headers["X-Forwarded-For"] = request.remote
    return headers


def _call_headers(headers: Any, call_id: str, start_ns: int, seconds: float) -> None:
    headers["X-Call-Id"] = call_id
    headers["X-Start-Time"] = str(start_ns)
    headers["X-Duration-Seconds"] = f"{seconds:.6f}"


def _json_error(exc: FedfaasError) -> web.Response:
    return web.json_response(exc.to_json(), status=exc.status)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _read_credentials(secrets_dir: Path | None) -> tuple[str, str] | None:
    if secrets_dir is None:
        return None
    try:
        user = (secrets_dir / "basic-auth-user").read_text().strip()
        password = (secrets_dir / "basic-auth-password").read_text().strip()
    except OSError:
        return None
    return (user, password) if user and password else None


def _authorized(header: str, credentials: tuple[str, str]) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user.encode(), credentials[0].encode()) & hmac.compare_digest(
        password.encode(), credentials[1].encode()
    )


def _rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


# --------------------------------------------------------------------- main


async def serve(router: Router, host: str, port: int) -> None:
    """Run ``router`` on ``host:port`` until SIGTERM or SIGINT; then stop every replica."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(
        router.make_app(), handle_signals=False, access_log=None, auto_decompress=False, shutdown_timeout=1.0
    )
    await runner.setup()
    try:
        await router.start()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        url = f"http://{host}:{bound}"
        info = {"pid": os.getpid(), "host": host, "port": bound, "url": url}
        tmp = router.state_dir / "router.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(router.state_dir / "router.json")
        log.info("router listening", extra={"fields": info})
        await stop.wait()
        log.info("router stopping")
    finally:
        await router.close()
        await runner.cleanup()
        (router.state_dir / "router.json").unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fedfaas.faas.router``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--secrets-dir", type=Path)
    parser.add_argument("--python", default=sys.executable, help="interpreter for replicas")
    RouterOptions.add_arguments(parser)
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(_JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    state_dir = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    write_pid_file(state_dir / "router.pid", os.getpid())
    try:
        options = RouterOptions.from_namespace(args)
        stack = load_stack(args.stack)
        router = Router(stack, options, state_dir, args.secrets_dir, dict(os.environ), args.python)
    except (FedfaasError, ValueError) as exc:
        log.error("cannot start", extra={"fields": {"error": str(exc)}})
        (state_dir / "router.pid").unlink(missing_ok=True)
        return 2
    try:
        asyncio.run(serve(router, args.host, args.port))
    finally:
        (state_dir / "router.pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
