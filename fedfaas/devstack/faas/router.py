"""Local OpenFaaS gateway: runs every function of ``stack.yml`` as processes behind its API.

Paths, as on the OpenFaaS gateway: ``/function/<name>[/path]`` (sync, any
method), ``/async-function/<name>[/path]`` (202, optional ``X-Callback-Url``),
``/system/functions``, ``/system/function/<name>``,
``/system/scale-function/<name>``, ``/healthz`` and ``/metrics``.  Local
extras under ``/system`` (behind the same basic auth): ``accounting`` and
``accounting/reset`` (container-seconds per function, the cost the JIT and
FLStore papers compare), ``instances`` and ``kill/<name>`` (fault injection).

Usage::

    python -m fedfaas.devstack.faas.router --stack stack.yml --port 8080 --state-dir .fedfaas/devstack/faas
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from multidict import CIMultiDict
from prometheus_client import disable_created_metrics
from yarl import URL

from fedfaas.devstack.faas.asyncq import AsyncCall, AsyncQueue, CallResult
from fedfaas.devstack.faas.launcher import Launcher, write_pid_file
from fedfaas.devstack.faas.logs import configure as configure_logging
from fedfaas.devstack.faas.logs import event
from fedfaas.devstack.faas.options import RouterOptions
from fedfaas.devstack.faas.pool import FunctionPool
from fedfaas.devstack.faas.proxy import (
    CHUNK,
    CONNECT_TIMEOUT_S,
    HOP_BY_HOP,
    SKIP_AUTO_HEADERS,
    BadGateway,
    FunctionTimeout,
    call_headers,
    forward_headers,
    upstream_path,
)
from fedfaas.devstack.faas.replica import ScalePolicy
from fedfaas.devstack.faas.system import (
    GatewayMetrics,
    SystemApi,
    authorized,
    find_pool,
    json_error,
    read_credentials,
)
from fedfaas.errors import BadRequest, FedfaasError, PayloadTooLarge, Unauthorized
from fedfaas.openfaas.stackfile import StackFile, load_stack

Deliver = Callable[[aiohttp.ClientResponse], Awaitable[None]]


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
        self.auth = read_credentials(secrets_dir)
        self.metrics = GatewayMetrics(options.namespace)
        self.pools: dict[str, FunctionPool] = {}
        self.warm = False
        self.system = SystemApi(self.pools, options.namespace, self.metrics, lambda: self.warm)
        self._http: aiohttp.ClientSession | None = None
        self._callbacks: aiohttp.ClientSession | None = None
        self._queue: AsyncQueue | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._warmer: asyncio.Task[None] | None = None

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
        self._warmer = asyncio.get_running_loop().create_task(self._warm_up())

    async def close(self) -> None:
        """Stop the queue, the ticker and every replica (SIGTERM, grace, SIGKILL)."""
        for task in (self._ticker, self._warmer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
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
                *self.system.routes(),
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
            return json_error(exc)
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
        if auth and request.path.startswith("/system/") and not authorized(header, auth):
            response = json_error(Unauthorized("basic auth credentials are required"))
            response.headers["WWW-Authenticate"] = 'Basic realm="Restricted"'
            return response
        return await handler(request)

    # ----------------------------------------------------------- invocation

    def _pool(self, name: str) -> FunctionPool:
        return find_pool(self.pools, name, self.options.namespace)

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
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    stream.headers.add(key, value)
            call_headers(stream.headers, call_id, start_ns, time.monotonic() - began)
            if upstream.content_length is not None:
                stream.content_length = upstream.content_length
            await stream.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await stream.write(chunk)
            await stream.write_eof()

        data = request.content if request.body_exists else None
        headers = forward_headers(request, call_id, start_ns)
        try:
            await self._invoke(
                pool, request.method, upstream_path(request), headers, data, call_id, deliver, is_async=False
            )
        except FedfaasError as exc:
            if stream.prepared:
                raise  # headers are out: aborting the connection is the only honest signal
            response = json_error(exc)
            call_headers(response.headers, call_id, start_ns, time.monotonic() - began)
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
        headers = forward_headers(request, call_id, start_ns)
        assert self._queue is not None
        self._queue.submit(
            AsyncCall(
                function=pool.name,
                method="POST",
                path_qs=upstream_path(request),
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
            result.headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            result.body = await upstream.read()

        try:
            await self._invoke(
                self.pools[call.function],
                call.method,
                call.path_qs,
                CIMultiDict(call.headers),
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
            timeout = aiohttp.ClientTimeout(total=limit, sock_connect=CONNECT_TIMEOUT_S)
            try:
                async with self._http.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    timeout=timeout,
                    allow_redirects=False,
                    skip_auto_headers=SKIP_AUTO_HEADERS,
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
            event(
                "call",
                function=pool.name,
                call_id=call_id,
                method=method,
                status=status,
                duration_s=round(elapsed, 6),
                instance=inst.idx if inst else None,
                cold_start=cold,
                is_async=is_async,
            )


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
        event("router listening", **info)
        await stop.wait()
        event("router stopping")
    finally:
        await router.close()
        await runner.cleanup()
        (router.state_dir / "router.json").unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m fedfaas.devstack.faas.router``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--secrets-dir", type=Path)
    parser.add_argument("--python", default=sys.executable, help="interpreter for replicas")
    RouterOptions.add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging()
    disable_created_metrics()  # the Go gateway exposes no *_created series
    state_dir = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    write_pid_file(state_dir / "router.pid", os.getpid())
    try:
        options = RouterOptions.from_namespace(args)
        stack = load_stack(args.stack)
        router = Router(stack, options, state_dir, args.secrets_dir, dict(os.environ), args.python)
    except (FedfaasError, ValueError) as exc:
        event("cannot start", logging.ERROR, error=str(exc))
        (state_dir / "router.pid").unlink(missing_ok=True)
        return 2
    try:
        asyncio.run(serve(router, args.host, args.port))
    finally:
        (state_dir / "router.pid").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
