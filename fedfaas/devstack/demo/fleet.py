"""The demo's parties as separate OS processes, and the pipes the coordinator talks to them on.

Processes start with multiprocessing's *forkserver* method: a clean,
single-threaded server process imports torch, the SDK and the digits loader
once and forks every party from there.  Each party is still an independent
process with its own interpreter state (no threads or locks are inherited,
unlike plain ``fork``), but 20+ parties share torch's ~150 MB of imported
code copy-on-write instead of each importing it (``spawn``: ~230 MB and
~2.5 CPU-seconds per party on a two-core machine).

Commands and events cross the pipes as JSON text (``send_bytes``), never as
pickles.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import time
from dataclasses import asdict
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from fedfaas.devstack.demo.plan import Federation

#: Imported once in the fork server.  Building torch's SGD the first time imports
#: torch._dynamo (~800 modules); sklearn.datasets is what load_digits needs.
PRELOAD = ("fedfaas.devstack.demo.party", "torch._dynamo", "sklearn.datasets")
STOP_GRACE_S = 3.0


class PartyFleet:
    """Starts, commands and stops one process per planned party.

    Parameters
    ----------
    federation
        The planned parties and the configuration they run with.
    """

    def __init__(self, federation: Federation) -> None:
        self.federation = federation
        self.processes: dict[str, BaseProcess] = {}
        self.conns: dict[str, Connection] = {}

    def start(self) -> None:
        """Start every party process (they load their data and wait for a job)."""
        # Each party trains with one thread; the stack and the other parties need the cores.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(list(PRELOAD))
        from fedfaas.devstack.demo.party import party_main

        config = asdict(self.federation.config)
        for plan in self.federation.parties:
            parent, child = ctx.Pipe(duplex=True)
            spec = json.dumps({"plan": asdict(plan), "config": config})
            proc = ctx.Process(target=party_main, args=(spec, child), name=plan.party_id,
                               daemon=True)
            proc.start()
            child.close()
            self.processes[plan.party_id] = proc
            self.conns[plan.party_id] = parent

    def send(self, command: dict[str, Any]) -> None:
        """Send ``command`` to every party that is still alive."""
        body = json.dumps(command).encode()
        for party_id, conn in self.conns.items():
            if self.processes[party_id].is_alive():
                # A party that died just now shows up in dead().
                with contextlib.suppress(OSError):
                    conn.send_bytes(body)

    def events(self, timeout_s: float) -> list[dict[str, Any]]:
        """Events that arrived within ``timeout_s`` (empty when none did)."""
        out: list[dict[str, Any]] = []
        ready = wait(list(self.conns.values()), timeout=timeout_s)
        for conn in ready:
            if not isinstance(conn, Connection):
                continue  # wait() only hands back what it was given: our connections
            while True:
                try:
                    if not conn.poll():
                        break
                    out.append(json.loads(conn.recv_bytes()))
                except (EOFError, OSError):
                    self._forget(conn)
                    break
        return out

    def _forget(self, conn: Connection) -> None:
        for party_id, known in list(self.conns.items()):
            if known is conn:
                del self.conns[party_id]
                conn.close()

    def dead(self) -> dict[str, int | None]:
        """Exit codes of party processes that are no longer running."""
        return {pid: p.exitcode for pid, p in self.processes.items() if not p.is_alive()}

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask every party to stop; terminate, then kill, those that do not exit in time."""
        self.send({"cmd": "stop"})
        deadline = time.monotonic() + grace_s
        for proc in self.processes.values():
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.processes.values():
            if proc.is_alive():
                proc.terminate()
        for proc in self.processes.values():
            proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()
