"""FLStore's Serverless Cache: one cache function's memory and co-located compute (FLStore 4.1-4.2).

A cache function (OpenFaaS ``python3-http`` mode, so the process and its
memory live between calls) holds decoded client updates, aggregated models
and validation sets, keyed by the Cache Engine's data keys, within a memory
budget.  Non-training workloads run here, on the data where it lies; data the
request needs but the function does not hold is read from S3 (the persistent
store) and counted as a miss.  A reclaimed instance comes back empty and is
refilled by the Cache Engine.

Besides the decoded updates (zero-copy float32 views of the received
bodies), a function keeps their *compute-ready* statistics in
:class:`~fedfaas.workloads.prepared.Prepared`: per update, computed when it
is loaded (placement or prefetch, off the request path), whether it is finite
and its CountSketch for clustering; per round, on first use, the Gram matrix
of the deltas to the base model, the coordinate-wise median products and the
round's FedAvg.  They count in the memory budget and are dropped with the
data they were computed from.  Workload results are never kept.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedfaas import codec, keys
from fedfaas.config import Settings, load_settings
from fedfaas.errors import BadRequest, NotFound
from fedfaas.spec import check_id
from fedfaas.store import ObjectStore
from fedfaas.workloads import TENSORS_KEY, ClientUpdate, WorkloadInputs, get_workload
from fedfaas.workloads.params import check_numeric_array
from fedfaas.workloads.prepared import Prepared
from fedfaas.workloads.updates import count_sketch, is_float, nonfinite_clients

#: Share of the budget the compute-ready statistics may take.
PREPARED_SHARE = 0.25
#: Sketch computed for every update at load time: the clustering workloads' defaults.
LOAD_SKETCH = {"dim": 4096, "seed": 0}


@dataclass
class Entry:
    """One held item: the raw body (decoded views point into it) and its decoding."""

    body: bytes
    update: codec.ModelUpdate
    loaded_at: float

    @property
    def nbytes(self) -> int:
        """Memory this entry pins."""
        return len(self.body)


def _check_s3_key(s3_key: Any) -> str:
    if not isinstance(s3_key, str) or not s3_key.startswith("tenants/") or ".." in s3_key:
        raise BadRequest(f"invalid object reference {s3_key!r}")
    return s3_key


def _objects(value: Any, what: str) -> list[dict[str, Any]]:
    """``value`` as a list of JSON objects (None: empty); BadRequest otherwise."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BadRequest(f"{what} must be a list of objects")
    return value


def _ref(item: dict[str, Any], what: str, *fields: str) -> dict[str, Any]:
    """``item`` after checking it has ``key``, ``s3`` and ``fields`` (``round``: an integer)."""
    missing = [f for f in ("key", "s3", *fields) if f not in item]
    if missing:
        raise BadRequest(f"{what} lacks {', '.join(repr(f) for f in missing)}")
    if "round" in fields and (isinstance(item["round"], bool) or not isinstance(item["round"], int)):
        raise BadRequest(f"{what} 'round' must be an integer, got {item['round']!r}")
    return item


class ServerlessCache:
    """The memory of one cache function.

    Parameters
    ----------
    store
        The persistent store to load from.
    function_id
        This function's name (distinct per shard and replica).
    budget_bytes
        Memory budget; least recently used entries are dropped beyond it.
    prepare_on_load
        Compute per-update statistics when data is loaded (placement and
        prefetch); an aggregator with a fresh memory per request has no use for it.
    """

    def __init__(self, store: ObjectStore, function_id: str, budget_bytes: int = Settings.cache_budget_bytes,
                 prepare_on_load: bool = True) -> None:
        self.store = store
        self.function_id = function_id
        self.budget_bytes = budget_bytes
        self.prepare_on_load = prepare_on_load
        self.prepared = Prepared(int(budget_bytes * PREPARED_SHARE))
        self._held: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.started_at = time.time()

    @classmethod
    def from_env(cls, store: ObjectStore) -> ServerlessCache:
        """Configured by ``FEDFAAS_CACHE_ID`` and ``FEDFAAS_CACHE_BUDGET_BYTES``."""
        settings = load_settings()
        return cls(store, settings.cache_id, settings.cache_budget_bytes)

    # --- memory ----------------------------------------------------------------------
    @property
    def used_bytes(self) -> int:
        """Bytes currently held: the bodies and the statistics derived from them."""
        return sum(e.nbytes for e in self._held.values()) + self.prepared.used_bytes

    def _put(self, key: str, body: bytes) -> Entry:
        entry = Entry(body, codec.decode(body), time.time())
        self.prepared.invalidate([key])  # statistics of a replaced body are stale
        with self._lock:
            self._held[key] = entry
            self._held.move_to_end(key)
            while self.used_bytes > self.budget_bytes and len(self._held) > 1:
                old, _ = self._held.popitem(last=False)
                # At once: the statistics count in the budget this loop checks.
                self.prepared.invalidate([old])
        return entry

    def _prepare(self, key: str, entry: Entry) -> None:
        """Per-update statistics every P2 request starts with, computed off the request path."""
        names = [k for k, v in entry.update.tensors.items() if is_float(v.dtype)]
        if not names:
            return
        update = ClientUpdate(client=key, tensors=entry.update.tensors)
        self.prepared.register(entry.update.tensors, key)
        try:
            if not nonfinite_clients([update], names, self.prepared):
                count_sketch([update], names, None, LOAD_SKETCH["dim"], LOAD_SKETCH["seed"],
                             self.prepared)
        finally:
            self.prepared.unregister([entry.update.tensors])

    def get(self, key: str, s3_key: str) -> tuple[Entry, bool]:
        """The entry for ``key`` and whether it was a hit; loads it from S3 on a miss."""
        with self._lock:
            entry = self._held.get(key)
            if entry is not None:
                self._held.move_to_end(key)
                return entry, True
        return self._put(key, self.store.get(_check_s3_key(s3_key))), False

    def load(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Fetch ``[{"key", "s3"}]`` from S3 into memory (placement and prefetch)."""
        loaded, missing = [], []
        for item in _objects(items, "'items'"):
            key, s3_key = str(item.get("key", "")), _check_s3_key(item.get("s3"))
            try:
                entry = self._put(key, self.store.get(s3_key))
                loaded.append(key)
            except NotFound:
                missing.append(key)
                continue
            if self.prepare_on_load:
                self._prepare(key, entry)
        return {"function": self.function_id, "loaded": loaded, "missing": missing,
                "used_bytes": self.used_bytes}

    def evict(self, keys_: list[str]) -> dict[str, Any]:
        """Drop entries (the Cache Engine decided they are cold)."""
        with self._lock:
            dropped = [k for k in keys_ if self._held.pop(k, None) is not None]
        self.prepared.invalidate(dropped)
        return {"function": self.function_id, "evicted": dropped, "used_bytes": self.used_bytes}

    def ping(self) -> dict[str, Any]:
        """Keep-alive answer: who I am, what I hold, since when."""
        return {"function": self.function_id, "held": len(self._held), "used_bytes": self.used_bytes,
                "prepared_bytes": self.prepared.used_bytes, "budget_bytes": self.budget_bytes,
                "up_s": round(time.time() - self.started_at, 3)}

    def held(self) -> list[str]:
        """Keys held, least recently used first."""
        return list(self._held)

    # --- co-located compute ----------------------------------------------------------
    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run one non-training workload on held data (see :func:`parse_run`)."""
        spec = get_workload(str(request.get("workload", "")))
        params = request.get("params") or {}
        data = request.get("data") or {}
        if not isinstance(data, dict):
            raise BadRequest("request 'data' must be an object")
        job, rnd, client = request.get("job") or {}, request.get("round"), request.get("client")
        if not isinstance(job, dict):
            raise BadRequest("request 'job' must be an object (the job spec)")
        if rnd is not None and (isinstance(rnd, bool) or not isinstance(rnd, int)):
            raise BadRequest(f"request 'round' must be an integer or null, got {rnd!r}")
        if client is not None and not isinstance(client, str):
            raise BadRequest(f"request 'client' must be a party id or null, got {client!r}")
        hits = misses = 0
        updates = []
        held: dict[str, Any] = {}  # data key -> the decoded tensors this request uses
        for item in _objects(data.get("updates"), "'data.updates'"):
            _ref(item, "an item of 'data.updates'", "client", "round")
            entry, hit = self.get(str(item["key"]), item["s3"])
            hits, misses = hits + hit, misses + (not hit)
            held[str(item["key"])] = entry.update.tensors
            updates.append(ClientUpdate(client=check_id(item["client"], "client"),
                                        tensors=entry.update.tensors, meta=entry.update.meta,
                                        round=int(item["round"])))
        models: dict[int, Any] = {}
        for item in _objects(data.get("global_models"), "'data.global_models'"):
            _ref(item, "an item of 'data.global_models'", "round")
            entry, hit = self.get(str(item["key"]), item["s3"])
            hits, misses = hits + hit, misses + (not hit)
            held[str(item["key"])] = entry.update.tensors
            models[int(item["round"])] = entry.update.tensors
        arrays: dict[str, np.ndarray] = {}
        if data.get("validation"):
            if not isinstance(data["validation"], dict):
                raise BadRequest("request 'data.validation' must be an object")
            _ref(data["validation"], "'data.validation'")
            entry, hit = self.get(str(data["validation"]["key"]), data["validation"]["s3"])
            hits, misses = hits + hit, misses + (not hit)
            arrays.update(entry.update.tensors)
        request_arrays = request.get("arrays") or {}
        if not isinstance(request_arrays, dict):
            raise BadRequest("request 'arrays' must be an object of numeric arrays")
        for name, value in request_arrays.items():
            arrays[name] = check_numeric_array(value, f"array {name!r}").astype(np.float32)
        inputs = WorkloadInputs(
            job=job, round=rnd, client=client,
            updates=updates, global_models=models, metadata=data.get("metadata") or [], arrays=arrays,
            prepared=self.prepared,
        )
        # The statistics are keyed by data key; the workload cores see the tensors.
        for key, tensors in held.items():
            self.prepared.register(tensors, key)
        started = time.perf_counter()
        try:
            result = spec.run(inputs, params)
        finally:
            self.prepared.unregister(held.values())
        compute_s = time.perf_counter() - started
        if TENSORS_KEY in result:
            tensors = result.pop(TENSORS_KEY)
            out_key = self._store_result(request, tensors)
            result["tensors_ref"] = out_key
        return {"result": result, "function": self.function_id, "hits": hits, "misses": misses,
                "compute_s": round(compute_s, 6)}

    def _store_result(self, request: dict[str, Any], tensors: dict[str, np.ndarray]) -> str:
        tenant = check_id(str(request.get("tenant", "")), "tenant")
        job = check_id(str(request.get("job_id", "")), "job id")
        request_id = check_id(str(request.get("request_id", "")), "request id")
        key = f"{keys.s3_job(tenant, job)}/results/{request_id}.ffu"
        self.store.put(key, codec.encode(tensors, {"workload": request.get("workload")}))
        return key
