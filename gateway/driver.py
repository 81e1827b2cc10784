"""The gateway's round driver: a stoppable background loop, safe with many replicas.

Every ``delta`` seconds it walks the active rounds in Redis, takes each round's
lease (so one replica acts on a round at a time), applies the job's aggregation
strategy (JIT paper section 3: eager, batched, lazy, JIT) and closes rounds that
are due.  A restarted gateway simply resumes: all it needs is in Redis.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from typing import Any, cast

from fedfaas import keys
from fedfaas.config import Settings
from fedfaas.errors import BadRequest, Unavailable
from fedfaas.faas.client import FaasClient
from gateway.registry import JobRecord, Registry
from gateway.rounds import RoundCoordinator, safe

log = logging.getLogger("fedfaas.driver")

AGGREGATE_FUNCTION = "aggregate"


def function_invoker(settings: Settings) -> Any:
    """A callable that runs one step on the ``aggregate`` function and returns its JSON."""
    client = FaasClient(settings.faas_gateway_url, settings.faas_basic_auth,
                        timeout=settings.function_timeout_s)

    def invoke(request: dict[str, Any]) -> dict[str, Any]:
        resp = client.invoke(AGGREGATE_FUNCTION, json.dumps(request),
                             headers={"Content-Type": "application/json"})
        if resp.status_code >= 500 or resp.status_code == 429:
            raise Unavailable(f"aggregate answered {resp.status_code}: {resp.text[:200]}")
        try:
            body: dict[str, Any] = resp.json()
        except ValueError:
            raise Unavailable(f"aggregate answered non-JSON ({resp.status_code})") from None
        if resp.status_code >= 400:
            raise BadRequest(f"aggregate refused the step: {body.get('message', body)}")
        return body

    return invoke


class StrategyPolicy:
    """When to fold pending updates before the round closes (paper section 3)."""

    def early_folds(self, job: JobRecord, pending: list[str], now: float, record: Any) -> list[list[str]]:
        """Groups of parties to fold now, one invocation per group."""
        name = job.spec.strategy.name
        if name in ("eager-serverless", "eager-always-on"):
            return [[p] for p in pending]
        if name == "batched-serverless":
            k = job.spec.strategy.batch_size
            return [pending[i:i + k] for i in range(0, len(pending) - len(pending) % k, k)]
        if name == "jit":
            due_at = record.extra.get("jit_start_at")
            if due_at is not None and now >= float(due_at) and pending:
                return [pending]
        return []


class Driver:
    """Runs the round loop in a daemon thread until :meth:`stop`."""

    def __init__(self, registry: Registry, coordinator: RoundCoordinator, interval_s: float = 0.5) -> None:
        self.registry = registry
        self.coordinator = coordinator
        self.interval_s = interval_s
        self.policy = StrategyPolicy()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fedfaas-driver", daemon=True)

    def start(self) -> None:
        """Start the loop."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to stop and wait for it."""
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            safe(self.tick)

    def tick(self, now: float | None = None) -> None:
        """One pass over every active round."""
        members = cast(set[bytes], self.registry.redis.smembers(keys.active_rounds()))
        for member in sorted(members):
            job_id, _, rnd_text = bytes(member).decode().rpartition(":")
            rnd = int(rnd_text)
            if not self.coordinator.acquire(job_id, rnd):
                continue
            try:
                safe(lambda j=job_id, r=rnd: self._drive(j, r, now))  # type: ignore[misc]
            finally:
                self.coordinator.release(job_id, rnd)

    def _drive(self, job_id: str, rnd: int, now: float | None) -> None:
        now = time.time() if now is None else now
        job = self.registry.get_job(job_id)
        record = self.registry.get_round(job_id, rnd)
        if record.state == "open" and self.coordinator.due(job, record, now) is None:
            for group in self.policy.early_folds(job, self.coordinator.pending(job_id, rnd), now, record):
                self.coordinator.fold(job, rnd, group)
        self.coordinator.close_if_due(job, rnd, now)


def start_driver(registry: Registry, settings: Settings) -> Driver | None:
    """Start the driver unless ``FEDFAAS_DRIVER=0`` (e.g. API-only replicas)."""
    if os.environ.get("FEDFAAS_DRIVER", "1") == "0":
        return None
    coordinator = RoundCoordinator(registry, function_invoker(settings), owner=uuid.uuid4().hex)
    driver = Driver(registry, coordinator, float(os.environ.get("FEDFAAS_DRIVER_DELTA_S", "0.5")))
    driver.start()
    return driver
