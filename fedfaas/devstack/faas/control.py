"""Start and stop the local router process, and clean up after one that died.

``fedfaas up`` calls :func:`start_router`; ``fedfaas down`` calls
:func:`stop_router`, which also SIGKILLs any replica a dead router left behind
(their pids are in ``<state_dir>/instances/``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from fedfaas.devstack.faas.options import RouterOptions
from fedfaas.errors import Unavailable
from fedfaas.openfaas.client import FaasClient

ROUTER_MODULE = "fedfaas.devstack.faas.router"
INSTANCE_MODULE = "fedfaas.devstack.faas.instance"
_POLL_S = 0.05


@dataclass
class RouterProcess:
    """A running router started by :func:`start_router`."""

    popen: subprocess.Popen[bytes]
    state_dir: Path
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        """The router's pid."""
        return self.popen.pid

    def client(self, auth: tuple[str, str] | None = None, timeout: float = 30.0) -> FaasClient:
        """A :class:`FaasClient` for this router."""
        return FaasClient(self.url, auth=auth, timeout=timeout)

    def stop(self, grace_s: float = 15.0) -> int:
        """SIGTERM the router (it stops its replicas), SIGKILL after ``grace_s``; exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5.0)
        kill_leftovers(self.state_dir)
        return self.popen.returncode


def start_router(
    stack_path: str | os.PathLike[str],
    port: int = 0,
    state_dir: str | os.PathLike[str] = ".fedfaas/devstack/faas",
    env: Mapping[str, str] | None = None,
    secrets_dir: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    options: RouterOptions | None = None,
    python: str = sys.executable,
    log_path: str | os.PathLike[str] | None = None,
    wait: bool = True,
    timeout_s: float = 60.0,
    new_session: bool = True,
) -> RouterProcess:
    """Start ``python -m fedfaas.devstack.faas.router`` and, by default, wait until it is ready.

    Parameters
    ----------
    stack_path
        The ``stack.yml`` to run.
    port
        Port to listen on; 0 picks a free one (read it from the returned ``url``).
    state_dir
        Pid files, logs, secrets and replica overlays (see :mod:`fedfaas.devstack.faas.launcher`).
    env
        Variables added to ``os.environ`` for the router and every replica.
    secrets_dir
        Folder of secret files; ``basic-auth-user``/``basic-auth-password`` protect ``/system``.
    options
        Router tunables (scale-to-zero idle time, timeouts, ...).
    log_path
        Where the router's JSON log goes (default ``<state_dir>/router.log``).
    wait
        Wait for ``/healthz`` (floor replicas started) before returning.
    new_session
        Detach the router from the caller's session so it survives the caller (``fedfaas up``).

    Raises
    ------
    Unavailable
        The router exited or was not ready within ``timeout_s``.
    """
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    info_path = state / "router.json"
    info_path.unlink(missing_ok=True)
    log_file_path = Path(log_path) if log_path else state / "router.log"
    args = [
        python,
        "-m",
        ROUTER_MODULE,
        "--stack",
        str(Path(stack_path).resolve()),
        "--host",
        host,
        "--port",
        str(port),
        "--state-dir",
        str(state),
        "--python",
        python,
        *(options or RouterOptions()).to_args(),
    ]
    if secrets_dir is not None:
        args += ["--secrets-dir", str(Path(secrets_dir).resolve())]
    with open(log_file_path, "ab") as log_file:
        popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env={**os.environ, **(env or {})},
            start_new_session=new_session,
        )
    deadline = time.monotonic() + timeout_s
    info = None
    while info is None:
        info = _read_json(info_path)
        if info is not None and info.get("pid") != popen.pid:
            info = None
        if info is None:
            _check_alive(popen, log_file_path, deadline, timeout_s)
            time.sleep(_POLL_S)
    router = RouterProcess(popen=popen, state_dir=state, url=info["url"], log_path=log_file_path)
    if wait:
        with router.client() as client:
            try:
                client.wait_ready(max(0.1, deadline - time.monotonic()))
            except Unavailable:
                router.stop()
                raise
    return router


def read_router_info(state_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``{"pid", "host", "port", "url"}`` of the router running on ``state_dir``, or None."""
    info = _read_json(Path(state_dir) / "router.json")
    if info is None or not _is_ours(int(info.get("pid", 0)), ROUTER_MODULE):
        return None
    return info


def stop_router(state_dir: str | os.PathLike[str], grace_s: float = 15.0) -> bool:
    """Stop the router of ``state_dir`` (SIGTERM, then SIGKILL) and any replica left behind.

    Returns True when a router was running.
    """
    state = Path(state_dir)
    pid = _read_pid(state / "router.pid")
    running = pid is not None and _is_ours(pid, ROUTER_MODULE)
    if running and pid is not None:
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace_s)
            except psutil.TimeoutExpired:
                process.kill()
                process.wait(5.0)
    kill_leftovers(state)
    for name in ("router.pid", "router.json"):
        (state / name).unlink(missing_ok=True)
    # Overlays of replicas that died with their router; the router removes its own otherwise.
    shutil.rmtree(state / "apps", ignore_errors=True)
    return running


def kill_leftovers(state_dir: str | os.PathLike[str]) -> list[int]:
    """SIGKILL every replica recorded in ``<state_dir>/instances`` that still runs; their pids."""
    killed: list[int] = []
    folder = Path(state_dir) / "instances"
    if not folder.is_dir():
        return killed
    for pid_file in folder.glob("*.pid"):
        pid = _read_pid(pid_file)
        if pid is not None and _is_ours(pid, INSTANCE_MODULE):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
        pid_file.unlink(missing_ok=True)
    return killed


def _is_ours(pid: int, module: str) -> bool:
    """True when ``pid`` runs ``module`` (a recycled pid must never be killed)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and module in process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _check_alive(popen: subprocess.Popen[bytes], log_path: Path, deadline: float, timeout_s: float) -> None:
    if popen.poll() is not None:
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise Unavailable(f"router exited with code {popen.returncode}: {tail}")
    if time.monotonic() > deadline:
        popen.kill()
        popen.wait(5.0)
        raise Unavailable(f"router did not start within {timeout_s:g}s (log: {log_path})")
