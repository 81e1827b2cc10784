"""HTTP layer of the party SDK: one session, default timeouts, retries, one exception root.

Every call has a timeout.  Retryable failures (see :mod:`fedfaas.client.retry`)
are retried with backoff; everything else becomes a :class:`FedfaasError`
subclass chosen by the HTTP status and carrying the server's JSON ``error``
code and ``message``.  Foreign exceptions (``requests``) are translated here
and nowhere else.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import requests

from fedfaas.client.retry import Retry, parse_retry_after
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
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})


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
               retryable=status in (429, 502, 503, 504), details=details)


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly did not reach the server (safe to resend anything)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = repr(exc)
        return "NewConnectionError" in text or "Connection refused" in text
    return False


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
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT

    # --- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool."""
        self._session.close()

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
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS
        url = self.base_url + path
        all_headers = dict(headers or {})
        if self.token is not None:
            all_headers["Authorization"] = f"Bearer {self.token}"
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                resp = self._session.request(
                    method, url, json=json_body, data=data, params=params, headers=all_headers,
                    timeout=timeout if timeout is not None else self.timeout)
            except requests.RequestException as exc:
                safe = idempotent or _never_sent(exc)
                if not safe or attempt >= self.retry.retries:
                    raise self._transport_error(method, url, exc, attempt) from exc
                wait = self.retry.wait_s(attempt, None, self._rng)
                log.info("%s %s failed (%s); retry %d in %.2f s", method, url,
                         type(exc).__name__, attempt + 1, wait)
            else:
                elapsed = time.perf_counter() - started
                if resp.status_code < 400:
                    return resp, elapsed
                if (attempt >= self.retry.retries
                        or not self.retry.status_is_retryable(resp.status_code, idempotent)):
                    raise error_from_response(resp)
                wait = self.retry.wait_s(
                    attempt, parse_retry_after(resp.headers.get("Retry-After")), self._rng)
                log.info("%s %s answered %d; retry %d in %.2f s", method, url,
                         resp.status_code, attempt + 1, wait)
                resp.close()
            self._sleep(wait)
            attempt += 1

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
        code = "timeout" if isinstance(exc, requests.Timeout) else "connection_error"
        tries = f" after {attempt + 1} attempts" if attempt else ""
        return Unavailable(f"{method} {url} failed{tries}: {type(exc).__name__}: {exc}", code=code)

