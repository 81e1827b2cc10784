"""The gateway's proxy conventions: which headers pass, which are added, how errors look.

As the OpenFaaS gateway does, a call gets ``X-Call-Id`` (the caller's, or a new
UUID), ``X-Start-Time`` (Unix nanoseconds) and, on the response,
``X-Duration-Seconds``; hop-by-hop headers never cross the proxy.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from fedfaas.errors import FedfaasError

# Per-connection headers (RFC 9110 Sec. 7.6.1) and the gateway's own: never forwarded to a replica.
HOP_BY_HOP = frozenset(
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
SKIP_AUTO_HEADERS = frozenset({"Content-Type", "User-Agent", "Accept", "Accept-Encoding"})
CHUNK = 1 << 16
CONNECT_TIMEOUT_S = 5.0


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


def upstream_path(request: web.Request) -> str:
    """The path (and raw query) after ``/function/<name>``, as the replica should see it."""
    raw = request.rel_url.raw_path
    parts = raw.split("/", 3)  # "", "function", "<name>", "rest"
    path = "/" + parts[3] if len(parts) > 3 else "/"
    query = request.rel_url.raw_query_string
    return f"{path}?{query}" if query else path


def forward_headers(request: web.Request, call_id: str, start_ns: int) -> CIMultiDict[str]:
    """Headers for the replica: the caller's end-to-end ones (repeats kept) plus the gateway's ``X-*``."""
    headers: CIMultiDict[str] = CIMultiDict()
    for key, value in request.headers.items():
        if key.lower() not in HOP_BY_HOP and key.lower() not in ("x-call-id", "x-start-time"):
            headers.add(key, value)
    headers["X-Call-Id"] = call_id
    headers["X-Start-Time"] = str(start_ns)
    headers["X-Forwarded-Host"] = request.host
    if request.remote:
        headers["X-Forwarded-For"] = request.remote
    return headers


def call_headers(headers: Any, call_id: str, start_ns: int, seconds: float) -> None:
    """Add the gateway's ``X-Call-Id``, ``X-Start-Time`` and ``X-Duration-Seconds`` to a response."""
    headers["X-Call-Id"] = call_id
    headers["X-Start-Time"] = str(start_ns)
    headers["X-Duration-Seconds"] = f"{seconds:.6f}"
