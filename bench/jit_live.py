"""Benchmark ``jit-live``: the five aggregation strategies of the JIT paper (3, 6) on the live stack.

The same FL job runs once per strategy on a fresh-enough local stack (real
Redis, S3, gateway with its JIT scheduler, the ``aggregate`` function behind
the OpenFaaS-compatible router), one job at a time.  Parties are processes
(:mod:`bench.jit.live_party`) that download the global model, train a real
epoch of a small MLP and push real updates over HTTP: active parties with
heterogeneous epoch times (emulated, and reported in their profiles so the
estimator knows them) and intermittent parties that send at a random time
within ``t_wait``.  Each strategy's cost is the ``aggregate`` function's
container-seconds from the router's accounting (alive time of every instance,
cold starts and keep-alive included), reset before each job and read once the
function has scaled back to zero; its latency is the mean per round of the
time from the last update to the published model.

The platform: ``aggregate`` scales to zero after ``KEEP_ALIVE_S`` idle seconds
(a bench-specific ``stack.yml`` with a short ``com.openfaas.scale.zero-duration``,
which wins over the router's ``--idle-s``), so that serverless strategies pay
for what they use; the always-on baseline is kept warm by the gateway's pings.
Each live job is also replayed in the simulator (:mod:`bench.jit.simulator`)
with the measured arrivals, cold start and keep-alive, on the live platform
(``keep-alive``) and on the paper's modelled one, to show where they differ
(``docs/jit.md``, "Live vs simulated").
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from bench.jit.cost import PRICE_PER_CONTAINER_S, CostModel
from bench.jit.live_party import MODEL, MODEL_KWARGS, PartyPlan, PartyProcess
from bench.jit.scenarios import batch_size_for
from bench.jit.simulator import ExplicitWorkload, SimConfig, SimResult, simulate
from fedfaas import layout
from fedfaas.client import AdminClient
from fedfaas.client.retry import Poll
from fedfaas.client.rounds import wait_round_closed
from fedfaas.devstack.localstack.stack import PROJECT_ROOT, LocalStack, StackOptions
from fedfaas.errors import Unavailable
from fedfaas.jit.spec import PartyTiming
from fedfaas.models import build_model, iid_split, load_digits_dataset, state_arrays
from fedfaas.openfaas.client import FaasClient

STRATEGIES = ("jit", "eager-serverless", "batched-serverless", "lazy", "eager-always-on")
FUNCTION = "aggregate"
KEEP_ALIVE_S = 3.0
"""``com.openfaas.scale.zero-duration`` of ``aggregate`` in the bench stack."""
DRIVER_DELTA_S = 0.25
"""The scheduler's delta: well below the parties' spread, cheap enough on two cores."""
ALWAYS_ON_PING_S = 1.0
"""Pings of the always-on aggregator, well inside ``KEEP_ALIVE_S``."""
AGG_OVERHEAD_S = 1.5
"""The learner's prior for cold start plus state load of ``aggregate`` on the local router."""
DEFAULT_BANDWIDTH_BPS = 100e6
"""What the gateway assumes for a party that has not measured its bandwidth yet."""
_CLOSE_POLL = Poll(initial_s=0.05, max_s=0.1, factor=1.5)


@dataclass(frozen=True)
class Workload:
    """The FL job every strategy runs: parties, rounds and timings."""

    n_active: int
    n_intermittent: int
    rounds: int
    t_wait_s: float
    t_train_s: tuple[float, float]
    seed: int = 0

    @property
    def n_parties(self) -> int:
        """Active plus intermittent parties."""
        return self.n_active + self.n_intermittent

    @property
    def batch_size(self) -> int:
        """Batched serverless' ``k``: the paper's rule, as in ``jit-sim``."""
        return batch_size_for(self.n_parties)

    def plans(self) -> list[PartyPlan]:
        """Active parties with epoch times spread evenly over ``t_train_s``, then intermittent ones."""
        lo, hi = self.t_train_s
        times = np.linspace(lo, hi, self.n_active) if self.n_active > 1 else np.array([hi])
        plans = [PartyPlan(f"a{i}", "active", float(t), self.t_wait_s, seed=1000 * self.seed + i,
                           cpus=2.0 if t < (lo + hi) / 2 else 1.0)
                 for i, t in enumerate(times)]
        plans += [PartyPlan(f"i{i}", "intermittent", hi, self.t_wait_s,
                            seed=1000 * self.seed + 500 + i)
                  for i in range(self.n_intermittent)]
        return plans


QUICK = Workload(n_active=4, n_intermittent=2, rounds=2, t_wait_s=12.0, t_train_s=(2.0, 8.0))
FULL = Workload(n_active=14, n_intermittent=6, rounds=5, t_wait_s=24.0, t_train_s=(3.0, 18.0))


@dataclass(frozen=True)
class PlatformProbe:
    """What the local platform does with ``aggregate``, measured on it."""

    cold_start_s: float
    """Spawn to ready of an instance started by a call to the function scaled to zero."""
    keep_alive_s: float
    """The rest of that instance's accounted alive time: the (tiny) call, then up to its exit
    (the zero-duration, the router's autoscaler ticks and demand buckets, the stop)."""


@dataclass
class LiveRun:
    """One job run live under one strategy."""

    strategy: str
    offsets: np.ndarray
    """``offsets[r, i]``: seconds from round ``r``'s start to party ``i``'s update arriving."""
    rounds: list[dict[str, Any]]
    accounting: dict[str, Any]
    total: dict[str, Any]
    wall_s: float
    startups_s: list[float]
    """Spawn-to-ready time of every ``aggregate`` instance started during the job."""

    @property
    def container_s(self) -> float:
        """Container-seconds of ``aggregate``."""
        return float(self.accounting["container_seconds"])

    @property
    def latency_s(self) -> float:
        """Mean per-round time from the last update to the published model."""
        return float(np.mean([r["aggregation_latency_s"] for r in self.rounds]))

    @property
    def open_delay_s(self) -> float:
        """Mean time from a round's model being published to the next round opening."""
        gaps = [b["started_at"] - a["closed_at"]
                for a, b in zip(self.rounds[:-1], self.rounds[1:], strict=True)]
        return float(np.mean(gaps)) if gaps else 0.0

    def cold_start_s(self, probe: PlatformProbe) -> float:
        """This job's mean cold start (the machine's load changes it), else the probe's."""
        return float(np.mean(self.startups_s)) if self.startups_s else probe.cold_start_s

    def step_s(self) -> float:
        """Mean busy time of one warm ``aggregate`` call (cold-start waits taken out)."""
        acct = self.accounting
        calls = max(1, int(acct["invocations"]))
        busy = float(acct["busy_seconds"]) - sum(self.startups_s)
        return max(0.005, busy / calls)


@dataclass(frozen=True)
class _Clients:
    base_url: str
    admin: AdminClient
    faas: FaasClient


class LiveRig:
    """The local stack with a bench ``stack.yml``, the party processes and the job runner.

    Use as a context manager: entering starts the parties and the stack, leaving stops them.
    """

    def __init__(self, workload: Workload, folder: Path, topology: str = "loopback",
                 keep_alive_s: float = KEEP_ALIVE_S, log: Callable[[str], None] = print) -> None:
        self.workload = workload
        self.topology = topology
        self.folder = folder
        self.keep_alive_s = keep_alive_s
        self.log = log
        self.stack = LocalStack(folder / "stack")
        self.parties: list[PartyProcess] = []
        self._clients: _Clients | None = None
        digits = load_digits_dataset()
        shards = iid_split(len(digits.y_train), workload.n_parties, seed=workload.seed)
        self.data = [(digits.x_train[s], digits.y_train[s]) for s in shards]
        self.initial = state_arrays(build_model(MODEL, seed=0, **MODEL_KWARGS))
        self.model_bytes = int(sum(a.nbytes for a in self.initial.values()))

    def __enter__(self) -> LiveRig:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        try:
            # Party processes import torch and warm up while the stack starts.
            self.parties = [PartyProcess(env) for _ in range(self.workload.n_parties)]
            self.stack.up(StackOptions(
                stack_file=self._write_stack(), scale_to_zero_idle_s=self.keep_alive_s,
                extra_env={"FEDFAAS_FLSTORE": "0", "FEDFAAS_DRIVER_DELTA_S": str(DRIVER_DELTA_S),
                           "FEDFAAS_ALWAYS_ON_PING_S": str(ALWAYS_ON_PING_S),
                           "FEDFAAS_AGG_OVERHEAD_S": str(AGG_OVERHEAD_S)}, topology=self.topology))
            env_stack = self.stack.env()
            secrets = Path(env_stack["FEDFAAS_SECRETS_DIR"])
            base_url = env_stack["FEDFAAS_GATEWAY_URL"]
            self._clients = _Clients(
                base_url,
                AdminClient(base_url, (secrets / "fedfaas-admin-token").read_text().strip()),
                FaasClient.from_settings(self.stack.settings(), timeout=30))
            for party in self.parties:
                party.expect("ready", 300.0)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop the parties and the stack."""
        for party in self.parties:
            party.stop()
        self.parties = []
        if self._clients is not None:
            self._clients.admin.close()
            self._clients.faas.close()
            self._clients = None
        self.stack.down()

    @property
    def clients(self) -> _Clients:
        """Gateway URL, admin and router clients of the running rig."""
        if self._clients is None:
            raise Unavailable("the rig is not running (use it as a context manager)")
        return self._clients

    def _write_stack(self) -> Path:
        stack = layout.generate()
        agg = stack["functions"][FUNCTION]
        agg["handler"] = str(PROJECT_ROOT / "functions" / FUNCTION)
        agg["labels"]["com.openfaas.scale.zero-duration"] = f"{self.keep_alive_s:g}s"
        stack["functions"] = {FUNCTION: agg}
        # Local instances import the installed packages; faas-cli's copy paths must lie
        # under the stack file's folder, which this temporary one is not.
        stack["configuration"]["copy"] = []
        path = self.folder / "stack.yml"
        path.write_text(layout.render(stack))
        return path

    # --- the platform --------------------------------------------------------------------
    def wait_scaled_to_zero(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until no ``aggregate`` instance is alive (nor stopping); returns the accounting."""
        deadline = time.monotonic() + timeout_s
        while True:
            acct = self.clients.faas.accounting()
            fn = acct["functions"][FUNCTION]
            if fn["live_instances"] == 0 and fn["stopping_instances"] == 0:
                return acct
            if time.monotonic() > deadline:
                raise Unavailable(f"{FUNCTION} still has instances after {timeout_s:g} s")
            time.sleep(0.05)

    def probe(self, reps: int = 3) -> PlatformProbe:
        """Cold start and effective keep-alive of ``aggregate`` (means of ``reps`` lone calls)."""
        colds, keeps = [], []
        for _ in range(reps):
            self.wait_scaled_to_zero()
            self.clients.faas.reset_accounting()
            began = time.time()
            self.clients.faas.invoke(FUNCTION, b"", method="GET")
            cold = sum(self._startups(began, time.time()))
            acct = self.wait_scaled_to_zero()["functions"][FUNCTION]
            colds.append(cold)
            keeps.append(float(acct["container_seconds"]) - cold)
        return PlatformProbe(float(np.mean(colds)), float(np.mean(keeps)))

    # --- one job -------------------------------------------------------------------------
    def run_job(self, strategy: str) -> LiveRun:
        """Run the workload once under ``strategy``; returns what was measured."""
        wl, plans = self.workload, self.workload.plans()
        job = self.clients.admin.create_job({
            "job_id": f"jl-{strategy}-{uuid.uuid4().hex[:6]}",
            "model": {"name": MODEL, "size_bytes": self.model_bytes},
            "t_wait_s": wl.t_wait_s, "quorum": wl.n_parties, "rounds": wl.rounds,
            "strategy": {"name": strategy, "batch_size": wl.batch_size, "n_agg": 1}})
        job_id = job["job_id"]
        self.clients.admin.put_initial_model(job_id, self.initial)
        for party, plan, (x, y) in zip(self.parties, plans, self.data, strict=True):
            party.join(self.clients.base_url, job_id, job["enrollment_token"], plan, x, y)
        for party in self.parties:
            party.expect("registered", 120.0)
        self.wait_scaled_to_zero()
        self.clients.faas.reset_accounting()
        began, began_wall = time.monotonic(), time.time()
        offsets = np.zeros((wl.rounds, wl.n_parties))
        rounds = []
        for r in range(1, wl.rounds + 1):
            started = self.clients.admin.start_round(job_id)
            for party in self.parties:
                party.send({"cmd": "round", "round": r})
            for i, party in enumerate(self.parties):
                pushed = party.expect("pushed", wl.t_wait_s + 60.0)
                offsets[r - 1, i] = pushed["arrived_at"] - started["started_at"]
            status = wait_round_closed(self.clients.admin.http, job_id, r, 120.0, _CLOSE_POLL)
            rounds.append(status)
            self.log(f"  {strategy:<19} round {r}/{wl.rounds}: last update "
                     f"{offsets[r - 1].max():5.2f} s after start, model "
                     f"{status['aggregation_latency_s']:5.2f} s later")
        acct = self.wait_scaled_to_zero(timeout_s=self.keep_alive_s + 60.0)
        return LiveRun(strategy, offsets, rounds, acct["functions"][FUNCTION], acct["total"],
                       time.monotonic() - began, self._startups(began_wall, time.time()))

    def _startups(self, since: float, until: float) -> list[float]:
        """Spawn-to-ready seconds of ``aggregate`` instances that became ready in the window,
        from the router's JSON-lines event log (its accounting has no per-instance figure)."""
        out = []
        with open(self.stack.data_dir / "logs" / "router.log") as log:
            for line in log:
                if '"instance ready"' not in line:
                    continue
                entry = json.loads(line)
                if entry.get("function") == FUNCTION and since <= entry["ts"] <= until:
                    out.append(float(entry["startup_s"]))
        return out

    # --- the same job in the simulator ---------------------------------------------------
    def replay(self, run: LiveRun, probe: PlatformProbe, platform: str = "keep-alive") -> SimResult:
        """Simulate ``run``'s job and strategy with its measured arrivals and platform."""
        m = self.model_bytes
        profiles = tuple(
            PartyTiming.from_api({**p.profile(len(y)), "bandwidth_down_bps": DEFAULT_BANDWIDTH_BPS,
                                   "bandwidth_up_bps": DEFAULT_BANDWIDTH_BPS}, party_id=p.party_id)
            for p, (_, y) in zip(self.workload.plans(), self.data, strict=True))
        workload = ExplicitWorkload(profiles, run.offsets, m,
                                    t_wait=self.workload.t_wait_s,
                                    batch_size=self.workload.batch_size,
                                    open_delay_s=run.open_delay_s)
        # A warm step is latency-bound (S3 round trips), not bandwidth-bound: b_dc is set
        # so that loading and checkpointing the state take the measured step time.
        cost = CostModel(cold_start_s=run.cold_start_s(probe), keep_alive_s=probe.keep_alive_s,
                         b_dc=2 * m / run.step_s())
        return simulate(SimConfig.replay(workload, run.strategy, cost=cost, platform=platform))


def _by_strategy(values: dict[str, float], digits: int = 3) -> dict[str, float]:
    return {s: round(v, digits) for s, v in values.items()}


def run(quick: bool = False, topology: str = "loopback") -> dict[str, Any]:
    """Run every strategy on the same live job; returns container-seconds, latency and cost.

    ``topology`` names the network the local stack runs on (``fedfaas up --topology``).
    """
    wl = QUICK if quick else FULL
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fedfaas-bench-jit-live-") as tmp, \
            LiveRig(wl, Path(tmp), topology) as rig:
        print(f"stack up; {wl.n_parties} parties ({wl.n_active} active, {wl.n_intermittent} "
              f"intermittent), {wl.rounds} rounds, t_wait {wl.t_wait_s:g} s", flush=True)
        probe = rig.probe()
        print(f"aggregate: cold start {probe.cold_start_s:.2f} s, keep-alive "
              f"{probe.keep_alive_s:.2f} s", flush=True)
        runs = {s: rig.run_job(s) for s in STRATEGIES}
        sims = {platform: {s: rig.replay(runs[s], probe, platform) for s in STRATEGIES}
                for platform in ("keep-alive", "modelled")}
    live = {s: r.container_s for s, r in runs.items()}
    jit = live["jit"]
    print(f"{'strategy':<20}{'container-s':>12}{'sim keep-alive':>16}{'sim modelled':>14}"
          f"{'latency s':>11}{'calls':>7}{'colds':>7}")
    for s, r in runs.items():
        print(f"{s:<20}{r.container_s:12.2f}{sims['keep-alive'][s].container_s:16.2f}"
              f"{sims['modelled'][s].container_s:14.2f}{r.latency_s:11.2f}"
              f"{r.accounting['invocations']:7d}{r.accounting['cold_starts']:7d}")
    return {
        "bench": "jit-live",
        "parties": wl.n_parties,
        "active_parties": wl.n_active,
        "intermittent_parties": wl.n_intermittent,
        "rounds": wl.rounds,
        "t_wait_s": wl.t_wait_s,
        "container_s": _by_strategy(live),
        "container_s_all_functions": _by_strategy(
            {s: float(r.total["container_seconds"]) for s, r in runs.items()}),
        "latency_s": _by_strategy({s: r.latency_s for s, r in runs.items()}),
        "projected_cost_usd": _by_strategy(
            {s: v * PRICE_PER_CONTAINER_S for s, v in live.items()}, 6),
        "price_per_container_s": PRICE_PER_CONTAINER_S,
        "jit_saving_vs": _by_strategy(
            {s: 1.0 - jit / v for s, v in live.items() if s != "jit" and v > 0}),
        "invocations": {s: int(r.accounting["invocations"]) for s, r in runs.items()},
        "cold_starts": {s: int(r.accounting["cold_starts"]) for s, r in runs.items()},
        "platform": {"zero_duration_s": KEEP_ALIVE_S, "cold_start_s": round(probe.cold_start_s, 3),
                     "keep_alive_s": round(probe.keep_alive_s, 3),
                     "driver_delta_s": DRIVER_DELTA_S},
        "simulated_container_s": {p: _by_strategy({s: r.container_s for s, r in by.items()})
                                  for p, by in sims.items()},
        "sim_keep_alive_vs_live": _by_strategy(
            {s: sims["keep-alive"][s].container_s / v for s, v in live.items() if v > 0}),
        "jit_rounds": [
            {"t_rnd_est_s": r["estimate"]["t_rnd_s"], "t_rnd_obs_s": round(float(obs.max()), 3),
             "t_agg_est_s": r["estimate"]["t_agg_s"],
             "jit_start_s": round(r["estimate"]["jit_start_at"] - r["started_at"], 3),
             "latency_s": round(r["aggregation_latency_s"], 3)}
            for r, obs in zip(runs["jit"].rounds, runs["jit"].offsets, strict=True)],
        "wall_s": round(time.monotonic() - started, 1),
    }
