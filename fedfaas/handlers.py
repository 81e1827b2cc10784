"""What every OpenFaaS handler of fedfaas shares: JSON in, JSON out, errors as 4xx JSON.

Handlers stay as thin as the python3-http template: parse the body into its
:mod:`fedfaas.contracts` model, call the core, return.  This module is the one
boundary where exceptions become responses.

The OpenFaaS gateway does not authenticate ``/function/<name>``, and a
function's request names S3 objects of any tenant, so every call that reads
or writes data must carry the internal token only the fedfaas gateway holds
(:func:`require_internal_token`).
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from fedfaas.config import FUNCTION_ERROR_HEADER, INTERNAL_TOKEN_HEADER, internal_token
from fedfaas.errors import BadRequest, FedfaasError, Forbidden, Unauthorized

log = logging.getLogger("fedfaas.function")

Response = dict[str, Any]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A python3-http template response with a JSON body (a contract model is sent as its JSON)."""
    return {
        "statusCode": status,
        "body": body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body),
        "headers": {"Content-Type": "application/json", **(headers or {})},
    }


def loads_body(raw: bytes | str) -> Any:
    """A request body as JSON; 400 naming what is wrong when it is not."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("request body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None


def _header(event: Any, name: str) -> str | None:
    """Header ``name`` of the event, case-insensitively (Flask's headers or a plain dict)."""
    headers = getattr(event, "headers", None) or {}
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if str(k).lower() == wanted), None)
    return None if value is None else str(value)


def require_internal_token(event: Any) -> None:
    """Refuse the call unless it carries the internal token (constant-time comparison).

    The secret is read on every call, so a rotated secret file takes effect
    without a restart.

    Raises
    ------
    Unauthorized
        The call has no ``X-Fedfaas-Internal-Token`` header.
    Forbidden
        The token is wrong, or this function has no token configured (fail closed).
    """
    expected = internal_token()
    if expected is None:
        raise Forbidden("this function has no internal token configured (OpenFaaS secret "
                        "'fedfaas-internal-token'), so it refuses every data call",
                        code="internal_token_not_configured")
    given = _header(event, INTERNAL_TOKEN_HEADER)
    if not given:
        raise Unauthorized(f"missing {INTERNAL_TOKEN_HEADER} header: only the fedfaas gateway "
                           "may call this function", code="internal_token_required")
    if not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace")):
        raise Forbidden(f"wrong {INTERNAL_TOKEN_HEADER}", code="internal_token_invalid")


def guarded(fn: Callable[[Any, Any], Response]) -> Callable[[Any, Any], Response]:
    """Wrap a handler so that every error becomes a JSON 4xx/5xx response marked as the
    function's own (:data:`FUNCTION_ERROR_HEADER`)."""

    def wrapper(event: Any, context: Any) -> Response:
        mark = {FUNCTION_ERROR_HEADER: "1"}
        try:
            return fn(event, context)
        except FedfaasError as exc:
            headers = {**mark, "Retry-After": "2"} if exc.retryable else mark
            return json_response(exc.status, exc.to_json(), headers)
        except MemoryError:
            log.exception("out of memory")
            return json_response(507, {"error": "out_of_memory", "message": "function ran out of memory"},
                                 mark)
        except Exception:  # a bug: answer it as this function's failure, keep serving
            # The details stay in the function's log: they may name other objects.
            ref = uuid.uuid4().hex[:12]
            log.exception("unexpected error (ref %s)", ref)
            return json_response(500, {"error": "function_error",
                                       "message": f"unexpected error in the function (ref {ref}; "
                                                  "details in its log)"}, mark)

    wrapper.__name__ = getattr(fn, "__name__", "handle")
    wrapper.__doc__ = fn.__doc__
    return wrapper
