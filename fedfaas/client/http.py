"""HTTP layer of the party SDK: one session, default timeouts, retries, one exception root.

Every call has a timeout.  Retryable failures are retried with backoff by
urllib3 under the project's one policy (:mod:`fedfaas.retry`, mounted on the
session's adapters); everything else becomes a :class:`FedfaasError`
subclass chosen by the HTTP status and carrying the server's JSON ``error``
code and ``message``.  Foreign exceptions (``requests``) are translated here
and nowhere else.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import requests
import urllib3

from fedfaas.errors import (
    BadRequest,
    CodecError,
    Conflict,
    FedfaasError,
    Forbidden,
    FusionError,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from fedfaas.retry import ALL_METHODS, IDEMPOTENT_METHODS, RETRYABLE_STATUSES, Retry

log = logging.getLogger("fedfaas.client")

#: (connect, read) seconds; reads are long because an upload is acknowledged only once in S3.
DEFAULT_TIMEOUT_S: tuple[float, float] = (5.0, 120.0)
USER_AGENT = "fedfaas-client/1"

_BY_STATUS: dict[int, type[FedfaasError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: TooManyRequests,
    503: Unavailable,
}
_BY_CODE: dict[str, type[FedfaasError]] = {
    CodecError.code: CodecError,
    FusionError.code: FusionError,
}


def error_from_response(resp: requests.Response) -> FedfaasError:
    """The :class:`FedfaasError` a non-2xx response stands for."""
    status = resp.status_code
    code, message, details = f"http_{status}", "", None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("error") or code)
        message = str(body.get("message") or "")
        details = body.get("details") if isinstance(body.get("details"), dict) else None
    if not message:
        message = (resp.text or resp.reason or "").strip()[:300] or f"HTTP {status}"
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = BadRequest if 400 <= status < 500 else FedfaasError
    return cls(f"{resp.request.method} {resp.url}: {message}", code=code, status=status,
               retryable=status in RETRYABLE_STATUSES, details=details)


def _timed_out(exc: requests.RequestException) -> bool:
    """True when ``exc`` is a timeout, also one urllib3 gave up retrying."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    refused = isinstance(reason, urllib3.exceptions.NewConnectionError)  # a TimeoutError to urllib3
    return isinstance(exc, requests.Timeout) or (
        isinstance(reason, urllib3.exceptions.TimeoutError) and not refused)


class FedfaasClient:
    """A session bound to one gateway and one bearer token.

    Parameters
    ----------
    base_url
        Gateway URL, e.g. ``http://127.0.0.1:8000``.
    token
        Bearer token (party, enrollment or admin); None for anonymous calls.
    timeout
        Default ``(connect, read)`` timeout in seconds for every call.
    retry
        Retry policy for retryable failures.
    seed
        Seeds the backoff jitter (reproducible runs).
    sleep
        How to wait between attempts (``time.sleep``; an event's ``wait`` makes retries stoppable).
    """

    def __init__(self, base_url: str, token: str | None = None, *,
                 timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
                 retry: Retry | None = None, seed: int | None = None,
                 sleep: Callable[[float], Any] = time.sleep) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise BadRequest(f"gateway URL {base_url!r} must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retry = retry or Retry()
        self._rng = random.Random(seed)
        self._sleep = sleep
        self._attempt = threading.local()  # the current call's attempts and start, per thread
        # Idempotent by method, and for calls declared idempotent (any method) or not (none).
        self._sessions = {idempotent: self._new_session(methods) for idempotent, methods in
                          ((None, IDEMPOTENT_METHODS), (True, ALL_METHODS), (False, frozenset()))}
        self._session = self._sessions[None]

    def _new_session(self, methods: frozenset[str]) -> requests.Session:
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        adapter = self.retry.adapter(methods, sleep=self._wait, rng=self._rng)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def _wait(self, seconds: float) -> None:
        """Sleep between two attempts of the current call (urllib3 calls it)."""
        log.info("retry %d of the current call in %.2f s", self._attempt.count + 1, seconds)
        self._sleep(seconds)
        self._attempt.count += 1
        self._attempt.started = time.perf_counter()

    # --- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pools."""
        for session in self._sessions.values():
            session.close()

    def __enter__(self) -> FedfaasClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def with_token(self, token: str) -> FedfaasClient:
        """A new client for the same gateway and policy with another token."""
        return FedfaasClient(self.base_url, token, timeout=self.timeout, retry=self.retry,
                             sleep=self._sleep)

    # --- requests ------------------------------------------------------------------------
    def timed_request(self, method: str, path: str, *, json_body: Any = None,
                      data: bytes | None = None, params: Mapping[str, Any] | None = None,
                      headers: Mapping[str, str] | None = None, idempotent: bool | None = None,
                      timeout: float | tuple[float, float] | None = None,
                      ) -> tuple[requests.Response, float]:
        """Send a request with retries; return the 2xx response and the last attempt's seconds.

        The seconds cover sending the body and reading the whole answer of the
        attempt that succeeded (what bandwidth estimates need).  Raises a
        :class:`FedfaasError`: the mapped server error for a non-2xx answer, or
        :class:`Unavailable` when the gateway stays unreachable.
        """
        method = method.upper()
        if idempotent is not None and idempotent == (method in IDEMPOTENT_METHODS):
            idempotent = None  # the method says it already
        url = self.base_url + path
        all_headers = dict(headers or {})
        if self.token is not None:
            all_headers["Authorization"] = f"Bearer {self.token}"
        self._attempt.count, self._attempt.started = 0, time.perf_counter()
        try:
            resp = self._sessions[idempotent].request(
                method, url, json=json_body, data=data, params=params, headers=all_headers,
                timeout=timeout if timeout is not None else self.timeout)
        except requests.RequestException as exc:
            raise self._transport_error(method, url, exc, self._attempt.count) from exc
        elapsed = time.perf_counter() - self._attempt.started
        if resp.status_code >= 400:
            raise error_from_response(resp)
        return resp, elapsed

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """:meth:`timed_request` without the timing."""
        return self.timed_request(method, path, **kwargs)[0]

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """Send a request and return its JSON object body."""
        resp = self.request(method, path, **kwargs)
        try:
            body = resp.json()
        except ValueError:
            kind = resp.headers.get("Content-Type")
            raise FedfaasError(f"{method} {path}: the gateway answered non-JSON ({kind!r})",
                               code="bad_response") from None
        if not isinstance(body, dict):
            raise FedfaasError(f"{method} {path}: expected a JSON object, "
                               f"got {type(body).__name__}", code="bad_response")
        return body

    @staticmethod
    def _transport_error(method: str, url: str, exc: requests.RequestException,
                         attempt: int) -> FedfaasError:
        code = "timeout" if _timed_out(exc) else "connection_error"
        tries = f" after {attempt + 1} attempts" if attempt else ""
        return Unavailable(f"{method} {url} failed{tries}: {type(exc).__name__}: {exc}", code=code)

