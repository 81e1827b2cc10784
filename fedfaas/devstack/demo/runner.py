"""``fedfaas demo``: the main FL job end to end on the embedded local stack (JIT 6, FLStore 5).

Starts a private local stack (real Redis, S3, the functions behind the
OpenFaaS-compatible router with scale-to-zero, and the gateway), forks the
party processes, runs the job under JIT, asks FLStore's non-training
workloads about its last round, runs the same job again under
eager-serverless aggregation for the cost comparison, and writes the report.
The stack and the parties are torn down at the end, also on errors, Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from fedfaas.client import AdminClient
from fedfaas.devstack.demo.coordinator import JobDriver, JobRun, Progress
from fedfaas.devstack.demo.fleet import PartyFleet
from fedfaas.devstack.demo.plan import DemoConfig, Federation, plan_federation
from fedfaas.devstack.demo.queries import QueryResult, run_queries
from fedfaas.devstack.demo.report import write_report
from fedfaas.devstack.demo.summary import build_summary, format_summary
from fedfaas.devstack.localstack.procs import StartError
from fedfaas.devstack.localstack.signals import shielded, sigterm_as_interrupt
from fedfaas.devstack.localstack.stack import LocalStack, StackOptions
from fedfaas.models import build_model, evaluate, load_digits_dataset, load_state, state_arrays
from fedfaas.openfaas.client import FaasClient

DEFAULT_DATA_DIR = Path(".fedfaas/devstack/demo")
DEFAULT_REPORT_DIR = Path("reports/demo")
#: A data directory holding this file was created by the demo, which may wipe it.
MARKER = ".fedfaas-demo"
STRATEGY = "jit"
BASELINE = "eager-serverless"


def _fresh_stack_dir(stack: LocalStack) -> None:
    """Stop what a crashed demo left half-running and wipe the demo's own old data."""
    if stack.read_state() is not None:
        stack.down()
    if (stack.data_dir / MARKER).exists():
        shutil.rmtree(stack.data_dir)
    stack.data_dir.mkdir(parents=True, exist_ok=True)
    (stack.data_dir / MARKER).write_text("data of `fedfaas demo`; wiped by the next run\n")


def _refuse_running(stack: LocalStack) -> None:
    """A complete stack in the data folder may belong to a demo running now: leave it alone."""
    alive = stack.running() if stack.read_state() is not None else {}
    if alive and all(alive.values()):
        raise RuntimeError(f"a local stack is running in {stack.data_dir} (another demo?); "
                           f"stop it with `fedfaas down --data-dir {stack.data_dir}`")


def _start_stack(stack: LocalStack, idle_s: float, progress: Progress) -> None:
    """Start the private stack in a fresh folder; one retry, as free ports can be taken meanwhile."""
    options = StackOptions(scale_to_zero_idle_s=idle_s)
    for attempt in (1, 2):
        _fresh_stack_dir(stack)
        try:
            stack.up(options, progress=lambda msg: progress.status(f"local stack: {msg} ..."))
            return
        except StartError as exc:
            if attempt == 2:
                raise
            first_line = str(exc).splitlines()[0][:200]
            progress.line(f"local stack did not start ({first_line}); trying once more")


def _clients(stack: LocalStack) -> tuple[AdminClient, FaasClient]:
    """A tenant admin of a fresh tenant, and the router's client with its basic auth and internal token."""
    env = stack.env()
    secrets = Path(env["FEDFAAS_SECRETS_DIR"])

    def secret(name: str) -> str:
        return (secrets / name).read_text().strip()

    with AdminClient(env["FEDFAAS_GATEWAY_URL"], secret("fedfaas-admin-token")) as root:
        tenant = root.create_tenant(f"demo-{uuid.uuid4().hex[:6]}")
    admin = AdminClient(env["FEDFAAS_GATEWAY_URL"], str(tenant["admin_token"]))
    faas = FaasClient.from_settings(stack.settings())
    return admin, faas


def _last_closed(run: JobRun) -> int | None:
    closed = [r.round for r in run.rounds if r.state == "closed"]
    return closed[-1] if closed else None


def _show_queries(progress: Progress, queries: Mapping[str, QueryResult], malicious: str) -> None:
    for name, q in queries.items():
        if q.error:
            progress.line(f"[queries] {name}: FAILED: {q.error}")
        elif name == "malicious-filter":
            flagged = q.result.get("flagged", [])
            verdict = "found" if malicious in flagged else "MISSED"
            progress.line(f"[queries] {name} on {q.function} ({q.seconds:.1f} s): flagged "
                          f"{', '.join(flagged) or 'nobody'} (planted {malicious}: {verdict})")
        else:
            progress.line(f"[queries] {name} on {q.function} ({q.seconds:.1f} s)")


def run(parties: int | None = None, rounds: int | None = None,
        report_dir: Path = DEFAULT_REPORT_DIR, *, data_dir: Path | None = None,
        compare: bool = True, config: DemoConfig | None = None,
        stream: TextIO | None = None) -> dict[str, Any]:
    """Run the demo and write its report; returns the summary (also in ``summary.json``).

    Parameters
    ----------
    parties, rounds
        Override the configuration's number of parties and JIT rounds.
    report_dir
        Folder for ``index.html``, the PNG plots and ``summary.json``.
    data_dir
        The private local stack's folder (default ``.fedfaas/devstack/demo``).
    compare
        Also run the job under eager-serverless aggregation for the cost comparison.
    config
        Every other knob (see :class:`DemoConfig`).
    stream
        Where progress and the summary are printed (default stdout).
    """
    began = time.monotonic()
    cfg = config or DemoConfig()
    changes: dict[str, Any] = {}
    if parties is not None:
        changes["parties"] = parties
    if rounds is not None:
        changes["rounds"] = rounds
        if cfg.compare_rounds is not None:
            changes["compare_rounds"] = min(cfg.compare_rounds, rounds)
    if not compare:
        changes["compare_rounds"] = 0
    cfg = replace(cfg, **changes)
    progress = Progress(stream)
    digits = load_digits_dataset(cfg.test_fraction, seed=cfg.seed)
    validation = (digits.x_test[:cfg.validation_size], digits.y_test[:cfg.validation_size])
    x_test, y_test = digits.x_test[cfg.validation_size:], digits.y_test[cfg.validation_size:]
    fed = plan_federation(cfg, digits.y_train)
    _announce(progress, fed, len(y_test))
    initial = state_arrays(build_model(cfg.model, seed=cfg.seed))
    scratch = build_model(cfg.model)

    def test_accuracy(tensors: Mapping[str, np.ndarray]) -> tuple[float, float]:
        return evaluate(load_state(scratch, tensors), x_test, y_test)

    stack = LocalStack((data_dir or DEFAULT_DATA_DIR).resolve())
    _refuse_running(stack)
    fleet = PartyFleet(fed)
    runs: list[JobRun] = []
    queries: dict[str, QueryResult] = {}
    timing: dict[str, float] = {}
    with sigterm_as_interrupt():
        try:
            fleet.start()
            mark = time.monotonic()
            _start_stack(stack, cfg.idle_s, progress)
            timing["stack_up_s"] = time.monotonic() - mark
            progress.line(f"local stack up in {timing['stack_up_s']:.1f} s ({stack.data_dir}); "
                          f"functions scale to zero after {cfg.idle_s:g} s idle")
            admin, faas = _clients(stack)
            driver = JobDriver(admin, faas, fleet, fed, test_accuracy, progress)
            runs.append(driver.run(STRATEGY, cfg.rounds, initial, validation))
            timing["jit_run_s"] = runs[-1].wall_s
            last = _last_closed(runs[0])
            if last is not None:
                mark = time.monotonic()
                queries = run_queries(admin, runs[0].job_id, last)
                timing["queries_s"] = time.monotonic() - mark
                _show_queries(progress, queries, fed.malicious_id)
            if cfg.eager_rounds:
                runs.append(driver.run(BASELINE, cfg.eager_rounds, initial, validation))
                timing["eager_run_s"] = runs[-1].wall_s
        finally:
            with shielded():
                mark = time.monotonic()
                progress.line("stopping the parties and the local stack ...")
                fleet.stop()
                stack.down()
                timing["teardown_s"] = time.monotonic() - mark
    timing["total_s"] = time.monotonic() - began
    summary = build_summary(fed, runs, queries, timing, test_size=len(y_test))
    index = write_report(Path(report_dir), summary)
    progress.line(format_summary(summary))
    progress.line(f"report: {index}")
    return summary


def _announce(progress: Progress, fed: Federation, test_size: int) -> None:
    cfg = fed.config
    counts = {role: len(fed.with_role(role)) for role in ("active", "intermittent", "malicious")}
    progress.line(
        f"fedfaas demo: {cfg.model} on scikit-learn digits, FedAvg, {cfg.parties} parties "
        f"({counts['active']} active, {counts['intermittent']} intermittent, "
        f"{counts['malicious']} malicious), Dirichlet alpha {cfg.dirichlet_alpha:g}, "
        f"{cfg.local_epochs} local epochs; test split {test_size} images")
