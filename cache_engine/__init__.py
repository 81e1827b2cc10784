"""FLStore's Cache Engine: caching policies P1-P4, the Redis-backed table, and a trace simulator.

Public entry points (FLStore paper, sections 4.2-4.5):

- :class:`~cache_engine.engine.CacheEngine`: what the gateway and the Request
  Tracker call (``ingest``, ``plan_request``, ``lookup``, ``mark_function_lost``...).
- :class:`~cache_engine.keys.DataKey`: names one update, model or round metadata.
- :mod:`cache_engine.registry`: the Table 1 workload -> policy mapping.
- :func:`~cache_engine.simulate.simulate`: hit rates of a policy on a request trace.
"""

from cache_engine.engine import CacheEngine
from cache_engine.keys import DataKey
from cache_engine.registry import POLICY_FOR_WORKLOAD, make_policy, policy_for
from cache_engine.results import Fetch, IngestResult, LostResult, RequestPlan
from cache_engine.table import Move

__all__ = [
    "POLICY_FOR_WORKLOAD",
    "CacheEngine",
    "DataKey",
    "Fetch",
    "IngestResult",
    "LostResult",
    "Move",
    "RequestPlan",
    "make_policy",
    "policy_for",
]
