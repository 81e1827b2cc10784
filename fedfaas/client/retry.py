"""Retry policy of the party SDK: exponential backoff with jitter, ``Retry-After`` honoured.

Only failures that say "try again later" are retried: connection errors and
the statuses 429, 502, 503 and 504.  A 4xx such as 400, 401, 403 or 409 is an
answer about the request itself and is never retried.  Requests that are not
idempotent (creating a job, starting a round) are retried only when the server
cannot have acted on them (the connection was never made, or 429/503).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

#: Statuses that mean "the server did not do it, ask again later".
RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})
#: Of those, the ones that guarantee the request was not acted upon (safe for any method).
NOT_PROCESSED_STATUSES: frozenset[int] = frozenset({429, 503})

DEFAULT_RETRIES = 5
DEFAULT_BACKOFF_BASE_S = 0.2
DEFAULT_BACKOFF_CAP_S = 10.0
DEFAULT_MAX_RETRY_AFTER_S = 60.0

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter".

    The ``attempt``-th delay is ``d = min(cap_s, base_s * factor**attempt)``,
    drawn uniformly from ``[d * (1 - jitter), d]`` so that many parties that
    failed together do not retry together.
    """

    base_s: float = DEFAULT_BACKOFF_BASE_S
    cap_s: float = DEFAULT_BACKOFF_CAP_S
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < 0 or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError("backoff needs base_s, cap_s >= 0, factor >= 1 and 0 <= jitter <= 1")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        ceiling = min(self.cap_s, self.base_s * self.factor ** min(attempt, 64))
        return ceiling * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True)
class Retry:
    """How often and how long to retry a request.

    Parameters
    ----------
    retries
        Retries after the first attempt (0 disables retrying).
    backoff
        Delay between attempts when the server gives no ``Retry-After``.
    statuses
        HTTP statuses that are retried.
    max_retry_after_s
        Upper bound on a server's ``Retry-After`` (a hostile or buggy header
        cannot park the party for hours).
    """

    retries: int = DEFAULT_RETRIES
    backoff: Backoff = field(default_factory=Backoff)
    statuses: frozenset[int] = RETRYABLE_STATUSES
    max_retry_after_s: float = DEFAULT_MAX_RETRY_AFTER_S

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if any(400 <= s < 500 and s != 429 for s in self.statuses):
            raise ValueError("only 429 may be retried among the 4xx statuses")

    def status_is_retryable(self, status: int, idempotent: bool) -> bool:
        """True when a response with ``status`` may be sent again."""
        if status not in self.statuses:
            return False
        return idempotent or status in NOT_PROCESSED_STATUSES

    def wait_s(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds to sleep before retry ``attempt``: the server's wish, else backoff."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_retry_after_s)
        return self.backoff.delay(attempt, rng)


NO_RETRY = Retry(retries=0)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date); None if absent or bad."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


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
