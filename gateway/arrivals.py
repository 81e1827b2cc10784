"""The arrivals stream, read by consumer groups: one event per stored update, once per group.

Ingest announces each durable update once, in the same Redis transition that
records it (:meth:`gateway.registry.Registry.record_update`); the round
coordinator announces each published global model.  Every consumer of those
events (the JIT scheduler, FLStore's Cache Engine) reads them through its own
consumer group, so each group handles each event once however many gateway
replicas run: a replica reads new entries with ``XREADGROUP``, acknowledges
an entry after handling it, and claims entries that another replica read but
never acknowledged (it died) once they have been pending ``CLAIM_IDLE_MS``.

Handlers must be idempotent: an entry is handled again when its handler's
replica died before the acknowledgement.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, cast

import redis

from fedfaas import keys
from fedfaas.errors import FedfaasError
from fedfaas.meta import text

log = logging.getLogger("fedfaas.arrivals")

CLAIM_IDLE_MS = 30_000
"""How long an entry may stay unacknowledged before another replica claims it."""
BLOCK_MS = 1_000
"""Longest one read waits for new entries (the loop checks for a stop this often)."""
BATCH = 64

Handler = Callable[[dict[str, str]], None]


class StreamConsumer:
    """One replica's member of one consumer group on the arrivals stream.

    Parameters
    ----------
    client
        Redis client with a socket timeout longer than ``BLOCK_MS``.
    group
        The consumer group (one per kind of consumer, e.g. ``"jit"``).
    consumer
        This replica's name in the group.
    handle
        Called with each entry's fields; raising :class:`redis.RedisError` or a
        retryable :class:`FedfaasError` leaves the entry pending, to be handled
        again; any other error is logged and the entry acknowledged, so one bad
        entry cannot block the group.
    """

    def __init__(self, client: redis.Redis, group: str, consumer: str, handle: Handler,
                 *, claim_idle_ms: int = CLAIM_IDLE_MS, block_ms: int = BLOCK_MS) -> None:
        self.redis = client
        self.stream = keys.arrivals_stream()
        self.group = group
        self.consumer = consumer
        self.handle = handle
        self.claim_idle_ms = claim_idle_ms
        self.block_ms = block_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._group_ready = False
        # Entries whose handler asked for a retry: tried again on every pass until done
        # (another replica claims them after CLAIM_IDLE_MS should this one die).
        self._retry: list[Any] = []

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Consume in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, name=f"fedfaas-{self.group}-events",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to stop and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except redis.RedisError as exc:
                log.warning("%s events: redis unavailable: %s", self.group, exc)
                # Redis restarted without its data would have lost the group too.
                self._group_ready = False
                self._stop.wait(1.0)

    # --- one pass --------------------------------------------------------------------
    def ensure_group(self) -> None:
        """Create the group at the stream's start (reading every entry) unless it exists."""
        if self._group_ready:
            return
        try:
            self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def poll(self, block_ms: int | None = None) -> int:
        """Handle entries abandoned by dead replicas, then new ones; returns how many."""
        self.ensure_group()
        retry, self._retry = self._retry, []
        done = self._handle_all(retry)
        done += self._handle_all(self._claim_abandoned())
        wait = self.block_ms if block_ms is None else block_ms
        batches = self.redis.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=BATCH,
                                        block=wait if wait > 0 else None)
        for _, entries in cast(list[Any], batches or []):
            done += self._handle_all(entries)
        return done

    def _claim_abandoned(self) -> list[Any]:
        reply = cast(list[Any], self.redis.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_time=self.claim_idle_ms,
            start_id="0-0", count=BATCH))
        waiting = {text(entry_id) for entry_id, _ in self._retry}
        return [e for e in (reply[1] if len(reply) > 1 else []) if text(e[0]) not in waiting]

    def _handle_all(self, entries: list[Any]) -> int:
        done = 0
        for entry_id, fields in entries:
            if fields is None:  # trimmed from the stream while pending
                self.redis.xack(self.stream, self.group, entry_id)
                continue
            try:
                self.handle({text(k): text(v) for k, v in fields.items()})
            except redis.RedisError:
                raise  # left pending; handled again once Redis answers
            except FedfaasError as exc:
                if exc.retryable:
                    log.debug("%s events: entry %s left for a retry: %s", self.group, text(entry_id),
                              exc.message)
                    self._retry.append((entry_id, fields))
                    continue
                log.warning("%s events: entry %s refused: %s", self.group, text(entry_id), exc.message)
            except (KeyError, ValueError) as exc:
                log.warning("%s events: malformed entry %s: %s", self.group, text(entry_id), exc)
            self.redis.xack(self.stream, self.group, entry_id)
            done += 1
        return done
