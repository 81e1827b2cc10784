"""Several gateway replicas (engines with their own Redis connections) sharing one table."""

from __future__ import annotations

import threading

import redis

from cache_engine.engine import CacheEngine
from cache_engine.keys import DataKey
from fedfaas.keys import CE_PREFIX, ce_function, ce_locations
from fedfaas.meta import text

FUNCTIONS = ["cache-0", "cache-1", "cache-2"]
BUDGET = 1500


def test_concurrent_replicas_keep_the_table_and_budgets_consistent(redis_url: str) -> None:
    # Prepare: 4 replicas, each ingesting its own job's rounds and querying them.
    redis.Redis.from_url(redis_url, socket_timeout=5).flushdb()
    errors: list[BaseException] = []

    def replica(n: int) -> None:
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        engine = CacheEngine(client, FUNCTIONS, budget_bytes=BUDGET)
        try:
            engine.register_workloads("acme", f"job-{n}", ["malicious-filter"])
            for r in range(6):
                for c in ("a", "b", "c"):
                    engine.ingest(DataKey.update("acme", f"job-{n}", r, c), 100)
                engine.plan_request("debugging", [DataKey.update("acme", f"job-{n}", r // 2, "a")])
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=replica, args=(n,)) for n in range(4)]

    # Execute
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    # Assert: every table entry matches the function contents, and no budget is exceeded.
    assert errors == []
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    contents = {f: {text(k): int(v) for k, v in client.hgetall(ce_function(CE_PREFIX, f)).items()}
                for f in FUNCTIONS}
    assert all(sum(held.values()) <= BUDGET for held in contents.values())
    from_table: dict[str, list[str]] = {}
    for n in range(4):
        for k, v in client.hgetall(ce_locations(CE_PREFIX, "acme", f"job-{n}")).items():
            from_table[text(k)] = text(v).split(",")
    from_functions: dict[str, set[str]] = {}
    for f, held in contents.items():
        for k in held:
            from_functions.setdefault(k, set()).add(f)
    assert {k: set(v) for k, v in from_table.items()} == from_functions
    assert all(len(v) == len(set(v)) for v in from_table.values())
    assert len(from_table) > 0
    client.close()
