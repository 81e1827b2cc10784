"""One FL party of the demo, run in its own process (JIT paper 5.2 and 6.1; FLStore 5.1).

The process loads its Dirichlet share of the digits set, then waits for jobs
from the demo's coordinator.  For each job it registers with the enrollment
token (SDK :class:`fedfaas.client.Party`), and every round it downloads the
global model, trains the torch MLP on its data at the pace of its emulated
device, and uploads the update; the SDK reports the measured epoch time and
bandwidth to the gateway, which JIT's estimator uses.  Intermittent parties
come online at a random time within ``t_wait`` and sometimes skip a round;
the malicious party uploads a sign-flipped, scaled update.

Messages with the coordinator are JSON text over a pipe (no pickled data):
commands ``join``/``stop`` in, events (``pushed``, ``skipped``, ...) out.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch

from fedfaas.client import BandwidthMeter, JobFinished, Party, Poll, RoundFailed
from fedfaas.client.rounds import wait_round_open
from fedfaas.devstack.demo.plan import (
    INTERMITTENT,
    MALICIOUS,
    DemoConfig,
    PartyPlan,
    arrival_window_s,
)
from fedfaas.errors import Conflict, FedfaasError
from fedfaas.models import build_model, load_digits_dataset, state_arrays, train_local

#: The digits MLP's update is ~27 KB, below the SDK's default bandwidth sample floor (64 KB).
BANDWIDTH_SAMPLE_BYTES = 4096
#: Parties poll round state at most twice a second: 20+ of them share two cores with the stack.
POLL = Poll(initial_s=0.05, max_s=0.5, factor=1.5)
JOB_TIMEOUT_S = 900.0

#: ``emit(kind, run=None, rnd=None, **fields)`` sends one event to the coordinator.
Emit = Callable[..., None]


def sign_flip_attack(base: Mapping[str, np.ndarray], trained: Mapping[str, np.ndarray],
                     scale: float) -> dict[str, np.ndarray]:
    """A model whose update is the honest one flipped and scaled: ``base - scale * (trained - base)``."""
    if set(base) != set(trained):
        raise ValueError("base and trained models must hold the same tensors")
    return {k: (base[k] - scale * (trained[k] - base[k])).astype(trained[k].dtype) for k in trained}


class DemoParty:
    """A party's behaviour across the jobs the coordinator sends it.

    Parameters
    ----------
    plan
        Role, data indices, emulated device and seed.
    config
        The demo configuration (model, hyperparameter defaults, emulated speed).
    x, y
        The party's local training data.
    emit
        Sends one event to the coordinator.
    """

    def __init__(self, plan: PartyPlan, config: DemoConfig, x: np.ndarray, y: np.ndarray,
                 emit: Emit) -> None:
        self.plan = plan
        self.config = config
        self.x = x
        self.y = y
        self.emit = emit

    def take_part(self, job: Mapping[str, Any]) -> None:
        """Register in ``job`` and play every round until the job has run all its rounds."""
        run = str(job["run"])
        plan, cfg = self.plan, self.config
        # What a party knows before its first round (JIT paper 5.2): its device's epoch
        # time and its link speed; the SDK reports measured values after every push.
        party = Party.register(
            job["gateway"], job["job_id"], job["enrollment_token"], party_id=plan.party_id,
            profile={"mode": INTERMITTENT if plan.role == INTERMITTENT else "active",
                     "dataset_size": plan.num_examples, "batch_size": cfg.batch_size,
                     "epoch_time_s": plan.train_time_s(1, cfg.examples_per_s),
                     "minibatch_time_s": plan.train_time_s(1, cfg.examples_per_s)
                     / math.ceil(plan.num_examples / cfg.batch_size),
                     "bandwidth_down_bps": cfg.nominal_link_bps,
                     "bandwidth_up_bps": cfg.nominal_link_bps})
        party.up = BandwidthMeter(min_bytes=BANDWIDTH_SAMPLE_BYTES)
        party.down = BandwidthMeter(min_bytes=BANDWIDTH_SAMPLE_BYTES)
        self.emit("registered", run)
        with party:
            hp = party.job()["spec"]["hyperparameters"]
            model = build_model(cfg.model)
            after = 0
            while True:
                try:
                    rnd = wait_round_open(party.http, party.job_id, after, JOB_TIMEOUT_S, POLL)
                except JobFinished:
                    break
                try:
                    started_at = float(party.round_status(rnd)["started_at"])
                    self.play_round(party, model, rnd, started_at, float(job["t_wait_s"]), hp, run)
                    party.wait_round_closed(rnd, JOB_TIMEOUT_S)
                except RoundFailed:
                    self.emit("round_failed", run, rnd)
                except FedfaasError as exc:
                    self.emit("error", run, rnd, message=str(exc))
                after = rnd
        self.emit("finished", run)

    def play_round(self, party: Party, model: torch.nn.Module, rnd: int, started_at: float,
                   t_wait_s: float, hp: Mapping[str, Any], run: str) -> None:
        """One round: (come online,) fetch the global model, train, upload."""
        plan, cfg = self.plan, self.config
        # Seeded by party and round only: the JIT run and the eager re-run see the same choices.
        rng = np.random.default_rng([plan.seed, rnd])
        epochs = int(hp.get("local_epochs", cfg.local_epochs))
        emulated_s = plan.train_time_s(epochs, cfg.examples_per_s)
        if plan.role == INTERMITTENT:
            if rng.random() < plan.skip_probability:
                self.emit("skipped", run, rnd)
                return
            window = arrival_window_s(t_wait_s, emulated_s)
            online_at = started_at + float(rng.uniform(0.0, window))
            time.sleep(max(0.0, online_at - time.time()))
        base_round = party.load_model(model)
        base = state_arrays(model)
        batch = int(hp.get("batch_size", cfg.batch_size))
        with party.measure_training(epochs=epochs,
                                    minibatches=epochs * math.ceil(plan.num_examples / batch)):
            began = time.perf_counter()
            train_local(model, self.x, self.y, epochs=epochs, lr=float(hp.get("lr", cfg.lr)),
                        seed=plan.seed * 1000 + rnd, batch_size=batch)
            # Emulated slower hardware: the device needs emulated_s for this much work.
            time.sleep(max(0.0, emulated_s - (time.perf_counter() - began)))
        update = state_arrays(model)
        if plan.role == MALICIOUS:
            update = sign_flip_attack(base, update, cfg.attack_scale)
        try:
            party.push(rnd, update, num_examples=plan.num_examples,
                       meta={"base_round": base_round})
        except Conflict as exc:
            self.emit("late", run, rnd, message=exc.code)
            return
        timer = party.last_training
        self.emit("pushed", run, rnd, train_s=timer.elapsed_s if timer else None,
                  offset_s=time.time() - started_at, base_round=base_round)


def _emitter(conn: Connection, party_id: str) -> Emit:
    def emit(kind: str, run: str | None = None, rnd: int | None = None, **fields: Any) -> None:
        event = {"ev": kind, "party": party_id, "run": run, "round": rnd, "at": time.time(),
                 **fields}
        conn.send_bytes(json.dumps(event).encode())
    return emit


def party_main(spec: str, conn: Connection) -> None:
    """Process entry point: ``spec`` is JSON ``{"plan": ..., "config": ...}``; commands come on ``conn``."""
    torch.set_num_threads(1)
    data = json.loads(spec)
    plan = PartyPlan.from_json(json.dumps(data["plan"]))
    config = DemoConfig(**data["config"])
    emit = _emitter(conn, plan.party_id)
    try:
        digits = load_digits_dataset(config.test_fraction, seed=config.seed)
        idx = np.asarray(plan.indices, dtype=np.int64)
        party = DemoParty(plan, config, digits.x_train[idx], digits.y_train[idx], emit)
        emit("ready")
        while True:
            command = json.loads(conn.recv_bytes())
            if command.get("cmd") == "stop":
                break
            if command.get("cmd") == "join":
                party.take_part(command)
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass  # the coordinator stopped or went away: nothing left to report
    except Exception as exc:  # report, then die: the coordinator shows it
        with contextlib.suppress(OSError):
            emit("error", message=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        conn.close()
