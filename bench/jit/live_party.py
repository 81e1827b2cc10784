"""Party processes of the live JIT benchmark (JIT paper 6.3): real training, real updates over HTTP.

Each party is its own process (``python -m bench.jit.live_party``) using the
party SDK: it registers with its profile, and every round downloads the
global model, trains one real epoch of a small torch MLP on its share of the
digits set, pushes the update and reports what it measured.  Heterogeneity
is emulated, as the paper's simulation does (6.3): an *active* party's epoch
lasts its own ``t_train_s`` (the real training step, then a sleep for the
rest), jittered 3% per round (periodicity, paper 4.1), and it reports that
epoch time so the estimator knows it; an *intermittent* party sends its
update at a uniformly random time within ``t_wait``.  Delays are seeded per
(party, round), so every strategy sees the same job.

The controller (:class:`PartyProcess`) talks to a party with one JSON object
per line: ``{"cmd": "job", ...}`` (register), ``{"cmd": "round", "round": r}``
(train and push now), ``{"cmd": "quit"}``; the party answers each with one
event line (``registered``, ``pushed`` or ``error``).
"""

from __future__ import annotations

import json
import math
import queue
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import IO, Any

import numpy as np
import torch

from fedfaas.client import Party
from fedfaas.client.payload import encode_update
from fedfaas.errors import BadRequest, Unavailable
from fedfaas.models import build_model, train_local

ROUND_JITTER = 0.03
"""Lognormal sigma of an active party's per-round epoch time (as the simulator's scenarios)."""
INTERMITTENT_WINDOW = 0.9
"""Intermittent updates are sent within this fraction of ``t_wait`` (the rest is upload margin)."""
MODEL = "digits-mlp"
MODEL_KWARGS: dict[str, Any] = {"hidden": [256]}
BATCH_SIZE = 32


@dataclass(frozen=True)
class PartyPlan:
    """One party of the live job: identity, participation mode and emulated speed.

    Parameters
    ----------
    party_id
        DNS-label id.
    mode
        ``active`` or ``intermittent``.
    t_train_s
        An active party's epoch time; unused for intermittent ones.
    t_wait_s
        The job's ``t_wait``.
    seed
        Seeds the party's per-round delays and its training order.
    cpus
        Hardware reported in the profile.
    """

    party_id: str
    mode: str
    t_train_s: float
    t_wait_s: float
    seed: int
    cpus: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in ("active", "intermittent"):
            raise BadRequest(f"party {self.party_id}: mode must be 'active' or 'intermittent'")
        if not (self.t_train_s > 0 and self.t_wait_s > 0):
            raise BadRequest(f"party {self.party_id}: t_train_s and t_wait_s must be > 0")

    def delay_s(self, rnd: int) -> float:
        """Active: this round's epoch time; intermittent: when to send, after the round opens."""
        rng = np.random.default_rng([self.seed, rnd])
        if self.mode == "active":
            return float(self.t_train_s * rng.lognormal(0.0, ROUND_JITTER))
        return float(rng.uniform(0.0, INTERMITTENT_WINDOW * self.t_wait_s))

    def profile(self, dataset_size: int) -> dict[str, Any]:
        """The profile sent at registration (:class:`fedfaas.spec.PartyProfile` fields)."""
        out: dict[str, Any] = {"mode": self.mode, "dataset_size": dataset_size,
                               "batch_size": BATCH_SIZE, "hardware": {"cpus": self.cpus}}
        if self.mode == "active":
            out["epoch_time_s"] = self.t_train_s
        return out


# --- the party process ---------------------------------------------------------------------


class _Job:
    """A party's state within one job."""

    def __init__(self, cmd: dict[str, Any]) -> None:
        self.plan = PartyPlan(**cmd["plan"])
        self.x = np.asarray(cmd["x"], dtype=np.float32)
        self.y = np.asarray(cmd["y"], dtype=np.int64)
        self.model = build_model(MODEL, seed=0, **MODEL_KWARGS)
        self.party = Party.register(cmd["base_url"], cmd["job_id"], cmd["enrollment_token"],
                                    party_id=self.plan.party_id,
                                    profile=self.plan.profile(len(self.y)), timeout=30.0)

    def round(self, rnd: int) -> dict[str, Any]:
        """Fetch the global model, train (for the plan's time), push; returns the push record."""
        opened = time.time()
        delay = self.plan.delay_s(rnd)
        self.party.load_model(self.model, rnd - 1)
        steps = max(1, math.ceil(len(self.y) / BATCH_SIZE))
        with self.party.measure_training(epochs=1, minibatches=steps):
            began = time.monotonic()
            train_local(self.model, self.x, self.y, epochs=1, seed=self.plan.seed + rnd,
                        batch_size=BATCH_SIZE)
            if self.plan.mode == "active":
                time.sleep(max(0.0, delay - (time.monotonic() - began)))  # slower hardware
        if self.plan.mode == "intermittent":
            time.sleep(max(0.0, opened + delay - time.time()))
        record = self.party.push(rnd, self.model.state_dict(), num_examples=len(self.y))
        return {"event": "pushed", "round": rnd, "arrived_at": record["arrived_at"],
                "opened_at": opened, "delay_s": delay}


def _emit(out: IO[str], event: dict[str, Any]) -> None:
    out.write(json.dumps(event) + "\n")
    out.flush()


def _warm_up() -> None:
    """Run everything once, so that round 1 does not pay torch's first-use cost."""
    torch.set_num_threads(1)
    model = build_model(MODEL, seed=0, **MODEL_KWARGS)
    rng = np.random.default_rng(0)
    train_local(model, rng.random((BATCH_SIZE, 64), dtype=np.float32),
                rng.integers(0, 10, BATCH_SIZE), epochs=1, batch_size=BATCH_SIZE)
    encode_update(model.state_dict(), {})


def main() -> int:
    """Warm up, say ``ready``, then serve controller commands until ``quit`` or end of input."""
    _warm_up()
    _emit(sys.stdout, {"event": "ready"})
    job: _Job | None = None
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "quit":
                break
            if cmd["cmd"] == "job":
                if job is not None:
                    job.party.close()
                job = _Job(cmd)
                _emit(sys.stdout, {"event": "registered", "party_id": job.plan.party_id})
            elif cmd["cmd"] == "round" and job is not None:
                _emit(sys.stdout, job.round(int(cmd["round"])))
            else:
                _emit(sys.stdout, {"event": "error", "message": f"unexpected command {cmd!r}"})
        except Exception as exc:  # reported to the controller, which decides
            _emit(sys.stdout, {"event": "error", "message": f"{type(exc).__name__}: {exc}"})
    if job is not None:
        job.party.close()
    return 0


# --- the controller's handle -----------------------------------------------------------------


class PartyProcess:
    """A running party process: send commands, wait for its answers (always with a timeout)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.jit.live_party"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="live-party-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._events.put(json.loads(line))
        self._events.put({"event": "exited", "message": f"party process exited ({self.proc.poll()})"})

    def send(self, cmd: dict[str, Any]) -> None:
        """Send one command."""
        if self.proc.stdin is None or self.proc.poll() is not None:
            raise Unavailable("the party process is not running")
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def join(self, base_url: str, job_id: str, enrollment_token: str, plan: PartyPlan,
             x: np.ndarray, y: np.ndarray) -> None:
        """Ask the party to register with a job (answer: :meth:`expect` ``registered``)."""
        self.send({"cmd": "job", "base_url": base_url, "job_id": job_id,
                   "enrollment_token": enrollment_token, "plan": asdict(plan),
                   "x": np.round(x, 4).tolist(), "y": y.tolist()})

    def expect(self, event: str, timeout_s: float) -> dict[str, Any]:
        """The party's next answer, which must be ``event``."""
        try:
            got = self._events.get(timeout=timeout_s)
        except queue.Empty:
            raise Unavailable(f"no {event!r} from the party within {timeout_s:g} s") from None
        if got.get("event") != event:
            raise Unavailable(f"party answered {got} instead of {event!r}")
        return got

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the party to quit; kill it if it does not."""
        try:
            self.send({"cmd": "quit"})
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout_s)
        except (Unavailable, OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout_s)


if __name__ == "__main__":
    sys.exit(main())
