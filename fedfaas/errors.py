"""One exception root for fedfaas.

Every error a caller can act on derives from :class:`FedfaasError` and carries
an HTTP status, a machine-readable ``code`` and a human message, so that the
gateway and the functions translate it to a JSON 4xx/5xx at one boundary.
"""

from __future__ import annotations

from typing import Any


class FedfaasError(Exception):
    """Root of every fedfaas error.

    Parameters
    ----------
    message
        What is wrong, written for the person who sent the request.
    code
        Stable machine-readable identifier (``snake_case``).
    status
        HTTP status the gateway answers with.
    retryable
        True when sending the same request again later may succeed.
    """

    status: int = 500
    code: str = "internal_error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if retryable is not None:
            self.retryable = retryable
        self.details = details or {}

    def to_json(self) -> dict[str, Any]:
        """The JSON body sent to the client."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(FedfaasError):
    """The request is malformed or violates a limit (400)."""

    status = 400
    code = "bad_request"


class Unauthorized(FedfaasError):
    """Missing or wrong credentials (401)."""

    status = 401
    code = "unauthorized"


class Forbidden(FedfaasError):
    """Credentials are valid but do not allow this action (403)."""

    status = 403
    code = "forbidden"


class NotFound(FedfaasError):
    """The named job, party, round or object does not exist (404)."""

    status = 404
    code = "not_found"


class Conflict(FedfaasError):
    """The request conflicts with the current state, e.g. a closed round (409)."""

    status = 409
    code = "conflict"


class PayloadTooLarge(FedfaasError):
    """The body exceeds a configured limit (413)."""

    status = 413
    code = "payload_too_large"


class TooManyRequests(FedfaasError):
    """Rate limit exceeded (429); safe to retry later."""

    status = 429
    code = "rate_limited"
    retryable = True


class Unavailable(FedfaasError):
    """A backing service (Redis, S3, a function) is unreachable (503); safe to retry."""

    status = 503
    code = "unavailable"
    retryable = True


class CodecError(BadRequest):
    """A model-update body is malformed, truncated or exceeds a limit."""

    code = "bad_update_body"


class FusionError(BadRequest):
    """Updates cannot be fused: mismatched names, shapes or dtypes, or bad weights."""

    code = "fusion_mismatch"
