"""Retry policy and polling of the party SDK.

The retry policy is the project's one HTTP policy, :mod:`fedfaas.retry`
(urllib3's ``Retry`` on the session's adapters): connection errors and the
statuses 429, 502, 503 and 504 are retried with exponential backoff and
jitter, ``Retry-After`` honoured.  A 4xx such as 400, 401, 403 or 409 is an
answer about the request itself and is never retried.  Requests that are not
idempotent (creating a job, starting a round) are retried only when the server
cannot have acted on them (the connection was never made, or 429/503).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fedfaas.retry import (
    DEFAULT_BACKOFF_BASE_S,
    DEFAULT_BACKOFF_CAP_S,
    DEFAULT_MAX_RETRY_AFTER_S,
    DEFAULT_RETRIES,
    NO_RETRY,
    NOT_PROCESSED_STATUSES,
    RETRYABLE_STATUSES,
    Backoff,
    Retry,
    parse_retry_after,
)

__all__ = [
    "DEFAULT_BACKOFF_BASE_S",
    "DEFAULT_BACKOFF_CAP_S",
    "DEFAULT_MAX_RETRY_AFTER_S",
    "DEFAULT_POLL",
    "DEFAULT_RETRIES",
    "NOT_PROCESSED_STATUSES",
    "NO_RETRY",
    "RETRYABLE_STATUSES",
    "Backoff",
    "Poll",
    "Retry",
    "parse_retry_after",
    "poll",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Poll:
    """Polling schedule for waits (round closed, next round open): growing intervals."""

    initial_s: float = 0.05
    max_s: float = 1.0
    factor: float = 1.5


DEFAULT_POLL = Poll()


def poll(check: Callable[[], T | None], timeout_s: float, schedule: Poll = DEFAULT_POLL,
         on_timeout: Callable[[], Exception] | None = None) -> T:
    """Call ``check`` until it returns a value, sleeping per ``schedule``, until ``timeout_s``.

    Raises the exception built by ``on_timeout`` (a ``TimeoutError`` by default)
    when the deadline passes; the last check runs at the deadline, never after.
    """
    deadline = time.monotonic() + timeout_s
    interval = schedule.initial_s
    while True:
        result = check()
        if result is not None:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise on_timeout() if on_timeout is not None else TimeoutError(
                f"condition not met within {timeout_s:.1f} s")
        time.sleep(min(interval, remaining))
        interval = min(interval * schedule.factor, schedule.max_s)
