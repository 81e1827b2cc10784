"""Fixtures for Cache Engine tests: engines on the real Redis of ``tests/conftest.py``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from cache_engine.engine import CacheEngine

FUNCTIONS = ("cache-0", "cache-1", "cache-2")


@pytest.fixture()
def make_engine(redis_client: redis.Redis) -> Callable[..., CacheEngine]:
    """Build a :class:`CacheEngine` on the flushed test database (defaults: 3 functions)."""

    def build(**kwargs: Any) -> CacheEngine:
        kwargs.setdefault("budget_bytes", 1000)
        functions = kwargs.pop("functions", FUNCTIONS)
        return CacheEngine(redis_client, functions, **kwargs)

    return build
