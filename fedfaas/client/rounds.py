"""Waiting on rounds (JIT paper 2.1): a round closes when every expected update arrived,
or at ``t_wait`` with a quorum; without one it fails.

Parties and admins poll ``GET /v1/jobs/{job}/rounds/{r}`` with growing
intervals and a deadline; a failed round or a finished job is an error, a
deadline is a :class:`WaitTimeout`.
"""

from __future__ import annotations

from typing import Any

from fedfaas.client.http import FedfaasClient
from fedfaas.client.retry import DEFAULT_POLL, Poll, poll
from fedfaas.errors import Conflict, FedfaasError, NotFound

CLOSED = "closed"
FAILED = "failed"
OPEN = "open"


class WaitTimeout(FedfaasError):
    """A wait on a round ran past its deadline; waiting again may succeed."""

    status = 504
    code = "wait_timeout"
    retryable = True


class RoundFailed(Conflict):
    """The round failed (e.g. its quorum was not met by ``t_wait``) and has no model."""

    code = "round_failed"


class JobFinished(Conflict):
    """The job has run all its rounds: no next round will open."""

    code = "job_finished"


def round_status(client: FedfaasClient, job_id: str, rnd: int) -> dict[str, Any]:
    """``GET /v1/jobs/{job}/rounds/{r}``."""
    return client.json("GET", f"/v1/jobs/{job_id}/rounds/{rnd}")


def wait_round_closed(client: FedfaasClient, job_id: str, rnd: int, timeout_s: float,
                      schedule: Poll = DEFAULT_POLL) -> dict[str, Any]:
    """Wait until round ``rnd`` is closed and return its status.

    Raises :class:`RoundFailed` when it failed, :class:`WaitTimeout` at the deadline.
    """
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        nonlocal last
        last = round_status(client, job_id, rnd)
        if last.get("state") == FAILED:
            raise RoundFailed(f"round {rnd} of job {job_id!r} failed: {last.get('reason') or '?'}",
                              details={"round": last})
        return last if last.get("state") == CLOSED else None

    return poll(check, timeout_s, schedule, on_timeout=lambda: WaitTimeout(
        f"round {rnd} of job {job_id!r} did not close within {timeout_s:.1f} s "
        f"(state {last.get('state')!r}, {last.get('arrived')} of {last.get('expected')} updates)"))


def wait_round_open(client: FedfaasClient, job_id: str, after: int, timeout_s: float,
                    schedule: Poll = DEFAULT_POLL) -> int:
    """Wait until a round numbered above ``after`` is open; return its number.

    Raises :class:`JobFinished` when the job ran all its rounds, :class:`WaitTimeout`
    at the deadline.
    """

    def check() -> int | None:
        job = client.json("GET", f"/v1/jobs/{job_id}")
        current = int(job.get("current_round", 0))
        total = int((job.get("spec") or {}).get("rounds", 0))
        if current < 1 or (current <= after and current < total):
            return None
        try:
            state = round_status(client, job_id, current).get("state")
        except NotFound:
            return None
        if state == OPEN and current > after:
            return current
        if state in (CLOSED, FAILED) and total and current >= total:
            raise JobFinished(f"job {job_id!r} has run all its {total} rounds")
        return None

    return poll(check, timeout_s, schedule, on_timeout=lambda: WaitTimeout(
        f"no round after {after} opened in job {job_id!r} within {timeout_s:.1f} s"))
