"""The one HTTP retry policy: urllib3's ``Retry`` mounted on ``requests`` adapters.

The party SDK (:class:`fedfaas.client.FedfaasClient`) and the gateway's
OpenFaaS client (:class:`fedfaas.openfaas.client.FaasClient`) describe how they
retry with a :class:`Retry` value and mount :meth:`Retry.adapter` on their
session; urllib3 runs the attempts.  What is retried, in order:

1. A connection that was never made (refused, connect timeout): any method,
   the server cannot have seen the request.
2. A status in ``statuses`` (429, 502, 503, 504 by default): for any method
   when the status is one the project's own retryable errors answer with
   (:class:`~fedfaas.errors.TooManyRequests` 429, :class:`~fedfaas.errors.Unavailable`
   503: the request was not acted upon); otherwise only for idempotent requests.
3. A connection lost after the request was sent (reset, read timeout): only for
   idempotent requests.

A request is idempotent by its method (GET, HEAD, PUT, PATCH, DELETE, OPTIONS)
unless its caller says otherwise (an update upload is idempotent: the gateway
stores it content-addressed; creating a job is not).  A 4xx other than 429 is
an answer about the request itself and is never retried.  The server's
``Retry-After`` (seconds or an HTTP date, capped) wins over the backoff.

Redis has its own: redis-py's ``Retry`` with ``ExponentialBackoff`` in
:func:`fedfaas.meta.connect`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import urllib3
from requests.adapters import HTTPAdapter
from urllib3.response import BaseHTTPResponse

from fedfaas.errors import TooManyRequests, Unavailable

#: Statuses that mean "the server did not do it, ask again later".
RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})
#: Statuses of the project's retryable errors: the request was not acted upon (safe for any method).
NOT_PROCESSED_STATUSES: frozenset[int] = frozenset(
    error.status for error in (TooManyRequests, Unavailable) if error.retryable)
#: Methods that are idempotent by HTTP's definition.
IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Every method: for a request its caller declares idempotent.
ALL_METHODS: frozenset[str] = IDEMPOTENT_METHODS | {"POST", "TRACE"}

DEFAULT_RETRIES = 5
DEFAULT_BACKOFF_BASE_S = 0.2
DEFAULT_BACKOFF_CAP_S = 10.0
DEFAULT_MAX_RETRY_AFTER_S = 60.0

Sleep = Callable[[float], Any]


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

    def transport(self, methods: Collection[str] = IDEMPOTENT_METHODS, *, sleep: Sleep = time.sleep,
                  rng: random.Random | None = None) -> TransportRetry:
        """This policy as urllib3's ``Retry``, treating ``methods`` as idempotent."""
        return TransportRetry(policy=self, sleep=sleep, rng=rng or random.Random(),
                              idempotent=frozenset(m.upper() for m in methods),
                              total=self.retries, connect=None, read=None, status=None, other=None,
                              status_forcelist=self.statuses, backoff_factor=self.backoff.base_s,
                              backoff_max=self.backoff.cap_s, raise_on_status=False,
                              raise_on_redirect=False, redirect=0,
                              respect_retry_after_header=True)

    def adapter(self, methods: Collection[str] = IDEMPOTENT_METHODS, *, sleep: Sleep = time.sleep,
                rng: random.Random | None = None) -> HTTPAdapter:
        """A ``requests`` adapter that retries per this policy (mount it on a session)."""
        return HTTPAdapter(max_retries=self.transport(methods, sleep=sleep, rng=rng))


NO_RETRY = Retry(retries=0)


class TransportRetry(urllib3.Retry):
    """urllib3's ``Retry`` with the project's rule (module docstring) and its backoff.

    urllib3 counts attempts, tells connect from read errors and reads
    ``Retry-After``; this subclass adds the "not processed" statuses for any
    method, the equal-jitter :class:`Backoff`, the ``Retry-After`` cap and an
    injectable ``sleep`` (tests, stoppable waits).
    """

    def __init__(self, *, policy: Retry = NO_RETRY, sleep: Sleep = time.sleep,
                 rng: random.Random | None = None, idempotent: frozenset[str] = IDEMPOTENT_METHODS,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = policy
        # Not urllib3's allowed_methods, whose empty set means "every method".
        self.idempotent = idempotent
        self._sleep_fn = sleep
        self._rng = rng or random.Random()

    def new(self, **kwargs: Any) -> TransportRetry:
        return super().new(policy=self.policy, sleep=self._sleep_fn, rng=self._rng,
                           idempotent=self.idempotent, **kwargs)

    def _is_method_retryable(self, method: str) -> bool:
        return method.upper() in self.idempotent

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if not self.status_forcelist or status_code not in self.status_forcelist:
            return False
        return status_code in NOT_PROCESSED_STATUSES or self._is_method_retryable(method)

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        return parse_retry_after(response.headers.get("Retry-After"))

    def get_backoff_time(self) -> float:
        return self.policy.backoff.delay(max(len(self.history) - 1, 0), self._rng)

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        wish = self.get_retry_after(response) if response is not None else None
        self._sleep_fn(self.policy.wait_s(max(len(self.history) - 1, 0), wish, self._rng))


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
