"""The gateway's round driver: a stoppable background loop, safe with many replicas.

Every ``delta`` seconds it executes what the JIT scheduler decides for every
job, whatever its strategy (JIT paper section 3: eager, batched, lazy, JIT):
aggregation steps, finalisations, failures at ``t_wait``.  It decides nothing
itself, apart from keeping aggregators warm where the strategy asks (the
always-on baseline's keep-alive, JIT's warm hold).  A restarted gateway simply
resumes: all it needs is in Redis, and decisions a dead replica held are
re-issued when their lease expires.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from fedfaas import keys
from fedfaas.config import Settings
from fedfaas.contracts import StepAnswer, StepRequest
from fedfaas.errors import BadRequest, FedfaasError, Unavailable
from fedfaas.openfaas.client import FaasClient, FunctionAnswer, classify_answer
from fedfaas.retry import ALL_METHODS
from gateway.registry import Registry
from gateway.rounds import STEP_FAILED, STEP_RETRY, RoundCoordinator, safe
from gateway.scheduling import JitBridge

log = logging.getLogger("fedfaas.driver")

AGGREGATE_FUNCTION = "aggregate"


def _wait_to_retry_step(seconds: float) -> None:
    log.warning("aggregate step failed (instance gone, busy or unreachable); retry in %.2f s", seconds)
    time.sleep(seconds)


def function_invoker(settings: Settings) -> Callable[[StepRequest], StepAnswer]:
    """A callable that runs one step on the ``aggregate`` function and returns its answer."""
    client = FaasClient.from_settings(settings, timeout=settings.function_timeout_s,
                                      retry=STEP_RETRY, idempotent=ALL_METHODS, sleep=_wait_to_retry_step)

    def invoke(request: StepRequest) -> StepAnswer:
        resp = client.invoke(AGGREGATE_FUNCTION, request.model_dump_json(),
                             headers={"Content-Type": "application/json"})
        answer = classify_answer(resp)
        if answer in (FunctionAnswer.FAILED, FunctionAnswer.OUT_OF_MEMORY):
            # The function ran the step and failed it: the same step would fail again.
            raise FedfaasError(f"aggregate failed the step ({resp.status_code}): {resp.text[:200]}",
                               status=500, code=STEP_FAILED)
        if answer is FunctionAnswer.TOKEN_REFUSED:
            # The deployment's secret is wrong, not the step: keep the round and retry.
            log.error("aggregate refused the gateway's internal token (%d): check the "
                      "fedfaas-internal-token secret of both", resp.status_code)
            raise Unavailable(f"aggregate refused the gateway's internal token ({resp.status_code})")
        if answer not in (FunctionAnswer.OK, FunctionAnswer.REFUSED):
            # An outage, a busy instance or the function not deployed yet: retried.
            raise Unavailable(f"aggregate answered {resp.status_code}: {resp.text[:200]}")
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                raise Unavailable(f"aggregate answered non-JSON ({resp.status_code})") from None
            message = body.get("message", body) if isinstance(body, dict) else body
            raise BadRequest(f"aggregate refused the step: {message}")
        try:
            return StepAnswer.from_json(resp.content)
        except BadRequest as exc:
            raise Unavailable(f"aggregate answered no step answer ({resp.status_code}): "
                              f"{exc.message[:200]}") from None

    return invoke


def aggregate_labels(settings: Settings) -> Callable[[], dict[str, str]]:
    """A callable that returns the ``aggregate`` function's OpenFaaS labels."""
    # Read during a round's start (once a minute per process): a hung platform must not
    # hold the request long.
    client = FaasClient.from_settings(settings, timeout=2)

    def labels() -> dict[str, str]:
        try:
            status = client.function(AGGREGATE_FUNCTION)
        except ValueError:
            raise Unavailable("the platform answered non-JSON for the aggregate function") from None
        return dict(status.get("labels") or {})

    return labels


class Pinger:
    """Warm-up pings of ``aggregate`` off the driver's thread, one in flight at a time.

    A ping that meets no warm instance waits for a cold start (seconds), which
    must not hold up the scheduler's decisions.
    """

    def __init__(self, warm: Callable[[], Any]) -> None:
        self.warm = warm
        self._lock = threading.Lock()
        self._in_flight = False

    def ping(self) -> bool:
        """Send a ping in the background; False if one is still in flight."""
        with self._lock:
            if self._in_flight:
                return False
            self._in_flight = True
        threading.Thread(target=self._run, name="fedfaas-warm-ping", daemon=True).start()
        return True

    def _run(self) -> None:
        try:
            safe(self.warm)
        finally:
            with self._lock:
                self._in_flight = False


class Driver:
    """Runs the round loop in a daemon thread until :meth:`stop`."""

    def __init__(self, registry: Registry, bridge: JitBridge,
                 interval_s: float = Settings.driver_delta_s, warm: Callable[[], Any] | None = None,
                 ping_s: float = Settings.always_on_ping_s) -> None:
        self.registry = registry
        self.bridge = bridge
        self.interval_s = interval_s
        self.pinger = Pinger(warm or (lambda: None))
        self.ping_s = ping_s
        self._last_warm = 0.0
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
        """Execute the scheduler's decisions, then keep aggregators warm where asked."""
        safe(lambda: self.bridge.tick(now))
        members = cast(set[bytes], self.registry.redis.smembers(keys.active_rounds()))
        for member in sorted(members):
            job_id, _, rnd_text = bytes(member).decode().rpartition(":")
            safe(lambda j=job_id, r=int(rnd_text): self._keep_warm(j, r, now))  # type: ignore[misc]

    def _keep_warm(self, job_id: str, rnd: int, now: float | None) -> None:
        now = time.time() if now is None else now
        strategy = self.registry.get_job(job_id).spec.strategy.name
        if strategy == "eager-always-on" and now - self._last_warm > self.ping_s:
            # The always-on baseline keeps its aggregator alive for the whole job.
            self._last_warm = now
            self.pinger.ping()
        elif strategy == "jit" and self.bridge.claim_warm_ping(job_id, rnd, now):
            # JIT's warm hold: an instance ready for the round's last update.
            self.pinger.ping()


def new_coordinator(registry: Registry, settings: Settings) -> RoundCoordinator:
    """A round coordinator invoking the ``aggregate`` function of ``settings``' OpenFaaS."""
    return RoundCoordinator(registry, function_invoker(settings), owner=uuid.uuid4().hex)


def start_driver(registry: Registry, bridge: JitBridge,
                 settings: Settings) -> Driver | None:
    """Start the driver unless ``FEDFAAS_DRIVER=0`` (e.g. API-only replicas)."""
    if not settings.driver:
        return None
    client = FaasClient.from_settings(settings, timeout=10)

    def warm() -> None:
        client.invoke(AGGREGATE_FUNCTION, b"", method="GET")

    driver = Driver(registry, bridge, settings.driver_delta_s, warm, settings.always_on_ping_s)
    driver.start()
    return driver
