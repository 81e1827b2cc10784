"""Fault injection on the local stack's components, the way real outages look to the gateway.

``crash`` is a node failure (SIGKILL of the component's whole process group,
no chance to flush or say goodbye); ``freeze`` is a hung server (SIGSTOP: its
sockets stay open and accept connections, but nothing answers) and ``thaw``
ends it.  ``LocalStack.restart(name)`` brings a crashed component back on its
old port.  Used by the reliability tests and ``fedfaas bench reliability``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

import psutil

from fedfaas.devstack.localstack.procs import pid_alive
from fedfaas.devstack.localstack.stack import LocalStack


def component_pid(stack: LocalStack, name: str) -> int:
    """Pid (and process group) of a running component; KeyError when it is not running."""
    state = stack.read_state()
    if state is None:
        raise RuntimeError(f"no local stack running in {stack.data_dir}")
    return int(state["pids"][name])


def crash(stack: LocalStack, name: str, timeout_s: float = 10.0) -> None:
    """SIGKILL a component's process group and wait until it is gone."""
    pid = component_pid(stack, name)
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when this process started the stack
        time.sleep(0.05)


def freeze(stack: LocalStack, name: str) -> None:
    """SIGSTOP a component's process group."""
    os.killpg(component_pid(stack, name), signal.SIGSTOP)


def thaw(stack: LocalStack, name: str) -> None:
    """SIGCONT a frozen component's process group."""
    os.killpg(component_pid(stack, name), signal.SIGCONT)


def frozen(stack: LocalStack) -> list[str]:
    """Components that are currently stopped by SIGSTOP."""
    out = []
    for name, pid in (stack.read_state() or {}).get("pids", {}).items():
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(int(pid)).status() == psutil.STATUS_STOPPED:
                out.append(name)
    return out


def heal(stack: LocalStack) -> list[str]:
    """Thaw frozen components and restart dead ones; returns what was healed."""
    healed = []
    for name in frozen(stack):
        thaw(stack, name)
        healed.append(name)
    alive = stack.running()
    for name in (stack.read_state() or {}).get("components", []):
        if not alive.get(name, False):
            stack.restart(name)
            healed.append(name)
    return healed
