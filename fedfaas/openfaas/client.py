"""HTTP client of the OpenFaaS gateway API: the local router or a real OpenFaaS gateway.

Function calls return the raw :class:`requests.Response` (the function's status
is the caller's business); ``/system`` calls raise a :class:`FedfaasError`
subclass on a 4xx/5xx and :class:`Unavailable` (safe to retry) when the
gateway cannot be reached.  The local-only calls (``accounting``, ``kill``,
``instances``) exist only on the fedfaas router.

A client built with an internal token (:meth:`FaasClient.from_settings` does
so) sends it in ``X-Fedfaas-Internal-Token`` on every function call, sync and
async: the functions serve data only to callers holding it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from typing import Any

import requests

from fedfaas.config import FUNCTION_ERROR_HEADER, INTERNAL_TOKEN_HEADER, Settings
from fedfaas.errors import (
    BadRequest,
    FedfaasError,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from fedfaas.retry import IDEMPOTENT_METHODS, NO_RETRY, Retry, Sleep

DEFAULT_TIMEOUT_S = 30.0
_POLL_S = 0.05
_ERRORS: dict[int, type[FedfaasError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    429: TooManyRequests,
}


class FaasClient:
    """Calls functions and the ``/system`` API of an OpenFaaS-compatible gateway.

    Parameters
    ----------
    base_url
        Gateway URL, e.g. ``http://127.0.0.1:8080``.
    auth
        Basic-auth ``(user, password)`` for ``/system``; ``None`` when the gateway has none.
    timeout
        Default timeout in seconds of every request.
    internal_token
        Sent in ``X-Fedfaas-Internal-Token`` on function calls (not on
        ``/system``, which has its own auth); ``None`` sends nothing.
    retry
        The project's retry policy (:mod:`fedfaas.retry`), mounted on the session;
        none by default: callers such as the Request Tracker classify failures themselves.
    idempotent
        Methods this client's calls may be repeated with (every method for
        a client whose calls are all idempotent, e.g. aggregation steps).
    sleep
        How to wait between two attempts (a caller may log there).
    """

    def __init__(
        self,
        base_url: str,
        auth: tuple[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        internal_token: str | None = None,
        retry: Retry = NO_RETRY,
        idempotent: frozenset[str] = IDEMPOTENT_METHODS,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._session.auth = auth
        adapter = retry.adapter(idempotent, sleep=sleep)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._internal_token = internal_token or None

    @classmethod
    def from_settings(cls, settings: Settings, timeout: float = DEFAULT_TIMEOUT_S, retry: Retry = NO_RETRY,
                      idempotent: frozenset[str] = IDEMPOTENT_METHODS, sleep: Sleep = time.sleep
                      ) -> FaasClient:
        """A client of ``settings``' OpenFaaS gateway with its basic auth and internal token."""
        return cls(settings.faas_gateway_url, settings.faas_basic_auth, timeout=timeout,
                   internal_token=settings.internal_token, retry=retry, idempotent=idempotent,
                   sleep=sleep)

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def __enter__(self) -> FaasClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- functions

    def invoke(
        self,
        name: str,
        body: bytes | str = b"",
        path: str = "",
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """Call ``name`` synchronously (``/function/<name>[/path]``); returns the response as is.

        Raises
        ------
        Unavailable
            The gateway could not be reached or did not answer in time.
        """
        return self._request(
            method,
            self._function_url("function", name, path),
            data=body or None,
            headers=self._function_headers(headers),
            params=params,
            timeout=timeout,
            check=False,
        )

    def invoke_async(
        self,
        name: str,
        body: bytes | str = b"",
        path: str = "",
        headers: Mapping[str, str] | None = None,
        callback_url: str | None = None,
    ) -> str:
        """Queue a call (``/async-function/<name>``); returns its ``X-Call-Id``."""
        all_headers = self._function_headers(headers)
        if callback_url is not None:
            all_headers["X-Callback-Url"] = callback_url
        response = self._request(
            "POST",
            self._function_url("async-function", name, path),
            data=body,
            headers=all_headers,
        )
        return response.headers["X-Call-Id"]

    # ---------------------------------------------------------------- system

    def list_functions(self) -> list[dict[str, Any]]:
        """``GET /system/functions``."""
        result: list[dict[str, Any]] = self._request("GET", "/system/functions").json()
        return result

    def function(self, name: str) -> dict[str, Any]:
        """``GET /system/function/<name>``."""
        result: dict[str, Any] = self._request("GET", f"/system/function/{name}").json()
        return result

    def scale(self, name: str, replicas: int) -> None:
        """``POST /system/scale-function/<name>``."""
        self._request(
            "POST",
            f"/system/scale-function/{name}",
            json={"serviceName": name, "replicas": replicas},
        )

    def kill(self, name: str, instance: int | None = None) -> dict[str, Any]:
        """SIGKILL one replica of ``name`` (a random one by default); returns its index and pid."""
        body = {} if instance is None else {"instance": instance}
        result: dict[str, Any] = self._request("POST", f"/system/kill/{name}", json=body).json()
        return result

    def instances(self) -> dict[str, list[dict[str, Any]]]:
        """Every replica per function: index, pid, port, state, calls in flight."""
        result: dict[str, list[dict[str, Any]]] = self._request("GET", "/system/instances").json()
        return result

    def accounting(self) -> dict[str, Any]:
        """Container-seconds, invocations, cold starts and lost replicas per function."""
        result: dict[str, Any] = self._request("GET", "/system/accounting").json()
        return result

    def reset_accounting(self) -> dict[str, Any]:
        """Start a new accounting period (e.g. before measuring one job)."""
        result: dict[str, Any] = self._request("POST", "/system/accounting/reset").json()
        return result

    def metrics(self) -> str:
        """The Prometheus exposition of ``/metrics``."""
        return self._request("GET", "/metrics").text

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until ``/healthz`` answers 200 (the floor replicas had their first start).

        Raises
        ------
        Unavailable
            Not ready within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = self._session.get(self.base_url + "/healthz", timeout=1.0)
                if response.status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"gateway {self.base_url} not ready within {timeout:g}s")
            time.sleep(_POLL_S)

    def wait_replicas(self, name: str, available: int, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until ``name`` has exactly ``available`` ready replicas; returns its status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.function(name)
            if status["availableReplicas"] == available:
                return status
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"{name} has {status['availableReplicas']} ready replicas, "
                    f"not {available}, after {timeout:g}s"
                )
            time.sleep(_POLL_S)

    # --------------------------------------------------------------- helpers

    def _function_headers(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        """The caller's headers plus the internal token (a caller's own value wins, e.g. in tests)."""
        out = {INTERNAL_TOKEN_HEADER: self._internal_token} if self._internal_token else {}
        given = dict(headers or {})
        if any(k.lower() == INTERNAL_TOKEN_HEADER.lower() for k in given):
            out = {}
        return {**out, **given}

    def _function_url(self, kind: str, name: str, path: str) -> str:
        tail = "/" + path.lstrip("/") if path else ""
        return f"/{kind}/{name}{tail}"

    def _request(
        self,
        method: str,
        path: str,
        timeout: float | None = None,
        check: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        try:
            response = self._session.request(
                method, self.base_url + path, timeout=timeout or self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise Unavailable(f"{method} {self.base_url}{path} failed: {exc}") from exc
        if check and response.status_code >= 400:
            raise _error_for(response)
        return response


class FunctionAnswer(enum.Enum):
    """What a function call's answer means for the caller (see :func:`classify_answer`)."""

    OK = "ok"
    TOKEN_REFUSED = "token_refused"
    """401/403: the deployment's internal token, not the request, is wrong."""
    FAILED = "failed"
    """The function's own 500: it ran the request and failed; it would fail again."""
    OUT_OF_MEMORY = "out_of_memory"
    """The function's own 507."""
    OWN_UNAVAILABLE = "own_unavailable"
    """The function's own other 5xx or 429 (e.g. S3 unreachable from it): alive, retry later."""
    REFUSED = "refused"
    """The function's own 4xx: it refused the request."""
    BUSY = "busy"
    """The platform's 429, 503 or 504: an instance busy or slow, not gone."""
    UNREACHABLE = "unreachable"
    """The platform's other 5xx (502, OpenFaaS' proxy 500): the instance may be gone."""
    PLATFORM_REFUSED = "platform_refused"
    """The platform's other 4xx (e.g. the function is not deployed)."""


def classify_answer(response: requests.Response) -> FunctionAnswer:
    """Tell the function's own answers (marked ``X-Fedfaas-Function-Error`` by the
    handlers) from the platform's, and success from each kind of failure."""
    status = response.status_code
    if status < 400:
        return FunctionAnswer.OK
    if status in (401, 403):
        return FunctionAnswer.TOKEN_REFUSED
    own = response.headers.get(FUNCTION_ERROR_HEADER) is not None
    retryable = status >= 500 or status == 429
    if own:
        if status == 500:
            return FunctionAnswer.FAILED
        if status == 507:
            return FunctionAnswer.OUT_OF_MEMORY
        return FunctionAnswer.OWN_UNAVAILABLE if retryable else FunctionAnswer.REFUSED
    if status in (429, 503, 504):
        return FunctionAnswer.BUSY
    return FunctionAnswer.UNREACHABLE if retryable else FunctionAnswer.PLATFORM_REFUSED


def error_message(response: requests.Response) -> str:
    """The ``message`` of a JSON error answer, else its text."""
    try:
        return str(response.json().get("message", response.text))
    except (ValueError, AttributeError):
        return response.text


def _error_for(response: requests.Response) -> FedfaasError:
    message = error_message(response)
    kind = _ERRORS.get(response.status_code)
    if kind is not None:
        return kind(message)
    if response.status_code >= 500:
        return Unavailable(message, status=response.status_code)
    return FedfaasError(message, status=response.status_code, code="gateway_error")
