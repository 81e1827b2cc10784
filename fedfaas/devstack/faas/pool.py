"""The replicas of one function: cold starts, autoscaling, scale-to-zero, faults, accounting.

This is the local stand-in for what OpenFaaS (faas-netes/faasd plus the Pro
autoscaler) does with containers.  Container-seconds are what JIT aggregation
(paper 000, Sec. 6.2 "Metrics") and FLStore (paper 002) compare strategies
by, so every replica's alive time, from spawn (cold start included) to exit,
is accounted (:mod:`fedfaas.devstack.faas.replica`).

Scaling rules, kept simple:

- a call takes a random ready replica with a free slot (``max_inflight`` per
  replica, else the router's ``instance_concurrency``); no sticky routing;
- when none is free and fewer than ``max`` replicas are alive, the call starts
  enough replicas for everyone waiting (a *cold start*) and waits for one;
- every tick, the replicas wanted are ``ceil(peak demand / slots)`` over the
  last ``idle_s`` (demand = calls in flight + waiting), never below the floor;
  idle replicas older than ``idle_s`` beyond that are stopped, so a function
  with no call for ``idle_s`` drops to its floor: 0 when it may scale to zero,
  else ``com.openfaas.scale.min`` (default 1);
- a replica that dies is dropped; the floor is restored with a back-off.

Everything runs on the router's event loop, so no locks are needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import signal
import time

import aiohttp

from fedfaas.devstack.faas.launcher import Launcher
from fedfaas.devstack.faas.logs import event
from fedfaas.devstack.faas.options import RouterOptions
from fedfaas.devstack.faas.replica import Accounting, DemandWindow, Instance, ScalePolicy, State
from fedfaas.errors import BadRequest, NotFound, TooManyRequests, Unavailable
from fedfaas.openfaas.stackfile import FunctionSpec

_HEALTH_POLL_S = (0.02, 0.2)
_RESTART_BACKOFF_S = (0.5, 30.0)
_KILL_WAIT_S = 10.0
# Why a replica exited -> the Accounting counter it increments ("failed" starts count nowhere).
_EXIT_COUNTERS = {
    "stopped": "instances_stopped",
    "killed": "instances_killed",
    "crashed": "instances_crashed",
}


class FunctionPool:
    """Replicas of one function and the rules that start, route to and stop them."""

    def __init__(
        self,
        spec: FunctionSpec,
        policy: ScalePolicy,
        launcher: Launcher,
        http: aiohttp.ClientSession,
        options: RouterOptions,
    ) -> None:
        self.spec = spec
        self.policy = policy
        self.options = options
        self.accounting = Accounting()
        self.invocation_count = 0
        self.lifetime_container_s = 0.0
        self.instances: dict[int, Instance] = {}
        self.waiting = 0
        self._launcher = launcher
        self._http = http
        self._next_idx = 0
        self._demand = DemandWindow(policy.idle_s)
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_start_failure: tuple[float, str] | None = None
        self._restart_backoff_s = _RESTART_BACKOFF_S[0]
        self._restart_not_before = 0.0
        self._closing = False

    @property
    def name(self) -> str:
        """The function's name."""
        return self.spec.name

    @property
    def live(self) -> list[Instance]:
        """Replicas that are starting or ready."""
        return [i for i in self.instances.values() if i.state in (State.STARTING, State.READY)]

    @property
    def ready(self) -> list[Instance]:
        """Replicas that take calls."""
        return [i for i in self.instances.values() if i.state is State.READY]

    def demand(self) -> int:
        """Calls in flight plus calls waiting for a replica."""
        return sum(i.inflight for i in self.live) + self.waiting

    def container_seconds(self, now: float | None = None) -> float:
        """Container-seconds of the current accounting period, live replicas up to ``now``."""
        now = time.monotonic() if now is None else now
        live = sum(self.accounting.alive_s(i, now) for i in self.instances.values())
        return self.accounting.closed_container_s + live

    def reset_accounting(self) -> None:
        """Start a new accounting period now."""
        self.accounting = Accounting()

    # ----------------------------------------------------------------- calls

    async def acquire(self, timeout_s: float) -> tuple[Instance, bool]:
        """Wait for a ready replica with a free slot; returns it and whether a cold start happened.

        Raises
        ------
        TooManyRequests
            Too many calls are already waiting.
        Unavailable
            No replica became free within ``timeout_s``, or replicas fail to start.
        """
        if self._closing:
            raise Unavailable("the router is shutting down")
        if self.waiting >= self.options.max_waiting:
            raise TooManyRequests(f"{self.waiting} calls to {self.name} are already waiting")
        began = time.monotonic()
        deadline = began + timeout_s
        cold = False
        self.waiting += 1
        try:
            while True:
                inst = self._pick()
                if inst is not None:
                    inst.inflight += 1
                    self._demand.note(time.monotonic(), self.demand())
                    return inst, cold
                if self._closing:
                    raise Unavailable("the router is shutting down")
                failure = self._last_start_failure
                if failure is not None and failure[0] >= began and not self.live:
                    raise Unavailable(f"function {self.name} failed to start: {failure[1]}")
                started = self._scale_up()
                cold = cold or started > 0 or any(i.state is State.STARTING for i in self.live)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Unavailable(f"no replica of {self.name} was free within {timeout_s:g}s")
                self._demand.note(time.monotonic(), self.demand())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
        finally:
            self.waiting -= 1

    def release(self, inst: Instance, busy_s: float) -> None:
        """Give back the slot taken by :meth:`acquire`."""
        inst.inflight -= 1
        inst.last_used = time.monotonic()
        self.accounting.busy_s += busy_s
        self._notify()

    def record_call(self, status: int) -> None:
        """Count one finished invocation."""
        self.invocation_count += 1
        self.accounting.invocations += 1
        if status >= 500:
            self.accounting.errors += 1

    def _pick(self) -> Instance | None:
        free = [i for i in self.ready if i.inflight < self.policy.capacity]
        return random.choice(free) if free else None

    def _scale_up(self) -> int:
        """Start replicas for the calls that found no free slot; returns how many."""
        wanted = min(math.ceil(self.demand() / self.policy.capacity), self.policy.max_replicas)
        count = max(0, wanted - len(self.live))
        for _ in range(count):
            self._start(on_demand=True)
            self.accounting.cold_starts += 1
        return count

    # ----------------------------------------------------------- autoscaling

    def autoscale(self) -> None:
        """One autoscaler tick: shrink idle replicas beyond the demand, restore the floor."""
        if self._closing:
            return
        now = time.monotonic()
        self._demand.note(now, self.demand())
        peak = self._demand.peak()
        floor = self.policy.floor
        desired = floor if peak == 0 else max(floor, math.ceil(peak / self.policy.capacity))
        live = self.live
        if len(live) > desired:
            idle = sorted(
                (
                    i
                    for i in live
                    if i.state is State.READY
                    and i.inflight == 0
                    and now - (i.ready_mono or now) >= self.policy.idle_s
                ),
                key=lambda i: i.last_used,
            )
            for inst in idle[: len(live) - desired]:
                self._stop(inst, "stopped")
        missing = floor - len(self.live)
        if missing > 0 and now >= self._restart_not_before:
            for _ in range(missing):
                self._start(on_demand=False)

    async def scale_to(self, replicas: int) -> None:
        """Set the replica count now (``/system/scale-function``); the autoscaler acts later."""
        if not 0 <= replicas <= self.policy.max_replicas:
            raise BadRequest(f"replicas for {self.name} must be between 0 and {self.policy.max_replicas}")
        if replicas < self.policy.floor:
            raise BadRequest(
                f"replicas {replicas} is below the floor of {self.name} ({self.policy.floor}: "
                "com.openfaas.scale.min without scale-to-zero)"
            )
        live = self.live
        for _ in range(replicas - len(live)):
            self._start(on_demand=False)
        idle = sorted(
            (i for i in live if i.state is State.READY and i.inflight == 0),
            key=lambda i: i.last_used,
        )
        for inst in idle[: max(0, len(live) - replicas)]:
            self._stop(inst, "stopped")

    async def kill(self, idx: int | None) -> Instance:
        """SIGKILL one replica as a provider reclaiming it; waits until it is gone."""
        live = [
            i
            for i in self.instances.values()
            if i.pid is not None and not i.exited.is_set() and i.state is not State.STOPPING
        ]
        if idx is None:
            if not live:
                raise NotFound(f"function {self.name} has no live replica to kill")
            inst = random.choice(live)
        else:
            found = [i for i in live if i.idx == idx]
            if not found:
                raise NotFound(f"function {self.name} has no live replica {idx}")
            inst = found[0]
        self._stop(inst, "killed", sig=signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(inst.exited.wait(), _KILL_WAIT_S)
        return inst

    async def close(self, grace_s: float) -> None:
        """Stop every replica: SIGTERM, ``grace_s``, then SIGKILL; wait for their exit."""
        self._closing = True
        self._notify()
        for inst in list(self.instances.values()):
            self._stop(inst, "stopped")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace_s + _KILL_WAIT_S)

    # ------------------------------------------------------------ life cycle

    def _start(self, on_demand: bool) -> Instance:
        inst = Instance(
            function=self.name,
            idx=self._next_idx,
            started_mono=time.monotonic(),
            started_wall=time.time(),
            on_demand=on_demand,
        )
        self._next_idx += 1
        self.instances[inst.idx] = inst
        self.accounting.instances_started += 1
        task = asyncio.get_running_loop().create_task(self._run(inst))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return inst

    def _stop(self, inst: Instance, reason: str, sig: int = signal.SIGTERM) -> None:
        if inst.exited.is_set():
            return
        if inst.state is not State.STOPPING:
            inst.state = State.STOPPING
            inst.stop_reason = reason
        self._notify()
        if inst.pid is None:
            return  # still spawning: _run stops it as soon as the process exists
        _signal_group(inst.pid, sig)
        if sig != signal.SIGKILL:
            loop = asyncio.get_running_loop()
            loop.call_later(self.options.grace_s, self._force_kill, inst)

    def _force_kill(self, inst: Instance) -> None:
        if not inst.exited.is_set() and inst.pid is not None:
            _signal_group(inst.pid, signal.SIGKILL)

    async def _run(self, inst: Instance) -> None:
        """Spawn a replica, wait until it answers ``/_/health``, then until it exits."""
        try:
            process = await self._launcher.spawn(self.spec, inst.idx, threads=max(4, self.policy.capacity))
        except Exception as exc:  # a bad spawn must not take the router down
            self._start_failed(inst, f"spawn failed: {exc}")
            self._finish(inst, returncode=None)
            return
        inst.pid, inst.port = process.pid, process.port
        event(
            "instance starting",
            function=self.name,
            instance=inst.idx,
            pid=inst.pid,
            port=inst.port,
            on_demand=inst.on_demand,
        )
        exit_task = asyncio.ensure_future(process.wait())
        if inst.state is State.STOPPING:
            self._stop(inst, inst.stop_reason or "stopped")
        else:
            await self._wait_ready(inst, exit_task)
        returncode = await exit_task
        self._finish(inst, returncode)

    async def _wait_ready(self, inst: Instance, exit_task: asyncio.Future[int]) -> None:
        url = f"http://127.0.0.1:{inst.port}/_/health"
        deadline = time.monotonic() + self.options.start_timeout_s
        pause = _HEALTH_POLL_S[0]
        while inst.state is State.STARTING and not exit_task.done():
            if time.monotonic() > deadline:
                self._start_failed(inst, f"no answer on /_/health within {self.options.start_timeout_s:g}s")
                self._stop(inst, "failed", sig=signal.SIGKILL)
                return
            try:
                timeout = aiohttp.ClientTimeout(total=1.0)
                async with self._http.get(url, timeout=timeout) as resp:
                    if resp.status == 200:
                        self._ready(inst)
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.wait([exit_task], timeout=pause)
            pause = min(pause * 2, _HEALTH_POLL_S[1])
        if exit_task.done() and inst.state is State.STARTING:
            log_path = self._launcher.log_path(self.name)
            self._start_failed(inst, f"exited with code {exit_task.result()} (see {log_path})")

    def _ready(self, inst: Instance) -> None:
        now = time.monotonic()
        inst.state, inst.ready_mono, inst.last_used = State.READY, now, now
        self._restart_backoff_s = _RESTART_BACKOFF_S[0]
        event(
            "instance ready",
            function=self.name,
            instance=inst.idx,
            pid=inst.pid,
            startup_s=round(now - inst.started_mono, 3),
        )
        self._notify()

    def _start_failed(self, inst: Instance, message: str) -> None:
        now = time.monotonic()
        self._last_start_failure = (now, message)
        self._restart_not_before = now + self._restart_backoff_s
        self._restart_backoff_s = min(self._restart_backoff_s * 2, _RESTART_BACKOFF_S[1])
        event("instance failed to start", logging.ERROR, function=self.name, instance=inst.idx, error=message)

    def _finish(self, inst: Instance, returncode: int | None) -> None:
        now = time.monotonic()
        reason = inst.stop_reason or ("crashed" if inst.ready_mono is not None else "failed")
        if reason == "crashed":
            self._restart_not_before = now + self._restart_backoff_s
        inst.state = State.DEAD
        self.accounting.closed_container_s += self.accounting.alive_s(inst, now)
        self.lifetime_container_s += now - inst.started_mono
        counter = _EXIT_COUNTERS.get(reason)
        if counter is not None:
            setattr(self.accounting, counter, getattr(self.accounting, counter) + 1)
        self.instances.pop(inst.idx, None)
        self._launcher.cleanup(self.name, inst.idx)
        inst.exited.set()
        event(
            "instance exited",
            function=self.name,
            instance=inst.idx,
            pid=inst.pid,
            code=returncode,
            reason=reason,
            alive_s=round(now - inst.started_mono, 3),
        )
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # --------------------------------------------------------------- views

    def accounting_view(self) -> dict[str, float]:
        """JSON view of the current accounting period."""
        acct, now = self.accounting, time.monotonic()
        return {
            "container_seconds": round(self.container_seconds(now), 6),
            "busy_seconds": round(acct.busy_s, 6),
            "invocations": acct.invocations,
            "errors": acct.errors,
            "cold_starts": acct.cold_starts,
            "instances_started": acct.instances_started,
            "instances_stopped": acct.instances_stopped,
            "instances_killed": acct.instances_killed,
            "instances_crashed": acct.instances_crashed,
            "live_instances": len(self.live),
            "ready_instances": len(self.ready),
            "stopping_instances": len(self.instances) - len(self.live),
            "in_flight": sum(i.inflight for i in self.instances.values()),
            "waiting": self.waiting,
        }


def _signal_group(pid: int, sig: int) -> None:
    """Signal a replica's process group (it is the leader of its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
