"""What every OpenFaaS handler of fedfaas shares: JSON in, JSON out, errors as 4xx JSON.

Handlers stay as thin as the python3-http template: parse, call the core,
return.  This module is the one boundary where exceptions become responses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from fedfaas.errors import BadRequest, FedfaasError

log = logging.getLogger("fedfaas.function")

Response = dict[str, Any]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A python3-http template response with a JSON body."""
    return {
        "statusCode": status,
        "body": json.dumps(body),
        "headers": {"Content-Type": "application/json", **(headers or {})},
    }


def parse_json(event: Any) -> Any:
    """The request body as JSON; 400 when it is not."""
    raw = event.body or b"{}"
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None


def guarded(fn: Callable[[Any, Any], Response]) -> Callable[[Any, Any], Response]:
    """Wrap a handler so that fedfaas errors become JSON 4xx/5xx responses."""

    def wrapper(event: Any, context: Any) -> Response:
        try:
            return fn(event, context)
        except FedfaasError as exc:
            headers = {"Retry-After": "2"} if exc.retryable else None
            return json_response(exc.status, exc.to_json(), headers)
        except MemoryError:
            log.exception("out of memory")
            return json_response(507, {"error": "out_of_memory", "message": "function ran out of memory"})

    wrapper.__name__ = getattr(fn, "__name__", "handle")
    wrapper.__doc__ = fn.__doc__
    return wrapper
