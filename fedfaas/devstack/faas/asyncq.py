"""The ``/async-function`` queue: bounded, run by a fixed set of workers, results POSTed back.

Stands in for OpenFaaS's NATS queue and queue-worker.  A call is accepted with
202 and ``X-Call-Id``; a worker runs it later and, when the caller gave
``X-Callback-Url``, POSTs the function's response there with ``X-Call-Id``,
``X-Function-Status``, ``X-Function-Name`` and ``X-Duration-Seconds``.  A
failed callback (connection error, timeout or 5xx) is retried with
exponential back-off.  Accepted calls live in memory only, as with OpenFaaS CE's
in-memory NATS: a router restart drops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp

from fedfaas.devstack.faas.logs import event, log
from fedfaas.errors import TooManyRequests

_BACKOFF_S = 0.5


@dataclass(frozen=True)
class AsyncCall:
    """One accepted asynchronous invocation."""

    function: str
    method: str
    path_qs: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    call_id: str
    callback_url: str | None
    start_ns: int


@dataclass
class CallResult:
    """What the function answered (or the router's JSON error)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0


Runner = Callable[[AsyncCall], Awaitable[CallResult]]


class AsyncQueue:
    """Bounded queue of :class:`AsyncCall` run by ``workers`` tasks.

    Parameters
    ----------
    run
        Invokes the function and returns its result; must not raise.
    http
        Session used for callbacks.
    workers, size
        Concurrency and bound; :meth:`submit` raises ``TooManyRequests`` when full.
    callback_timeout_s, callback_retries
        Timeout of one callback POST and how many times a failed one is retried.
    """

    def __init__(
        self,
        run: Runner,
        http: aiohttp.ClientSession,
        workers: int,
        size: int,
        callback_timeout_s: float,
        callback_retries: int,
    ) -> None:
        self._run = run
        self._http = http
        self._queue: asyncio.Queue[AsyncCall] = asyncio.Queue(maxsize=size)
        self._workers_wanted = workers
        self._workers: list[asyncio.Task[None]] = []
        self._callback_timeout = aiohttp.ClientTimeout(total=callback_timeout_s)
        self._callback_retries = callback_retries

    def start(self) -> None:
        """Start the workers."""
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work()) for _ in range(self._workers_wanted)]

    def submit(self, call: AsyncCall) -> None:
        """Accept ``call`` for later execution."""
        try:
            self._queue.put_nowait(call)
        except asyncio.QueueFull:
            raise TooManyRequests(f"the async queue is full ({self._queue.maxsize} calls waiting)") from None

    @property
    def depth(self) -> int:
        """Calls accepted and not yet taken by a worker."""
        return self._queue.qsize()

    async def close(self) -> None:
        """Stop the workers; calls still queued are dropped."""
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []

    async def _work(self) -> None:
        while True:
            call = await self._queue.get()
            try:
                result = await self._run(call)
                if call.callback_url:
                    await self.deliver(call, result)
            except Exception:  # one bad call must not stop the worker
                log.exception("async call failed", extra={"fields": {"call_id": call.call_id}})
            finally:
                self._queue.task_done()

    async def deliver(self, call: AsyncCall, result: CallResult) -> bool:
        """POST ``result`` to the call's ``X-Callback-Url``; True once it was accepted."""
        assert call.callback_url is not None
        headers: Mapping[str, str] = {
            **{k: v for k, v in result.headers.items() if k.lower() == "content-type"},
            "X-Call-Id": call.call_id,
            "X-Function-Name": call.function,
            "X-Function-Status": str(result.status),
            "X-Duration-Seconds": f"{result.duration_s:.6f}",
            "X-Start-Time": str(call.start_ns),
        }
        for attempt in range(self._callback_retries + 1):
            if attempt:
                await asyncio.sleep(_BACKOFF_S * 2 ** (attempt - 1))
            try:
                async with self._http.post(
                    call.callback_url,
                    data=result.body,
                    headers=headers,
                    timeout=self._callback_timeout,
                    allow_redirects=False,
                ) as resp:
                    await resp.read()
                    if resp.status < 500:
                        return True
                    problem = f"status {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            event(
                "callback failed",
                logging.WARNING,
                call_id=call.call_id,
                url=call.callback_url,
                attempt=attempt + 1,
                error=problem,
            )
        return False
