"""The arrivals stream's consumer groups on a real Redis: once per group, abandoned entries reclaimed."""

from __future__ import annotations

import redis

from fedfaas import keys
from fedfaas.errors import BadRequest, Unavailable
from gateway.arrivals import StreamConsumer


def _announce(client: redis.Redis, n: int) -> None:
    for i in range(n):
        client.xadd(keys.arrivals_stream(), {"job": "j", "round": "1", "party": f"p{i}"})


def test_each_group_handles_each_entry_once_across_replicas(redis_client: redis.Redis) -> None:
    # Prepare: two replicas in group "jit", one in "cache-engine".
    seen: dict[str, list[str]] = {"a": [], "b": [], "cache": []}
    a = StreamConsumer(redis_client, "jit", "a", lambda f: seen["a"].append(f["party"]))
    b = StreamConsumer(redis_client, "jit", "b", lambda f: seen["b"].append(f["party"]))
    cache = StreamConsumer(redis_client, "cache-engine", "c", lambda f: seen["cache"].append(f["party"]))
    for consumer in (a, b, cache):
        consumer.ensure_group()
    _announce(redis_client, 10)
    # Execute: the replicas take turns reading.
    for _ in range(3):
        for consumer in (a, b, cache):
            consumer.poll(block_ms=0)
    # Assert
    everyone = [f"p{i}" for i in range(10)]
    assert sorted(seen["a"] + seen["b"]) == sorted(everyone)
    assert seen["cache"] == everyone
    assert redis_client.xpending(keys.arrivals_stream(), "jit")["pending"] == 0


def test_entries_of_a_replica_that_died_before_acknowledging_are_claimed(redis_client: redis.Redis) -> None:
    # Prepare: replica "dead" reads two entries and dies (never acknowledges).
    dead = StreamConsumer(redis_client, "jit", "dead", lambda f: None)
    dead.ensure_group()
    _announce(redis_client, 2)
    redis_client.xreadgroup("jit", "dead", {keys.arrivals_stream(): ">"}, count=10)
    seen: list[str] = []
    alive = StreamConsumer(redis_client, "jit", "alive", lambda f: seen.append(f["party"]), claim_idle_ms=50)
    # Execute: before and after the entries have been pending for claim_idle_ms.
    alive.poll(block_ms=0)
    before = list(seen)
    redis_client.execute_command("DEBUG", "SLEEP", "0.1")
    alive.poll(block_ms=0)
    # Assert
    assert before == []
    assert seen == ["p0", "p1"]
    assert redis_client.xpending(keys.arrivals_stream(), "jit")["pending"] == 0


def test_a_retryable_failure_is_retried_and_a_bad_entry_does_not_block_the_group(
        redis_client: redis.Redis) -> None:
    # Prepare: p0 fails once with a retryable error, p1 is refused for good.
    attempts: dict[str, int] = {}

    def handle(fields: dict[str, str]) -> None:
        party = fields["party"]
        attempts[party] = attempts.get(party, 0) + 1
        if party == "p0" and attempts[party] == 1:
            raise Unavailable("not yet")
        if party == "p1":
            raise BadRequest("never")

    consumer = StreamConsumer(redis_client, "jit", "a", handle)
    consumer.ensure_group()
    _announce(redis_client, 3)
    # Execute
    consumer.poll(block_ms=0)
    pending_after_first = redis_client.xpending(keys.arrivals_stream(), "jit")["pending"]
    consumer.poll(block_ms=0)
    # Assert
    assert pending_after_first == 1
    assert attempts == {"p0": 2, "p1": 1, "p2": 1}
    assert redis_client.xpending(keys.arrivals_stream(), "jit")["pending"] == 0
