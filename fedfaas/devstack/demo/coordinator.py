"""The job owner's side of the demo: one FL job from creation to its last round (JIT paper 2.1, 6.2).

The coordinator creates the job (digits MLP, FedAvg, the chosen aggregation
strategy, ``t_wait`` and quorum), uploads the initial model and the
validation set, lets the party processes register, resets the router's
accounting and then opens each round once the previous one closed.  While a
round runs it shows arrivals and the aggregation state; when it closes it
evaluates the new global model on the held-out test split.  At the end it
waits for the ``aggregate`` function to scale to zero, so the accounting
holds every container-second the strategy caused, idle tails included.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from fedfaas import codec
from fedfaas.client import AdminClient
from fedfaas.devstack.demo.fleet import PartyFleet
from fedfaas.devstack.demo.plan import Federation
from fedfaas.errors import FedfaasError, Unavailable
from fedfaas.openfaas.client import FaasClient

AGGREGATE = "aggregate"
REGISTER_TIMEOUT_S = 90.0
#: Past t_wait, how long a round may take to close before the demo gives up.
CLOSE_GRACE_S = 120.0
POLL_S = 0.2

Evaluate = Callable[[Mapping[str, np.ndarray]], tuple[float, float]]


class Progress:
    """Event lines, plus one refreshing status line when the output is a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self._width = 0

    def line(self, text: str) -> None:
        """Print a permanent line (clearing the status line first)."""
        self._clear()
        print(text, file=self.stream, flush=True)

    def status(self, text: str) -> None:
        """Replace the status line (terminals only; logs get the event lines)."""
        if self.tty:
            self._clear()
            self.stream.write(text)
            self.stream.flush()
            self._width = len(text)

    def _clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0


@dataclass
class RoundResult:
    """What one round did, as the gateway and the parties reported it."""

    round: int
    state: str
    arrived: int
    expected: int
    included: int
    accuracy: float | None
    loss: float | None
    aggregation_latency_s: float | None
    #: From the instant the round could close (last expected update, else t_wait) to its model.
    close_latency_s: float | None
    duration_s: float | None
    reason: str = ""
    skipped: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)


@dataclass
class JobRun:
    """One job run under one aggregation strategy."""

    strategy: str
    job_id: str
    rounds: list[RoundResult]
    initial_accuracy: float
    aggregate: dict[str, Any]
    all_functions: dict[str, Any]
    arrivals: list[dict[str, Any]]
    reported_profiles: dict[str, dict[str, Any]]
    wall_s: float
    errors: list[str]
    #: The JIT estimator's predicted against observed times per round (``/estimates``).
    estimates: list[dict[str, Any]] = field(default_factory=list)


def wait_scaled_to_zero(faas: FaasClient, function: str, timeout_s: float) -> bool:
    """Wait until ``function`` has no replica left; False when it still had one at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        view = faas.accounting()["functions"].get(function, {})
        # A stopping replica still counts container-seconds until it has exited.
        if not any(view.get(k) for k in ("live_instances", "stopping_instances", "in_flight")):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)


class JobDriver:
    """Runs jobs of the demo's federation through the gateway, one strategy at a time."""

    def __init__(self, admin: AdminClient, faas: FaasClient, fleet: PartyFleet,
                 federation: Federation, evaluate: Evaluate, progress: Progress) -> None:
        self.admin = admin
        self.faas = faas
        self.fleet = fleet
        self.fed = federation
        self.evaluate = evaluate
        self.progress = progress
        self._events: list[dict[str, Any]] = []

    # --- job set-up --------------------------------------------------------------------
    def create_job(self, strategy: str, rounds: int, initial: Mapping[str, np.ndarray],
                   validation: tuple[np.ndarray, np.ndarray]) -> tuple[str, str]:
        """Create the job, upload model and validation set; returns job id and enrollment token."""
        cfg = self.fed.config
        body = codec.encode(dict(initial), {"round": 0})
        job = self.admin.create_job({
            "job_id": f"digits-{strategy}-{uuid.uuid4().hex[:6]}",
            "name": f"digits MLP, FedAvg, {strategy}",
            "model": {"name": cfg.model, "size_bytes": len(body)},
            "algorithm": {"name": "fedavg"},
            "sync": {"unit": "epoch", "every": cfg.local_epochs},
            "t_wait_s": self.fed.t_wait_s, "quorum": self.fed.quorum, "rounds": rounds,
            "strategy": {"name": strategy},
            "hyperparameters": {"lr": cfg.lr, "local_epochs": cfg.local_epochs,
                                "batch_size": cfg.batch_size},
        })
        job_id = str(job["job_id"])
        self.admin.put_initial_model(job_id, dict(initial))
        x_val, y_val = validation
        self.admin.http.json("PUT", f"/v1/jobs/{job_id}/validation",
                             data=codec.encode({"x_val": x_val, "y_val": y_val}, {"job": job_id}),
                             headers={"Content-Type": "application/octet-stream"})
        return job_id, str(job["enrollment_token"])

    def _pump(self, run: str, timeout_s: float) -> list[dict[str, Any]]:
        """Collect party events of ``run``; errors are shown at once."""
        events = [e for e in self.fleet.events(timeout_s) if e.get("run") in (run, None)]
        for event in events:
            if event["ev"] == "error":
                where = f" round {event['round']}" if event.get("round") else ""
                self.progress.line(f"  ! {event['party']}{where}: {event.get('message')}")
        self._events += events
        return events

    def _await_all(self, run: str, kind: str, timeout_s: float) -> set[str]:
        wanted = {p.party_id for p in self.fed.parties}
        seen = {e["party"] for e in self._events if e["run"] == run and e["ev"] == kind}
        deadline = time.monotonic() + timeout_s
        while seen < wanted and time.monotonic() < deadline:
            if set(self.fleet.dead()) & (wanted - seen):
                raise Unavailable(f"party processes died: {sorted(self.fleet.dead())}")
            seen |= {e["party"] for e in self._pump(run, POLL_S) if e["ev"] == kind}
        return seen

    # --- the job -----------------------------------------------------------------------
    def run(self, strategy: str, rounds: int, initial: Mapping[str, np.ndarray],
            validation: tuple[np.ndarray, np.ndarray]) -> JobRun:
        """Run a whole job under ``strategy`` and return its per-round results and cost."""
        began = time.monotonic()
        job_id, token = self.create_job(strategy, rounds, initial, validation)
        self.progress.line(f"[{strategy}] job {job_id}: {len(self.fed.parties)} parties, "
                           f"{rounds} rounds, t_wait {self.fed.t_wait_s:g} s, "
                           f"quorum {self.fed.quorum}")
        self.fleet.send({"cmd": "join", "run": strategy, "gateway": self.admin.base_url,
                         "job_id": job_id, "enrollment_token": token,
                         "t_wait_s": self.fed.t_wait_s})
        registered = self._await_all(strategy, "registered", REGISTER_TIMEOUT_S)
        if len(registered) < len(self.fed.parties):
            raise Unavailable(f"only {len(registered)} of {len(self.fed.parties)} parties "
                              f"registered within {REGISTER_TIMEOUT_S:g} s")
        idle_s = self.fed.config.idle_s
        wait_scaled_to_zero(self.faas, AGGREGATE, 4 * idle_s + 10)
        self.faas.reset_accounting()
        initial_acc = self.evaluate(initial)[0]
        self.progress.line(f"[{strategy}] initial model: accuracy {initial_acc:6.1%}")
        results = [self.play_round(strategy, job_id, r, rounds) for r in range(1, rounds + 1)]
        self._await_all(strategy, "finished", 30.0)
        self.progress.status(f"[{strategy}] waiting for '{AGGREGATE}' to scale to zero ...")
        zero = wait_scaled_to_zero(self.faas, AGGREGATE, 4 * idle_s + 10)
        accounting = self.faas.accounting()
        self.progress.line(f"[{strategy}] done in {time.monotonic() - began:.0f} s"
                           + ("" if zero else f" ('{AGGREGATE}' still had a live replica)"))
        mine = [e for e in self._events if e["run"] == strategy]
        estimates, problem = self.fetch_estimates(job_id)
        return JobRun(
            strategy=strategy, job_id=job_id, rounds=results, initial_accuracy=initial_acc,
            aggregate=dict(accounting["functions"].get(AGGREGATE, {})),
            all_functions=dict(accounting.get("total", {})),
            arrivals=[e for e in mine if e["ev"] == "pushed"],
            reported_profiles=self.admin.list_parties(job_id),
            wall_s=time.monotonic() - began,
            errors=[f"{e['party']}: {e.get('message')}" for e in mine if e["ev"] == "error"]
            + ([f"estimates: {problem}"] if problem else []),
            estimates=estimates,
        )

    def fetch_estimates(self, job_id: str) -> tuple[list[dict[str, Any]], str]:
        """The JIT estimator's per-round report, or an empty list and why there is none."""
        try:
            body = self.admin.http.request("GET", f"/v1/jobs/{job_id}/estimates").json()
        except (FedfaasError, ValueError) as exc:
            return [], str(exc)
        rows = body.get("rounds") if isinstance(body, dict) else body
        if not isinstance(rows, list):
            return [], f"expected round reports, got {type(body).__name__}"
        # Per-party rows stay in the gateway; the report shows the per-round figures.
        return [{k: v for k, v in row.items() if k != "parties"}
                for row in rows if isinstance(row, dict)], ""

    def play_round(self, strategy: str, job_id: str, rnd: int, rounds: int) -> RoundResult:
        """Open round ``rnd``, follow it until it closed, evaluate the new global model."""
        tag = f"[{strategy}] round {rnd:2d}/{rounds}"
        opened = self.admin.start_round(job_id)
        deadline = time.monotonic() + self.fed.t_wait_s + CLOSE_GRACE_S
        status = opened
        while status.get("state") not in ("closed", "failed"):
            if time.monotonic() > deadline:
                raise FedfaasError(f"{tag} did not close {CLOSE_GRACE_S:g} s after t_wait "
                                   f"(state {status.get('state')!r})", code="demo_stuck")
            self._pump(strategy, POLL_S)
            status = self.admin.round_status(job_id, rnd)
            elapsed = time.time() - float(status["started_at"])
            self.progress.status(f"{tag}  {status.get('arrived', 0):2d}/{status['expected']} "
                                 f"updates  {status['state']:<11s} {elapsed:5.1f} s "
                                 f"of t_wait {self.fed.t_wait_s:g} s")
        self._pump(strategy, 0.0)
        mine = [e for e in self._events if e["run"] == strategy and e.get("round") == rnd]
        skipped = sorted(e["party"] for e in mine if e["ev"] == "skipped")
        late = sorted(e["party"] for e in mine if e["ev"] == "late")
        result = self._result(rnd, status, skipped, late)
        if result.state == "closed":
            tensors = self.admin.fetch_model(job_id, rnd).tensors
            result.accuracy, result.loss = self.evaluate(tensors)
            self.progress.line(
                f"{tag}  {result.included:2d}/{result.expected} updates  closed in "
                f"{result.duration_s:4.1f} s  aggregation latency "
                f"{result.aggregation_latency_s or 0:5.2f} s  accuracy {result.accuracy:6.1%}"
                + (f"  (skipped: {', '.join(skipped)})" if skipped else ""))
        else:
            self.progress.line(f"{tag}  FAILED: {result.reason}")
        return result

    @staticmethod
    def _result(rnd: int, status: Mapping[str, Any], skipped: list[str],
                late: list[str]) -> RoundResult:
        closed_at = status.get("closed_at")
        started_at = float(status["started_at"])
        arrived, expected = int(status.get("arrived", 0)), int(status["expected"])
        last = status.get("last_arrival_at")
        close_latency = None
        if closed_at is not None and last is not None:
            could_close = float(last) if arrived >= expected else float(status["deadline_at"])
            close_latency = max(0.0, float(closed_at) - max(could_close, float(last)))
        latency = status.get("aggregation_latency_s")
        return RoundResult(
            round=rnd, state=str(status["state"]), arrived=arrived, expected=expected,
            included=len(status.get("parties_included") or []), accuracy=None, loss=None,
            aggregation_latency_s=None if latency is None else float(latency),
            close_latency_s=close_latency,
            duration_s=None if closed_at is None else float(closed_at) - started_at,
            reason=str(status.get("reason") or ""), skipped=skipped, late=late)
