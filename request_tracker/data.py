"""Which data a non-training request needs, as Cache Engine keys and S3 objects (FLStore Table 1).

Client updates and aggregated models are tensors the cache holds; per-round
metadata (the P4 data: hyperparameters, who was included, training times,
on-time arrival) is small and assembled from Redis for each request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from cache_engine.keys import DataKey
from fedfaas import keys
from fedfaas.contracts import ItemRef, ModelRef, RunData, UpdateRef
from fedfaas.errors import BadRequest, NotFound
from fedfaas.store import ObjectStore
from fedfaas.workloads import get_workload

DEFAULT_LAST_K = 10


class RoundSource(Protocol):
    """What the resolver reads about rounds (the gateway's registry)."""

    def get_job(self, job_id: str) -> Any: ...

    def get_round(self, job_id: str, rnd: int) -> Any: ...

    def round_updates(self, job_id: str, rnd: int) -> dict[str, dict[str, Any]]: ...

    def round_update(self, job_id: str, rnd: int, party: str) -> dict[str, Any] | None: ...


@dataclass
class ResolvedData:
    """The request's data: engine keys (tensors) and the references sent to the function."""

    round: int | None
    keys: list[DataKey] = field(default_factory=list)
    payload: RunData = field(default_factory=RunData)


class DataResolver:
    """Turns a query into the data keys and references a workload needs."""

    def __init__(self, rounds: RoundSource, store: ObjectStore) -> None:
        self.rounds = rounds
        self.store = store

    def s3_key(self, key: DataKey) -> str | None:
        """Where ``key`` lives in S3 (None for metadata, which lives in Redis, and for an
        update never recorded: an update is the object its record names by digest)."""
        if key.kind == "update" and key.client is not None:
            record = self.rounds.round_update(key.job, key.round, key.client)
            if record is None:
                return None
            return keys.s3_update(key.tenant, key.job, key.round, key.client, record["digest"])
        if key.kind == "model":
            return keys.s3_model(key.tenant, key.job, key.round)
        return None

    def _closed_rounds(self, job_id: str, upto: int) -> list[int]:
        out = []
        for rnd in range(1, upto + 1):
            try:
                if self.rounds.get_round(job_id, rnd).state == "closed":
                    out.append(rnd)
            except NotFound:
                continue
        return out

    def resolve(self, tenant: str, job_id: str, query: Any) -> ResolvedData:
        """Keys and payload for ``query`` (a :class:`request_tracker.tracker.Query`)."""
        spec = get_workload(query.workload)
        needs = spec.data_needs(query.params)
        job = self.rounds.get_job(job_id)
        closed = self._closed_rounds(job_id, job.current_round)
        rnd = query.round if query.round is not None else (closed[-1] if closed else None)
        if rnd is None and needs & {"round_updates", "global_model"}:
            raise NotFound(f"job {job_id!r} has no closed round yet")
        if rnd is not None and rnd > job.current_round:
            raise NotFound(f"round {rnd} of job {job_id!r} has not been started")
        data = ResolvedData(round=rnd)
        items: list[UpdateRef] = []
        if "round_updates" in needs and rnd is not None:
            for party, record in sorted(self.rounds.round_updates(job_id, rnd).items()):
                items.append(self._update_item(tenant, job_id, rnd, party, record["digest"], data))
            if not items:
                raise NotFound(f"round {rnd} of job {job_id!r} has no stored updates")
        if "client_across_rounds" in needs:
            if not query.client:
                raise BadRequest(f"{query.workload} needs 'client' (the party to follow)")
            for r in range(1, job.current_round + 1):
                found = self.rounds.round_update(job_id, r, query.client)
                if found is not None:
                    items.append(self._update_item(tenant, job_id, r, query.client, found["digest"], data))
            if not items:
                raise NotFound(f"party {query.client!r} has no stored update in job {job_id!r}")
        models: list[ModelRef] = []
        wanted_models = set()
        if "global_model" in needs or "global_model" in spec.optional:
            wanted_models |= {r for r in (rnd, (rnd or 1) - 1) if r is not None and r >= 0}
        if "client_across_rounds" in needs:
            wanted_models |= {i.round for i in items}
        for r in sorted(wanted_models):
            if r == 0 or r in closed:
                s3 = keys.s3_model(tenant, job_id, r)
                if r == 0 and not self.store.exists(s3):
                    continue
                key = DataKey.model(tenant, job_id, r)
                data.keys.append(key)
                models.append(ModelRef(key=key.to_str(), s3=s3, round=r))
        if "global_model" in needs and not models:
            raise NotFound(f"no global model of round {rnd} of job {job_id!r} is stored")
        metadata: list[dict[str, Any]] = []
        if "metadata" in needs or "metadata" in spec.optional:
            last_k = int(query.params.get("last_k", DEFAULT_LAST_K)) if isinstance(
                query.params.get("last_k", DEFAULT_LAST_K), int) else DEFAULT_LAST_K
            metadata = self.round_records(job_id, job, upto=rnd or job.current_round, last_k=last_k)
        validation = None
        if "validation_set" in needs or "validation_set" in spec.optional:
            s3 = keys.s3_validation(tenant, job_id)
            if self.store.exists(s3):
                validation = ItemRef(key=f"{tenant}:{job_id}:validation", s3=s3)
            elif "validation_set" in needs:
                raise NotFound(f"job {job_id!r} has no validation set; upload one with "
                               "PUT /v1/jobs/{job}/validation")
        data.payload = RunData(updates=items, global_models=models, metadata=metadata, validation=validation)
        return data

    @staticmethod
    def _update_item(tenant: str, job_id: str, rnd: int, party: str, digest: str, data: ResolvedData
                     ) -> UpdateRef:
        key = DataKey.update(tenant, job_id, rnd, party)
        data.keys.append(key)
        return UpdateRef(key=key.to_str(), s3=keys.s3_update(tenant, job_id, rnd, party, digest),
                         client=party, round=rnd)

    def round_records(self, job_id: str, job: Any, upto: int, last_k: int) -> list[dict[str, Any]]:
        """Round records (P4 data) of the last ``last_k`` rounds up to ``upto``."""
        records = []
        for rnd in range(max(1, upto - last_k + 1), upto + 1):
            try:
                record = self.rounds.get_round(job_id, rnd)
            except NotFound:
                continue
            updates = self.rounds.round_updates(job_id, rnd)
            included = record.parties_included or []
            clients = {}
            for party in record.expected:
                upd = updates.get(party)
                clients[party] = {
                    "available": upd is not None,
                    "on_time": upd is not None and upd["arrived_at"] <= record.deadline_at,
                    "train_time_s": upd.get("train_time_s") if upd else None,
                    "num_examples": upd.get("num_examples") if upd else None,
                    "arrival_s": (upd["arrived_at"] - record.started_at) if upd else None,
                }
            records.append({
                "round": rnd, "state": record.state,
                "hyperparameters": {**job.spec.hyperparameters, "algorithm": job.spec.algorithm.name,
                                    **{f"algorithm.{k}": v for k, v in job.spec.algorithm.params.items()}},
                "included": included, "clients": clients,
                "aggregation_latency_s": record.aggregation_latency_s,
            })
        return records
