"""Warm-up pings leave the driver's thread at once and never pile up behind a cold start."""

from __future__ import annotations

import threading

from fedfaas.errors import Unavailable
from gateway.driver import Pinger


def test_one_ping_in_flight_and_the_caller_never_waits() -> None:
    # Prepare: a ping that hangs like one waiting for a cold start
    release, started = threading.Event(), threading.Event()
    calls: list[int] = []

    def warm() -> None:
        calls.append(1)
        started.set()
        release.wait(5)

    pinger = Pinger(warm)
    # Execute / Assert: the first ping goes out; the next is dropped while it hangs
    assert pinger.ping()
    assert started.wait(5)
    assert not pinger.ping()
    release.set()
    for _ in range(500):
        if pinger.ping():
            break
        threading.Event().wait(0.01)
    else:
        raise AssertionError("the ping never finished")
    assert len(calls) >= 2


def test_a_failing_ping_frees_the_slot() -> None:
    done = threading.Event()

    def warm() -> None:
        done.set()
        raise Unavailable("GET /function/aggregate failed: platform down")

    pinger = Pinger(warm)
    assert pinger.ping()
    assert done.wait(5)
    for _ in range(500):
        if pinger.ping():
            return
        threading.Event().wait(0.01)
    raise AssertionError("a failed ping kept its slot")
