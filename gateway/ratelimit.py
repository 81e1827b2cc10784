"""Per-party request rate limit: a fixed one-minute window counted in Redis.

A provider serving thousands of FL jobs must keep one misbehaving party (or a
leaked token) from starving the others.  Every request authenticated by a
party token counts against that party, every request of a tenant admin
against its token.  The counter lives in Redis, so the limit holds across
every gateway replica.  Over the limit the gateway answers 429 with
``Retry-After`` (seconds until the window ends).

Two principals are not limited: the operator (``root``), and a job's
enrollment token, which every party of a federation shares to register, so a
per-token limit would throttle the registration of large federations.

``FEDFAAS_RATE_LIMIT_PER_MIN`` sets the limit (default 600); ``0`` turns it off.

Why not ``flask-limiter`` (with ``limits``' Redis storage): it was evaluated and
does not fit.  Its storage builds its own Redis client from a URI, outside
:func:`fedfaas.meta.connect` (timeouts, the one Redis retry policy) and outside
the key names of :mod:`fedfaas.keys`; its windows are read from the storage's
clock, so the limiter cannot be driven with an explicit ``now`` (the fixed-window
test relies on it); the subject comes from the principal the gateway
authenticates anyway, which flask-limiter would need re-derived in a key
function plus an exemption hook; and over the limit it raises its own 429, which
would have to be re-rendered as our JSON error with ``Retry-After``.  What is
left to replace is one INCR+EXPIRE pipeline: less code than the adapters.
A Redis outage raises ``redis.RedisError``, which the app answers with a JSON 503.
"""

from __future__ import annotations

import math
import time
from typing import Any

import redis
from flask import Flask, request

from fedfaas import keys
from fedfaas.config import Settings, load_settings
from fedfaas.errors import TooManyRequests, Unauthorized
from gateway.auth import Principal, bearer, token_hash

DEFAULT_PER_MIN = Settings.rate_limit_per_min
WINDOW_S = 60


class RateLimited(TooManyRequests):
    """The caller exceeded its request budget for the current window (429)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, details={"retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s


def subject(principal: Principal, authorization: str | None) -> str | None:
    """What a request is counted against, or None when the caller is not limited."""
    if principal.role == "party":
        return keys.rate_subject_party(str(principal.job), str(principal.party))
    if principal.role == "tenant-admin":
        return keys.rate_subject_token(token_hash(bearer(authorization)))
    return None


class RateLimiter:
    """Fixed-window counter per subject.

    Parameters
    ----------
    client
        Redis, shared by every gateway replica.
    per_window
        Requests allowed per subject and window.
    window_s
        Window length in seconds.
    """

    def __init__(self, client: redis.Redis, per_window: int, window_s: int = WINDOW_S) -> None:
        if per_window < 1 or window_s < 1:
            raise ValueError("a rate limit needs per_window >= 1 and window_s >= 1")
        self.redis = client
        self.per_window = per_window
        self.window_s = window_s

    def hit(self, subject: str, now: float | None = None) -> int:
        """Count one request of ``subject``; raise :class:`RateLimited` over the limit.

        Returns the number of requests counted in the current window.
        """
        now = time.time() if now is None else now
        window = int(now // self.window_s)
        key = keys.rate_limit(subject, window)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            # Two windows, so a key outlives clock skew between gateway replicas.
            pipe.expire(key, 2 * self.window_s)
            count = int(pipe.execute()[0])
        if count > self.per_window:
            retry_after = max(1, math.ceil((window + 1) * self.window_s - now))
            raise RateLimited(f"more than {self.per_window} requests in {self.window_s} s; "
                              f"retry in {retry_after} s", retry_after)
        return count


def from_env(client: redis.Redis) -> RateLimiter | None:
    """The limiter configured by ``FEDFAAS_RATE_LIMIT_PER_MIN``, or None when it is 0."""
    per_min = load_settings().rate_limit_per_min
    return RateLimiter(client, per_min) if per_min > 0 else None


def install(app: Flask, services: Any) -> RateLimiter | None:
    """Count every authenticated request of ``app`` before its route runs."""
    limiter = from_env(services.redis)
    if limiter is None:
        return None

    @app.before_request
    def _rate_limit() -> None:
        header = request.headers.get("Authorization")
        if not header:
            return
        try:
            principal = services.principal()
        except Unauthorized:
            return  # the route itself answers 401, or needs no token
        who = subject(principal, header)
        if who is not None:
            limiter.hit(who)

    return limiter
