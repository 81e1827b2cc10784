"""The Redis-backed catalog of the Cache Engine (FLStore, section 4.2).

Every key of a tenant's table, catalog and policy state lives under one prefix
per tenant and job (see the FLStore section of :mod:`fedfaas.keys`), so a
lookup built from one tenant's data key can only ever read that tenant's
entries.  Function contents are shared by every tenant whose data a function
holds and are keyed by the full data key.
"""

from __future__ import annotations

from typing import Any

from cache_engine.keys import DataKey
from fedfaas.keys import ce_client_rounds, ce_latest, ce_round_keys, ce_sizes
from fedfaas.meta import text


class RedisCatalog:
    """The :class:`~cache_engine.catalog.CatalogView` of one transaction, read from Redis.

    Reads are memoised for the transaction's lifetime.  ``pending`` is a key
    being ingested by this transaction: it is visible to the policies before
    :meth:`write` commits it.
    """

    def __init__(self, client: Any, prefix: str, pending: tuple[DataKey, int] | None = None):
        self.client = client
        self.prefix = prefix
        self.pending = pending
        self._memo: dict[tuple[Any, ...], Any] = {}
        # Read now: write() runs inside MULTI, where replies are not available.
        self._pending_latest = (
            self.latest_round(pending[0].tenant, pending[0].job, pending[0].kind)
            if pending else None
        )

    def _cached(self, key: tuple[Any, ...], read: Any) -> Any:
        if key not in self._memo:
            self._memo[key] = read()
        return self._memo[key]

    def _pending_key(self) -> DataKey | None:
        return self.pending[0] if self.pending else None

    def latest_round(self, tenant: str, job: str, kind: str) -> int | None:
        raw = self._cached(("latest", tenant, job, kind), lambda: self.client.hget(
            ce_latest(self.prefix, tenant, job), kind))
        latest = None if raw is None else int(text(raw))
        p = self._pending_key()
        if p is not None and (p.tenant, p.job, p.kind) == (tenant, job, kind):
            latest = p.round if latest is None else max(latest, p.round)
        return latest

    def keys_of_round(self, tenant: str, job: str, round: int, kind: str) -> list[DataKey]:
        raw = self._cached(("round", tenant, job, round, kind), lambda: self.client.smembers(
            ce_round_keys(self.prefix, tenant, job, round, kind)))
        keys = {DataKey.from_str(text(m)) for m in raw}
        p = self._pending_key()
        if p is not None and (p.tenant, p.job, p.round, p.kind) == (tenant, job, round, kind):
            keys.add(p)
        return sorted(keys)

    def client_neighbours(
        self, tenant: str, job: str, client: str, kind: str, round: int
    ) -> tuple[int | None, int | None]:
        name = ce_client_rounds(self.prefix, tenant, job, client, kind)
        before = self._cached(("before", name, round), lambda: self.client.zrevrangebyscore(
            name, f"({round}", "-inf", start=0, num=1))
        after = self._cached(("after", name, round), lambda: self.client.zrangebyscore(
            name, f"({round}", "+inf", start=0, num=1))
        prev = int(text(before[0])) if before else None
        nxt = int(text(after[0])) if after else None
        p = self._pending_key()
        if p is not None and (p.tenant, p.job, p.client, p.kind) == (tenant, job, client, kind):
            if p.round < round and (prev is None or p.round > prev):
                prev = p.round
            if p.round > round and (nxt is None or p.round < nxt):
                nxt = p.round
        return prev, nxt

    def size_of(self, key: DataKey) -> int | None:
        if self.pending and self.pending[0] == key:
            return self.pending[1]
        raw = self._cached(("size", key), lambda: self.client.hget(
            ce_sizes(self.prefix, key.tenant, key.job), key.to_str()))
        return None if raw is None else int(text(raw))

    def write(self, pipe: Any) -> None:
        """Queue the commands that add ``pending`` to the catalog (inside MULTI)."""
        if not self.pending:
            return
        key, size = self.pending
        t, j, pf = key.tenant, key.job, self.prefix
        pipe.hset(ce_sizes(pf, t, j), key.to_str(), size)
        latest = key.round if self._pending_latest is None else self._pending_latest
        pipe.hset(ce_latest(pf, t, j), key.kind, latest)
        pipe.sadd(ce_round_keys(pf, t, j, key.round, key.kind), key.to_str())
        if key.client is not None:
            pipe.zadd(ce_client_rounds(pf, t, j, key.client, key.kind), {str(key.round): key.round})
