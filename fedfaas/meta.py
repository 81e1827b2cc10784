"""The one Redis client factory: metadata, queues and cache tables.

Redis holds what the gateway must not keep in process memory (jobs, parties,
rounds, arrivals, scheduler timers and claims, the Cache Engine's table).  Every
connection has socket timeouts and retries transient errors a few times with
exponential backoff, so a restarting Redis is ridden out instead of crashing.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from fedfaas.config import Settings

RETRIES = 3


def text(value: Any) -> str:
    """A Redis reply as ``str`` whether or not the client decodes responses ("" for None)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def connect(settings: Settings) -> redis.Redis:
    """A Redis client for ``settings.redis_url`` with timeouts and retry on transient errors."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=min(2.0, settings.redis_timeout_s),
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), RETRIES),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        decode_responses=False,
    )
