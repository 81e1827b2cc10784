"""The embedded local stack: real Redis, real S3, the function router and the gateway.

``fedfaas up`` starts, on loopback with free (or configured) ports and one data
directory, everything a cluster would run: Redis, SeaweedFS's S3, the local
OpenFaaS-compatible router with every function of ``stack.yml``, and the
fedfaas gateway.  The ports, pids and client environment are written to
``<data_dir>/stack.json`` so that ``fedfaas status``/``down`` and other
processes (tests, benchmarks, parties) can find and stop it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from fedfaas.config import Settings
from fedfaas.devstack.localstack import frontend, services
from fedfaas.devstack.localstack.frontend import FrontendLimits
from fedfaas.devstack.localstack.procs import Service, StartError, free_port, pid_alive, port_open, stop_pid
from fedfaas.devstack.network import NetworkLab, check_privileges, load_topology

PROJECT_ROOT = Path(__file__).resolve().parents[3]
ALL_COMPONENTS = ("redis", "s3", "router", "gateway")
STATE_FILE = "stack.json"
COMPONENT_ADDRESS_VARS = {"redis": "FEDFAAS_REDIS_URL", "s3": "FEDFAAS_S3_ENDPOINT",
                          "router": "FEDFAAS_FAAS_GATEWAY_URL", "gateway": "FEDFAAS_GATEWAY_URL"}
"""The variable that carries each component's address."""
# SeaweedFS needs more than 8 s to stop on SIGTERM; past this it is killed.
GRACE_S = {"s3": 3.0, "redis": 5.0, "router": 8.0, "gateway": 8.0, "frontend": 3.0}
FRONTEND = "frontend"
TOPOLOGY_COMPONENT = {"redis": "redis", "s3": "s3", "router": "functions", "gateway": "gateway"}
"""The host a topology places each component on (the router runs the functions)."""
"""The gateway's nginx (fedfaas.devstack.localstack.frontend): listens on the gateway's public port,
recorded as its own process; ``down`` stops it with the gateway, a gateway ``restart`` keeps it."""


def default_data_dir() -> Path:
    """``$FEDFAAS_HOME`` or ``./.fedfaas``."""
    return Path(os.environ.get("FEDFAAS_HOME", ".fedfaas")).resolve()


@dataclass
class StackOptions:
    """What to start and how."""

    stack_file: Path = PROJECT_ROOT / "stack.yml"
    components: tuple[str, ...] = ALL_COMPONENTS
    ports: dict[str, int] = field(default_factory=dict)
    scale_to_zero_idle_s: float | None = None
    gateway_workers: int = 2
    gateway_threads: int = 16
    extra_env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 60.0
    frontend: FrontendLimits = field(default_factory=FrontendLimits)
    topology: str = "loopback"
    """A shipped topology's name or a topology file (:mod:`fedfaas.devstack.network`):
    each component then runs on its own host, behind shaped links."""


class LocalStack:
    """Start, inspect and stop the local stack rooted at ``data_dir``."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.data_dir = (data_dir or default_data_dir()).resolve()
        self.state_path = self.data_dir / STATE_FILE

    # --- state -----------------------------------------------------------------------
    def read_state(self) -> dict[str, Any] | None:
        """The saved state of a running stack, or None."""
        try:
            data: dict[str, Any] = json.loads(self.state_path.read_text())
            return data
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _write_state(self, state: dict[str, Any]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)

    def env(self) -> dict[str, str]:
        """``FEDFAAS_*`` variables that point a client process at this stack.

        A component the stack did not start (``up --only``) gets no address here,
        unless one was given for it (``StackOptions.extra_env``).
        """
        state = self.read_state()
        if state is None:
            raise RuntimeError(f"no local stack running in {self.data_dir} (run `fedfaas up`)")
        env = dict(state["env"])
        started = set(state.get("components", ALL_COMPONENTS))
        for name, var in COMPONENT_ADDRESS_VARS.items():
            port = state.get("ports", {}).get(name)
            if name not in started and f":{port}" in env.get(var, ""):
                del env[var]
        return env

    def settings(self) -> Settings:
        """:class:`Settings` for this stack (for in-process clients such as tests)."""
        saved = dict(os.environ)
        try:
            os.environ.update(self.env())
            from fedfaas.config import load_settings

            return load_settings()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    # --- secrets ---------------------------------------------------------------------
    def _ensure_secrets(self) -> Path:
        folder = self.data_dir / "secrets"
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        wanted = {
            "fedfaas-admin-token": lambda: secrets.token_urlsafe(32),
            # The gateway's proof to the functions that a call comes from it.
            "fedfaas-internal-token": lambda: secrets.token_urlsafe(32),
            "s3-access-key": lambda: "fedfaas",
            "s3-secret-key": lambda: secrets.token_urlsafe(24),
            "basic-auth-user": lambda: "admin",
            "basic-auth-password": lambda: secrets.token_urlsafe(16),
        }
        for name, make in wanted.items():
            path = folder / name
            if not path.exists():
                path.write_text(make())
                path.chmod(0o600)
        return folder

    # --- lifecycle -------------------------------------------------------------------
    def up(self, options: StackOptions | None = None, progress: Any = None) -> dict[str, Any]:
        """Start the components that are not running yet; returns the saved state."""
        opts = options or StackOptions()
        say = progress or (lambda msg: None)
        if self.read_state() is not None and self.running():
            raise RuntimeError(f"a local stack is already running in {self.data_dir}")
        started = time.monotonic()
        secrets_dir = self._ensure_secrets()
        hosts = self._place(opts.topology, say)
        ports = {name: opts.ports.get(name) or free_port() for name in ALL_COMPONENTS}
        s3_ports = {
            "s3": ports["s3"],
            **{k: free_port() for k in ("master", "volume", "filer")},
        }
        for k in ("master", "volume", "filer", "s3"):
            s3_ports[f"{k}_grpc"] = free_port()
        addr = {name: hosts[name]["address"] if name in hosts else "127.0.0.1" for name in ALL_COMPONENTS}
        env = {
            "FEDFAAS_HOME": str(self.data_dir),
            "FEDFAAS_REDIS_URL": f"redis://{addr['redis']}:{ports['redis']}/0",
            "FEDFAAS_S3_ENDPOINT": f"{addr['s3']}:{ports['s3']}",
            "FEDFAAS_S3_BUCKET": "fedfaas",
            "FEDFAAS_SECRETS_DIR": str(secrets_dir),
            "FEDFAAS_FAAS_GATEWAY_URL": f"http://{addr['router']}:{ports['router']}",
            "FEDFAAS_GATEWAY_URL": f"http://{addr['gateway']}:{ports['gateway']}",
            **opts.extra_env,
        }
        state: dict[str, Any] = {
            "data_dir": str(self.data_dir),
            "topology": opts.topology,
            "hosts": hosts,
            "ports": ports,
            "s3_ports": s3_ports,
            "pids": {},
            "env": env,
            "components": list(opts.components),
        }
        state["options"] = {
            "stack_file": str(opts.stack_file),
            "scale_to_zero_idle_s": opts.scale_to_zero_idle_s,
            "gateway_workers": opts.gateway_workers,
            "gateway_threads": opts.gateway_threads,
            "ready_timeout_s": opts.ready_timeout_s,
            "frontend": asdict(opts.frontend),
        }
        self._write_state(state)
        try:
            for name in ALL_COMPONENTS:
                if name in opts.components:
                    say(f"starting {name}" + (f" on host {hosts[name]['host']} ({hosts[name]['address']})"
                                              if name in hosts else ""))
                    self._start_component(name, state)
        except (StartError, OSError):
            self.down()
            raise
        state["startup_s"] = round(time.monotonic() - started, 2)
        self._write_state(state)
        return state

    # --- network -----------------------------------------------------------------------
    @property
    def network(self) -> NetworkLab:
        """The stack's test network (its state lives in the data directory)."""
        return NetworkLab(self.data_dir / "network")

    def _place(self, topology: str, say: Any) -> dict[str, dict[str, str]]:
        """Create the topology's hosts; returns component -> {host, address} (empty: loopback)."""
        model = load_topology(topology)
        self.network.teardown()  # whatever a crashed stack of this directory left
        if model.is_loopback:
            return {}
        check_privileges()
        say(f"creating the {model.name} network")
        self.network.create(model)
        hosts = {}
        for name in ALL_COMPONENTS:
            host = model.host_for(TOPOLOGY_COMPONENT[name])
            if host is None:
                self.network.teardown()
                raise StartError(f"topology {model.name!r} puts no host in charge of {name}")
            hosts[name] = {"host": host, "address": self.network.address(host)}
        return hosts

    def _on_host(self, name: str, state: dict[str, Any], argv: list[str]) -> list[str]:
        """``argv`` run on the component's host (unchanged on loopback)."""
        host = state.get("hosts", {}).get(name)
        return argv if host is None else self.network.exec_argv(host["host"], argv)

    def partition(self, a: str, b: str) -> None:
        """Cut every packet between two hosts (or a component's host and another)."""
        self.network.partition(self._host_name(a), self._host_name(b))

    def heal(self, a: str, b: str) -> bool:
        """Undo :meth:`partition`; False if the two were not partitioned."""
        return self.network.heal(self._host_name(a), self._host_name(b))

    def set_link_rate(self, a: str, b: str, rate_bps: int | None) -> None:
        """Degrade (or, with None, restore) the rate between two hosts."""
        self.network.set_rate(self._host_name(a), self._host_name(b), rate_bps)

    def _host_name(self, name: str) -> str:
        hosts = (self.read_state() or {}).get("hosts", {})
        return str(hosts[name]["host"]) if name in hosts else name

    def _ensure_bucket(self) -> None:
        from fedfaas.store import ObjectStore

        store = ObjectStore(self.settings())
        deadline = time.monotonic() + 30
        while True:
            try:
                store.ensure_bucket()
                return
            except Exception:
                # The S3 port answers before the filer can create buckets.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def running(self) -> dict[str, bool]:
        """Liveness of each recorded component."""
        state = self.read_state() or {}
        return {name: pid_alive(pid) for name, pid in state.get("pids", {}).items()}

    def status(self) -> dict[str, Any]:
        """Ports, pids and liveness of every component."""
        state = self.read_state()
        if state is None:
            return {"running": False, "data_dir": str(self.data_dir)}
        alive = self.running()
        return {
            "running": bool(alive) and all(alive.values()),
            "data_dir": str(self.data_dir),
            "components": {
                name: {"pid": pid, "alive": alive.get(name, False),
                       "port": state["ports"].get("gateway" if name == FRONTEND else name)}
                for name, pid in state.get("pids", {}).items()
            },
            "env": state.get("env", {}),
            "topology": state.get("topology", "loopback"),
            "network": self.network.status() if state.get("hosts") else None,
        }

    def down(self, components: Iterable[str] | None = None) -> list[str]:
        """Stop components (all by default) in reverse start order; returns those stopped."""
        state = self.read_state()
        if state is None:
            return []
        wanted = list(components) if components is not None else list(ALL_COMPONENTS)
        stopped = []
        for name in reversed(ALL_COMPONENTS):
            pid = state.get("pids", {}).get(name)
            if name in wanted and pid and stop_pid(int(pid), GRACE_S.get(name, 5.0)):
                stopped.append(name)
            if name in wanted:
                state.get("pids", {}).pop(name, None)
            if name == "gateway" and name in wanted:
                front = state.get("pids", {}).pop(FRONTEND, None)
                if front:
                    stop_pid(int(front), GRACE_S[FRONTEND])
        if "router" in wanted:
            self._kill_function_leftovers()
        if not state.get("pids"):
            self.network.teardown()
            with contextlib.suppress(FileNotFoundError):
                self.state_path.unlink()
        else:
            self._write_state(state)
        return stopped

    def _kill_function_leftovers(self) -> None:
        """Kill function instances whose pids the router recorded, should it have died first."""
        faas_dir = self.data_dir / "faas"
        for pidfile in faas_dir.glob("**/*.pid"):
            with contextlib.suppress(ValueError, OSError):
                stop_pid(int(pidfile.read_text().strip()), 2.0)
                pidfile.unlink()

    def restart(self, name: str) -> None:
        """Stop one component and start it again on its old port (fault tests use this)."""
        state = self.read_state()
        if state is None:
            raise RuntimeError(f"no local stack running in {self.data_dir}")
        pid = state["pids"].pop(name, None)
        if pid:
            stop_pid(int(pid), GRACE_S.get(name, 5.0))
        self._start_component(name, state)

    def _start_component(self, name: str, state: dict[str, Any]) -> None:
        opts = state["options"]
        ports = state["ports"]
        env = state["env"]
        secrets_dir = Path(env["FEDFAAS_SECRETS_DIR"])
        child_env = {**os.environ, **env, "PYTHONPATH": str(PROJECT_ROOT)}
        logs = self.data_dir / "logs"
        timeout = float(opts["ready_timeout_s"])
        addr = state.get("hosts", {}).get(name, {}).get("address", "127.0.0.1")
        if name == "redis":
            svc = Service("redis", self._on_host(name, state, services.redis_argv(
                ports["redis"], self.data_dir / "redis", host=addr)), logs / "redis.log")
            check = lambda: services.redis_ready(ports["redis"], addr)
        elif name == "s3":
            identities = self.data_dir / "s3-identities.json"
            services.write_s3_identities(
                identities,
                (secrets_dir / "s3-access-key").read_text().strip(),
                (secrets_dir / "s3-secret-key").read_text().strip(),
            )
            svc = Service("s3", self._on_host(name, state, services.weed_argv(
                state["s3_ports"], self.data_dir / "s3", identities, host=addr)), logs / "s3.log")
            check = lambda: services.s3_ready(ports["s3"], addr)
        elif name == "router":
            if opts.get("scale_to_zero_idle_s") is not None:
                child_env["FEDFAAS_SCALE_ZERO_DURATION"] = f"{float(opts['scale_to_zero_idle_s']):g}s"
            argv = [
                sys.executable, "-m", "fedfaas.devstack.faas.router",
                "--stack", opts["stack_file"],
                "--port", str(ports["router"]),
                "--host", addr,
                "--state-dir", str(self.data_dir / "faas"),
                "--secrets-dir", str(secrets_dir),
            ]
            if opts.get("scale_to_zero_idle_s") is not None:
                argv += ["--scale-zero", "--idle-s", str(opts["scale_to_zero_idle_s"])]
            svc = Service("router", self._on_host(name, state, argv), logs / "router.log", env=child_env,
                          cwd=Path(opts["stack_file"]).parent)
            url = env["FEDFAAS_FAAS_GATEWAY_URL"] + "/healthz"
            check = lambda: services.http_ready(url)
        elif name == "gateway":
            limits = FrontendLimits(**opts.get("frontend", {}))
            if limits.max_body_bytes is None:  # nginx refuses exactly what the gateway would
                limits = replace(limits, max_body_bytes=int(
                    env.get("FEDFAAS_MAX_BODY_BYTES", Settings.max_body_bytes)))
            if "gateway_upstream" not in state:
                state["gateway_upstream"] = frontend.upstream_address(self.data_dir, free_port())
            self._ensure_frontend(state, limits, timeout)
            header_total = limits.header_buffers * limits.header_buffer_bytes
            argv = [
                sys.executable, "-m", "gunicorn",
                "--worker-class", "gthread",
                "--workers", str(opts["gateway_workers"]),
                "--threads", str(opts["gateway_threads"]),
                "--bind", state["gateway_upstream"],
                "--timeout", "300",
                "--graceful-timeout", "5",
                "--no-control-socket",
                # A second line behind nginx, never tighter than nginx's own limits (so no
                # request nginx lets through meets gunicorn's HTML error page): the longest
                # line gunicorn accepts, and as many header lines as nginx's buffers can hold.
                "--limit-request-line", "8190",
                "--limit-request-field_size", str(2 * limits.header_buffer_bytes),
                "--limit-request-fields", str(min(32768, header_total // 4 + 16)),
                "--logger-class", "gateway.logs.GunicornLogger",
                "gateway.wsgi:app",
            ]
            svc = Service("gateway", self._on_host(name, state, argv), logs / "gateway.log", env=child_env,
                          cwd=PROJECT_ROOT)
            url = env["FEDFAAS_GATEWAY_URL"] + "/healthz"
            check = lambda: services.http_ready(url)
        else:
            raise ValueError(f"unknown component {name!r}; known: {', '.join(ALL_COMPONENTS)}")
        state["pids"][name] = svc.start()
        self._write_state(state)
        svc.wait_ready(check, timeout)
        if name == "s3":
            self._ensure_bucket()

    def _ensure_frontend(self, state: dict[str, Any], limits: FrontendLimits, timeout: float) -> None:
        """Start the gateway's nginx on the public port unless it already runs."""
        pid = state["pids"].get(FRONTEND)
        if pid and pid_alive(int(pid)):
            return
        port = int(state["ports"]["gateway"])
        run_dir = self.data_dir / "run"
        try:
            argv = frontend.nginx_argv(run_dir / "nginx.conf", run_dir)
        except frontend.FrontendMissing as exc:
            raise StartError(str(exc)) from None
        addr = state.get("hosts", {}).get("gateway", {}).get("address", "127.0.0.1")
        conf = frontend.write_config(run_dir, f"{addr}:{port}", state["gateway_upstream"], limits)
        svc = Service(FRONTEND, self._on_host("gateway", state, argv),
                      self.data_dir / "logs" / "frontend.log", cwd=conf.parent)
        state["pids"][FRONTEND] = svc.start()
        self._write_state(state)
        svc.wait_ready(lambda: port_open(port, addr), timeout)
