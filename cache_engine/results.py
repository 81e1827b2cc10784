"""What the Cache Engine tells its caller to do (FLStore, Figure 6, steps 2-5).

The engine never moves data itself: these results name the copies to load
from the persistent store into cache functions and the copies to drop.  Each
has a ``to_json`` for the gateway's HTTP answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cache_engine.keys import DataKey
from cache_engine.table import Move


def _moves(moves: tuple[Move, ...]) -> list[dict[str, str]]:
    return [{"key": m.key.to_str(), "function": m.function_id} for m in moves]


@dataclass(frozen=True)
class Fetch:
    """Load ``key`` from the persistent store into each of ``functions`` (primary first)."""

    key: DataKey
    functions: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """``{"key": str, "functions": [str]}``."""
        return {"key": self.key.to_str(), "functions": list(self.functions)}


@dataclass(frozen=True)
class IngestResult:
    """Where newly arrived data is cached (``functions`` empty: cold, persistent store only)."""

    key: DataKey
    functions: tuple[str, ...]
    evictions: tuple[Move, ...]

    @property
    def cached(self) -> bool:
        """True if the data is hot (held by at least one function)."""
        return bool(self.functions)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"key": self.key.to_str(), "functions": list(self.functions),
                "evictions": _moves(self.evictions)}


@dataclass(frozen=True)
class RequestPlan:
    """How to serve one non-training request.

    ``resident`` maps needed keys already in function memory to their holders;
    ``misses`` are needed keys to fetch now from the persistent store into the
    named functions, ``prefetch`` keys to fetch asynchronously for the next
    request; ``unplaced`` needed keys have no room or unknown size and must be
    read from the persistent store directly; ``evictions`` are copies to drop.
    """

    workload: str
    policy: str
    hit: bool
    resident: dict[DataKey, tuple[str, ...]]
    misses: tuple[Fetch, ...]
    prefetch: tuple[Fetch, ...]
    unplaced: tuple[DataKey, ...]
    evictions: tuple[Move, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "workload": self.workload, "policy": self.policy, "hit": self.hit,
            "resident": {k.to_str(): list(v) for k, v in self.resident.items()},
            "misses": [f.to_json() for f in self.misses],
            "prefetch": [f.to_json() for f in self.prefetch],
            "unplaced": [k.to_str() for k in self.unplaced],
            "evictions": _moves(self.evictions),
        }


@dataclass(frozen=True)
class LostResult:
    """What a reclaimed cache function took with it."""

    function_id: str
    dropped: tuple[DataKey, ...]
    degraded: tuple[DataKey, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"function": self.function_id,
                "dropped": [k.to_str() for k in self.dropped],
                "degraded": [k.to_str() for k in self.degraded]}
