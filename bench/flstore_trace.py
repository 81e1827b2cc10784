"""FLStore's caching policies vs LRU, LFU and FIFO on a non-training request trace (FLStore, 5.4).

Reproduces the setting of the paper's Table 2: an FL job with 10 clients per
round drawn from a pool of 250, over 2,000 rounds (``quick``: 200), whose
updates, aggregated model and round metadata are ingested round by round while
non-training workloads issue requests the way their applications do:

- P2 (``p2_requests``): ``malicious-filter`` and ``contribution`` request all
  updates of each round as soon as it completes; ``clustering`` and
  ``personalisation`` do so every 10th round; every 100 rounds a ``debugging``
  session (FedDebug-style) walks 10 consecutive past rounds, starting at a
  random round of the last 100.
- P3 (``p3_requests``): ``provenance`` follows 4 clients chosen at the start,
  requesting each one's update right after every round it takes part in;
  ``lineage`` runs 8 times, evenly spaced, and walks one random client's whole
  history backwards from its latest participation.
- P4 (``p4_requests``): after every round ``hyperparameters`` requests the
  metadata of the last 10 rounds and ``resource-tracking`` that of the latest
  round; every 5th round ``reputation`` requests the last 5 rounds.

Each class of workloads is replayed on its own cache (as in Table 2) of
``CAPACITY`` entries (a client update, a model or a round's metadata is one
entry) with FLStore (the Table 1 policy of each workload, the job's workloads
declared up front) and with LRU, LFU and FIFO at the same capacity.  The
traditional caches fill on demand, as a cache in front of the persistent store
does; their write-allocate variants (``*-wa``: also cache everything ingested)
and the static and random ablations are reported too.  A request hits when all
the data it needs is resident when it arrives.  ``mixed`` replays all three
classes together on one cache of the same capacity (``mixed_by_class`` splits
its hit rate by class): the deployment case, where the policies of all of a
job's workloads share the functions.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from cache_engine.keys import DataKey
from cache_engine.registry import policy_for
from cache_engine.simulate import Ingest, Request, TraceEvent, simulate

TENANT = "bench"
JOB = "trace"
POOL = 250
PER_ROUND = 10
ROUNDS = 2000
QUICK_ROUNDS = 200
CAPACITY = 40
SEED = 0
META_WINDOW = 10
FOLLOWED_CLIENTS = 4
LINEAGE_WALKS = 8
DEBUG_EVERY = 100
DEBUG_LENGTH = 10

Issuer = Callable[[list[list[str]], random.Random], list[list[Request]]]


def participants(rounds: int, rng: random.Random) -> list[list[str]]:
    """The clients of every round: ``PER_ROUND`` drawn without replacement from ``POOL``."""
    pool = [f"c{i:03d}" for i in range(POOL)]
    return [sorted(rng.sample(pool, PER_ROUND)) for _ in range(rounds)]


def _updates(rnd: int, clients: list[str]) -> tuple[DataKey, ...]:
    return tuple(DataKey.update(TENANT, JOB, rnd, c) for c in clients)


def _metas(first: int, last: int) -> tuple[DataKey, ...]:
    return tuple(DataKey.meta(TENANT, JOB, r) for r in range(max(0, first), last + 1))


def p2_requests(parts: list[list[str]], rng: random.Random) -> list[list[Request]]:
    """P2 requests issued after each round (see the module docstring)."""
    out: list[list[Request]] = []
    for r, clients in enumerate(parts):
        reqs = [Request(w, _updates(r, clients)) for w in ("malicious-filter", "contribution")]
        if r % 10 == 9:
            reqs.append(Request("clustering", _updates(r, clients)))
        if r % 10 == 4:
            reqs.append(Request("personalisation", _updates(r, clients)))
        if r % DEBUG_EVERY == DEBUG_EVERY - 1:
            start = rng.randint(max(0, r - DEBUG_EVERY + 1), r - DEBUG_LENGTH)
            reqs.extend(Request("debugging", _updates(s, parts[s]))
                        for s in range(start, start + DEBUG_LENGTH))
        out.append(reqs)
    return out


def p3_requests(parts: list[list[str]], rng: random.Random) -> list[list[Request]]:
    """P3 requests issued after each round (see the module docstring)."""
    followed = rng.sample(sorted({c for cs in parts for c in cs}), FOLLOWED_CLIENTS)
    walk_at = {len(parts) * (i + 1) // LINEAGE_WALKS - 1 for i in range(LINEAGE_WALKS)}
    history: dict[str, list[int]] = {}
    out: list[list[Request]] = []
    for r, clients in enumerate(parts):
        for c in clients:
            history.setdefault(c, []).append(r)
        reqs = [Request("provenance", (DataKey.update(TENANT, JOB, r, c),))
                for c in followed if c in clients]
        if r in walk_at:
            client = rng.choice(sorted(c for c, rs in history.items() if len(rs) > 1))
            reqs.extend(Request("lineage", (DataKey.update(TENANT, JOB, s, client),))
                        for s in reversed(history[client]))
        out.append(reqs)
    return out


def p4_requests(parts: list[list[str]], rng: random.Random) -> list[list[Request]]:
    """P4 requests issued after each round (see the module docstring)."""
    out: list[list[Request]] = []
    for r in range(len(parts)):
        reqs = [Request("hyperparameters", _metas(r - META_WINDOW + 1, r)),
                Request("resource-tracking", _metas(r, r))]
        if r % 5 == 4:
            reqs.append(Request("reputation", _metas(r - 4, r)))
        out.append(reqs)
    return out


def build_trace(parts: list[list[str]], requests: list[list[Request]]) -> list[TraceEvent]:
    """Interleave each round's ingests (updates, model, metadata) with the requests after it."""
    trace: list[TraceEvent] = []
    for r, clients in enumerate(parts):
        trace.extend(Ingest(k) for k in _updates(r, clients))
        trace.append(Ingest(DataKey.model(TENANT, JOB, r)))
        trace.append(Ingest(DataKey.meta(TENANT, JOB, r)))
        trace.extend(requests[r])
    return trace


CONTENDERS: dict[str, dict[str, Any]] = {
    "flstore": {},
    "lru": {"policy": "lru"},
    "lfu": {"policy": "lfu"},
    "fifo": {"policy": "fifo"},
    "lru-wa": {"policy": "lru", "policy_params": {"lru": {"admit_on_ingest": True}}},
    "lfu-wa": {"policy": "lfu", "policy_params": {"lfu": {"admit_on_ingest": True}}},
    "fifo-wa": {"policy": "fifo", "policy_params": {"fifo": {"admit_on_ingest": True}}},
    "static": {"policy": "static"},
    "random": {"policy": "random"},
}


def run(quick: bool = False) -> dict[str, Any]:
    """Replay the P2, P3, P4 and mixed traces against every contender; return hit rates."""
    rounds = QUICK_ROUNDS if quick else ROUNDS
    parts = participants(rounds, random.Random(SEED))
    issuers: dict[str, Issuer] = {"P2": p2_requests, "P3": p3_requests, "P4": p4_requests}
    per_class = {name: fn(parts, random.Random(f"{SEED}:{name}")) for name, fn in issuers.items()}
    per_class["mixed"] = [
        [req for name in issuers for req in per_class[name][r]] for r in range(rounds)
    ]
    hit_rate: dict[str, dict[str, float]] = {}
    mixed_by_class: dict[str, dict[str, float]] = {name: {} for name in issuers}
    requests: dict[str, int] = {}
    details: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for name, reqs in per_class.items():
        trace = build_trace(parts, reqs)
        hit_rate[name], details[name] = {}, {}
        for label, kwargs in CONTENDERS.items():
            res = simulate(trace, CAPACITY, label=label, **kwargs)
            hit_rate[name][label] = round(res.hit_rate, 6)
            details[name][label] = {k: v for k, v in res.to_dict().items()
                                    if k in ("hits", "requests", "prefetched", "evictions")}
            requests[name] = res.requests
            if name == "mixed":
                for cls in issuers:
                    counts = [c for w, c in res.per_workload.items() if policy_for(w) == cls]
                    mixed_by_class[cls][label] = round(
                        sum(h for h, _ in counts) / max(1, sum(n for _, n in counts)), 6)
        print(f"{name:6s} requests={requests[name]:6d} " + " ".join(
            f"{label}={rate:.4f}" for label, rate in hit_rate[name].items()), flush=True)
    return {
        "bench": "flstore-trace",
        "hit_rate": hit_rate,
        "mixed_by_class": mixed_by_class,
        "capacity": CAPACITY,
        "capacity_unit": "entries (one client update, model or round metadata each)",
        "requests": requests,
        "rounds": rounds,
        "pool": POOL,
        "clients_per_round": PER_ROUND,
        "details": details,
        "replay_s": round(time.perf_counter() - started, 3),
    }
