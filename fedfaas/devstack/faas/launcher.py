"""Spawns function replicas as processes and keeps the state folder that ``fedfaas down`` reads.

State folder layout (all under ``state_dir``)::

    router.pid, router.json          the router (pid, port, url)
    instances/<function>.<idx>.pid   one file per live replica
    apps/<function>.<idx>/function/  the replica's handler overlay (symlinks)
    secrets/<function>/<secret>      the secrets the function declares, as on OpenFaaS
    logs/<function>.log              stdout and stderr of every replica of the function

Each replica is the leader of its own process group, listens on a socket the
router bound (no port races) and dies with the router (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fedfaas.openfaas.stackfile import FunctionSpec, StackFileError

SUPPORTED_LANG_PREFIX = "python3-http"


@dataclass
class SpawnedProcess:
    """A started replica process and the port it listens on."""

    process: asyncio.subprocess.Process
    port: int

    @property
    def pid(self) -> int:
        """The replica's pid (also its process-group id)."""
        return self.process.pid

    async def wait(self) -> int:
        """Wait for the process to exit; returns its exit code."""
        return await self.process.wait()


class Launcher:
    """Starts replicas of the functions of one stack file.

    Parameters
    ----------
    state_dir
        The router's state folder (see the module docstring).
    base_env
        Environment every replica starts from; the function's ``environment`` goes on top.
    secrets_dir
        Folder holding every secret file; each function sees only those it lists.
    copy_paths
        ``configuration.copy`` paths, placed in every replica's ``function/`` package.
    python
        Interpreter that runs :mod:`fedfaas.devstack.faas.instance`.
    """

    def __init__(
        self,
        state_dir: Path,
        base_env: Mapping[str, str],
        secrets_dir: Path | None,
        copy_paths: Sequence[Path] = (),
        python: str = sys.executable,
    ) -> None:
        self.state_dir = state_dir
        self.base_env = dict(base_env)
        self.secrets_dir = secrets_dir
        self.copy_paths = tuple(copy_paths)
        self.python = python
        for sub in ("instances", "apps", "secrets", "logs"):
            (state_dir / sub).mkdir(parents=True, exist_ok=True)

    def prepare(self, spec: FunctionSpec) -> None:
        """Check that ``spec`` can run locally and lay out its secrets folder.

        Raises
        ------
        StackFileError
            Unsupported ``lang``, missing ``handler.py`` or a missing secret.
        """
        where = f"function {spec.name!r}"
        if not spec.lang.startswith(SUPPORTED_LANG_PREFIX):
            raise StackFileError(
                f"{where}: lang {spec.lang!r} cannot run locally (only python3-http templates)"
            )
        if not (spec.handler / "handler.py").is_file():
            raise StackFileError(f"{where}: handler {spec.handler} has no handler.py")
        target = self.secrets_path(spec.name)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        target.chmod(0o700)
        for secret in spec.secrets:
            source = self.secrets_dir / secret if self.secrets_dir else None
            if source is None or not source.is_file():
                raise StackFileError(
                    f"{where}: secret {secret!r} not found in {self.secrets_dir or '(no folder)'}"
                )
            shutil.copyfile(source, target / secret)
            (target / secret).chmod(0o600)

    def secrets_path(self, name: str) -> Path:
        """The secrets folder a function's replicas see as ``FEDFAAS_SECRETS_DIR``."""
        return self.state_dir / "secrets" / name

    def log_path(self, name: str) -> Path:
        """The log file of a function's replicas."""
        return self.state_dir / "logs" / f"{name}.log"

    def pid_path(self, name: str, idx: int) -> Path:
        """The pid file of one replica."""
        return self.state_dir / "instances" / f"{name}.{idx}.pid"

    def app_path(self, name: str, idx: int) -> Path:
        """The folder holding one replica's ``function/`` overlay."""
        return self.state_dir / "apps" / f"{name}.{idx}"

    def environment(self, spec: FunctionSpec, idx: int) -> dict[str, str]:
        """Process environment of replica ``idx`` of ``spec``."""
        env = {**self.base_env, **spec.environment}
        env["HOSTNAME"] = f"{spec.name}-{idx}"
        env["FEDFAAS_SECRETS_DIR"] = str(self.secrets_path(spec.name))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def spawn(self, spec: FunctionSpec, idx: int, threads: int = 4) -> SpawnedProcess:
        """Start replica ``idx`` of ``spec`` and record its pid; does not wait for readiness."""
        app_dir = self.app_path(spec.name, idx)
        app_dir.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            args = [
                "-m",
                "fedfaas.devstack.faas.instance",
                "--handler-dir",
                str(spec.handler),
                "--app-dir",
                str(app_dir),
                "--fd",
                str(sock.fileno()),
                "--threads",
                str(threads),
                "--parent-pid",
                str(os.getpid()),
                "--secrets-dir",
                str(self.secrets_path(spec.name)),
            ]
            for path in self.copy_paths:
                args += ["--copy", str(path)]
            with open(self.log_path(spec.name), "ab") as log_file:
                process = await asyncio.create_subprocess_exec(
                    self.python,
                    *args,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    env=self.environment(spec, idx),
                    cwd=str(app_dir),
                    pass_fds=(sock.fileno(),),
                    start_new_session=True,
                )
        finally:
            sock.close()
        write_pid_file(self.pid_path(spec.name, idx), process.pid)
        return SpawnedProcess(process=process, port=port)

    def cleanup(self, name: str, idx: int) -> None:
        """Forget a replica that has exited: its pid file and overlay."""
        self.pid_path(name, idx).unlink(missing_ok=True)
        shutil.rmtree(self.app_path(name, idx), ignore_errors=True)


def write_pid_file(path: Path, pid: int) -> None:
    """Write ``pid`` atomically so ``fedfaas down`` never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)
