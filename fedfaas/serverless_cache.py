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
from fedfaas.contracts import (
    EvictAnswer,
    EvictRequest,
    ItemRef,
    LoadAnswer,
    LoadRequest,
    RunAnswer,
    RunRequest,
    check_s3_ref,
)
from fedfaas.errors import BadRequest, NotFound
from fedfaas.store import ObjectStore
from fedfaas.workloads import TENSORS_KEY, ClientUpdate, WorkloadInputs, get_workload
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

    def get(self, item: ItemRef) -> tuple[Entry, bool]:
        """The entry for ``item`` and whether it was a hit; loads it from S3 on a miss."""
        with self._lock:
            entry = self._held.get(item.key)
            if entry is not None:
                self._held.move_to_end(item.key)
                return entry, True
        return self._put(item.key, self.store.get(check_s3_ref(item.s3))), False

    def load(self, request: LoadRequest) -> LoadAnswer:
        """Fetch the request's items from S3 into memory (placement and prefetch)."""
        loaded, missing = [], []
        for item in request.items:
            try:
                entry = self._put(item.key, self.store.get(check_s3_ref(item.s3)))
                loaded.append(item.key)
            except NotFound:
                missing.append(item.key)
                continue
            if self.prepare_on_load:
                self._prepare(item.key, entry)
        return LoadAnswer(function=self.function_id, loaded=loaded, missing=missing,
                          used_bytes=self.used_bytes)

    def evict(self, request: EvictRequest) -> EvictAnswer:
        """Drop entries (the Cache Engine decided they are cold)."""
        with self._lock:
            dropped = [k for k in request.keys if self._held.pop(k, None) is not None]
        self.prepared.invalidate(dropped)
        return EvictAnswer(function=self.function_id, evicted=dropped, used_bytes=self.used_bytes)

    def ping(self) -> dict[str, Any]:
        """Keep-alive answer: who I am, what I hold, since when."""
        return {"function": self.function_id, "held": len(self._held), "used_bytes": self.used_bytes,
                "prepared_bytes": self.prepared.used_bytes, "budget_bytes": self.budget_bytes,
                "up_s": round(time.time() - self.started_at, 3)}

    def held(self) -> list[str]:
        """Keys held, least recently used first."""
        return list(self._held)

    # --- co-located compute ----------------------------------------------------------
    def run(self, request: RunRequest) -> RunAnswer:
        """Run one non-training workload on held data (reading what it lacks from S3)."""
        spec = get_workload(request.workload or "")
        data = request.data
        hits = misses = 0
        updates = []
        held: dict[str, Any] = {}  # data key -> the decoded tensors this request uses
        for ref in data.updates:
            entry, hit = self.get(ref)
            hits, misses = hits + hit, misses + (not hit)
            held[ref.key] = entry.update.tensors
            updates.append(ClientUpdate(client=ref.client, tensors=entry.update.tensors,
                                        meta=entry.update.meta, round=ref.round))
        models: dict[int, Any] = {}
        for model in data.global_models:
            entry, hit = self.get(model)
            hits, misses = hits + hit, misses + (not hit)
            held[model.key] = entry.update.tensors
            models[model.round] = entry.update.tensors
        arrays: dict[str, np.ndarray] = {}
        if data.validation is not None:
            entry, hit = self.get(data.validation)
            hits, misses = hits + hit, misses + (not hit)
            arrays.update(entry.update.tensors)
        for name, value in request.arrays.items():
            # Checked numeric and finite when the request was parsed.
            arrays[name] = np.asarray(value, dtype=np.float32)
        inputs = WorkloadInputs(
            job=request.job, round=request.round, client=request.client,
            updates=updates, global_models=models, metadata=data.metadata, arrays=arrays,
            prepared=self.prepared,
        )
        # The statistics are keyed by data key; the workload cores see the tensors.
        for key, tensors in held.items():
            self.prepared.register(tensors, key)
        started = time.perf_counter()
        try:
            result = spec.run(inputs, request.params)
        finally:
            self.prepared.unregister(held.values())
        compute_s = time.perf_counter() - started
        if TENSORS_KEY in result:
            tensors = result.pop(TENSORS_KEY)
            out_key = self._store_result(request, tensors)
            result["tensors_ref"] = out_key
        return RunAnswer(result=result, function=self.function_id, hits=hits, misses=misses,
                         compute_s=round(compute_s, 6))

    def _store_result(self, request: RunRequest, tensors: dict[str, np.ndarray]) -> str:
        if request.tenant is None or request.job_id is None or request.request_id is None:
            raise BadRequest(f"{request.workload} returns tensors: the request needs 'tenant', "
                             "'job_id' and 'request_id' to name where they are written")
        key = keys.s3_result(request.tenant, request.job_id, request.request_id)
        self.store.put(key, codec.encode(tensors, {"workload": request.workload}))
        return key
