"""Redis layout of the Cache Engine and the Redis-backed catalog (FLStore, section 4.2).

Every key of a tenant's table, catalog and policy state lives under
``<prefix>:t:<tenant>:j:<job>:``, so a lookup built from one tenant's data key
can only ever read that tenant's entries.  Function contents are shared by
every tenant whose data a function holds and are keyed by the full data key.

Keys (prefix ``ff:ce`` by default)::

    fn:<fid>                  hash  data key -> bytes held by cache function <fid>
    rank:lru|lfu|fifo         zset  data key -> last access | access count | arrival
    clock                     int   logical clock for the ranks
    t:<t>:stats               hash  "<policy>:hits|misses" -> count
    t:<t>:j:<j>:loc           hash  data key -> "primary,replica,..." (the Cache Engine table)
    t:<t>:j:<j>:ver           int   bumped by every change to the job (optimistic locking)
    t:<t>:j:<j>:state         hash  policy -> JSON policy state
    t:<t>:j:<j>:workloads     hash  workload -> policy
    t:<t>:j:<j>:size          hash  data key -> bytes (catalog: everything ingested)
    t:<t>:j:<j>:latest        hash  kind -> latest round
    t:<t>:j:<j>:r:<r>:<kind>  set   data keys of a round
    t:<t>:j:<j>:c:<c>:<kind>  zset  rounds of a client's data
"""

from __future__ import annotations

from typing import Any

from cache_engine.keys import DataKey
from fedfaas.meta import text

DEFAULT_PREFIX = "ff:ce"


class Layout:
    """Names of the Cache Engine's Redis keys under ``prefix``."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix

    def fn(self, function_id: str) -> str:
        return f"{self.prefix}:fn:{function_id}"

    def rank(self, order: str) -> str:
        return f"{self.prefix}:rank:{order}"

    @property
    def clock(self) -> str:
        return f"{self.prefix}:clock"

    def stats(self, tenant: str) -> str:
        return f"{self.prefix}:t:{tenant}:stats"

    def job(self, tenant: str, job: str, part: str) -> str:
        """``loc``, ``ver``, ``state``, ``workloads``, ``size`` or ``latest`` of one job."""
        return f"{self.prefix}:t:{tenant}:j:{job}:{part}"

    def round_keys(self, tenant: str, job: str, rnd: int, kind: str) -> str:
        return f"{self.prefix}:t:{tenant}:j:{job}:r:{rnd}:{kind}"

    def client_rounds(self, tenant: str, job: str, client: str, kind: str) -> str:
        return f"{self.prefix}:t:{tenant}:j:{job}:c:{client}:{kind}"


class RedisCatalog:
    """The :class:`~cache_engine.catalog.CatalogView` of one transaction, read from Redis.

    Reads are memoised for the transaction's lifetime.  ``pending`` is a key
    being ingested by this transaction: it is visible to the policies before
    :meth:`write` commits it.
    """

    def __init__(self, client: Any, layout: Layout, pending: tuple[DataKey, int] | None = None):
        self.client = client
        self.layout = layout
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
            self.layout.job(tenant, job, "latest"), kind))
        latest = None if raw is None else int(text(raw))
        p = self._pending_key()
        if p is not None and (p.tenant, p.job, p.kind) == (tenant, job, kind):
            latest = p.round if latest is None else max(latest, p.round)
        return latest

    def keys_of_round(self, tenant: str, job: str, round: int, kind: str) -> list[DataKey]:
        raw = self._cached(("round", tenant, job, round, kind), lambda: self.client.smembers(
            self.layout.round_keys(tenant, job, round, kind)))
        keys = {DataKey.from_str(text(m)) for m in raw}
        p = self._pending_key()
        if p is not None and (p.tenant, p.job, p.round, p.kind) == (tenant, job, round, kind):
            keys.add(p)
        return sorted(keys)

    def client_neighbours(
        self, tenant: str, job: str, client: str, kind: str, round: int
    ) -> tuple[int | None, int | None]:
        name = self.layout.client_rounds(tenant, job, client, kind)
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
            self.layout.job(key.tenant, key.job, "size"), key.to_str()))
        return None if raw is None else int(text(raw))

    def write(self, pipe: Any) -> None:
        """Queue the commands that add ``pending`` to the catalog (inside MULTI)."""
        if not self.pending:
            return
        key, size = self.pending
        t, j, lay = key.tenant, key.job, self.layout
        pipe.hset(lay.job(t, j, "size"), key.to_str(), size)
        latest = key.round if self._pending_latest is None else self._pending_latest
        pipe.hset(lay.job(t, j, "latest"), key.kind, latest)
        pipe.sadd(lay.round_keys(t, j, key.round, key.kind), key.to_str())
        if key.client is not None:
            pipe.zadd(lay.client_rounds(t, j, key.client, key.kind), {str(key.round): key.round})
