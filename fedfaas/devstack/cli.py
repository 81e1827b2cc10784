"""The ``fedfaas`` command line: run the local stack, inject faults, run benchmarks and the demo."""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from fedfaas.devstack.localstack.signals import sigterm_as_interrupt
from fedfaas.devstack.localstack.stack import ALL_COMPONENTS, LocalStack, StackOptions, default_data_dir
from fedfaas.devstack.network import parse_rate, shipped_topologies
from fedfaas.errors import FedfaasError

BENCHMARKS = {
    "ingest": "bench.ingest",
    "fusion": "bench.fusion",
    "jit-sim": "bench.jit_sim",
    "jit-live": "bench.jit_live",
    "flstore-trace": "bench.flstore_trace",
    "flstore-latency": "bench.flstore_latency",
    "load": "bench.load",
    "reliability": "bench.reliability",
    "tcomm": "bench.tcomm",
}


def _stack(data_dir: str | None) -> LocalStack:
    return LocalStack(Path(data_dir) if data_dir else default_data_dir())


data_dir_option = click.option(
    "--data-dir", envvar="FEDFAAS_HOME", default=None,
    help="Folder for the stack's data, logs and state (default ./.fedfaas or $FEDFAAS_HOME).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """fedfaas: JIT federated-learning aggregation and FLStore on OpenFaaS."""


@main.command()
@data_dir_option
@click.option("--stack", "stack_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="stack.yml to deploy (default: the project's).")
@click.option("--only", multiple=True, type=click.Choice(ALL_COMPONENTS),
              help="Start only these components (repeatable).")
@click.option("--port", "ports", multiple=True, metavar="NAME=PORT",
              help="Fixed port for a component, e.g. --port gateway=8000 (default: free ports).")
@click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Scale idle function instances to zero after this many seconds.")
@click.option("--topology", default="loopback", show_default=True, metavar="NAME|FILE",
              help="Run each component on its own host behind shaped links: a shipped topology "
                   f"({', '.join(shipped_topologies())}) or a topology file (docs/network.md).")
def up(data_dir: str | None, stack_file: str | None, only: tuple[str, ...], ports: tuple[str, ...],
       idle_timeout: float | None, topology: str) -> None:
    """Start Redis, S3, the functions of stack.yml and the gateway (on loopback, or a topology)."""
    fixed: dict[str, int] = {}
    for item in ports:
        name, _, value = item.partition("=")
        if name not in ALL_COMPONENTS or not value.isdigit():
            raise click.BadParameter(f"{item!r}: expected NAME=PORT with NAME in {ALL_COMPONENTS}")
        fixed[name] = int(value)
    opts = StackOptions(components=only or ALL_COMPONENTS, ports=fixed, scale_to_zero_idle_s=idle_timeout,
                        topology=topology)
    if stack_file:
        opts.stack_file = Path(stack_file).resolve()
    stack = _stack(data_dir)
    started = time.monotonic()
    try:
        state = stack.up(opts, progress=lambda msg: click.echo(f"  {msg} ...", err=True))
    except (RuntimeError, FedfaasError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"fedfaas is up in {time.monotonic() - started:.1f}s (data in {stack.data_dir})")
    for name, port in state["ports"].items():
        if name in state["pids"]:
            addr = state.get("hosts", {}).get(name, {}).get("address", "127.0.0.1")
            click.echo(f"  {name:8s} {addr}:{port}  pid {state['pids'][name]}")
    click.echo(f"  admin token: {stack.data_dir / 'secrets' / 'fedfaas-admin-token'}")
    click.echo("Point clients at it with:  eval \"$(fedfaas env)\"")


@main.command()
@data_dir_option
def down(data_dir: str | None) -> None:
    """Stop everything `fedfaas up` started (SIGTERM, grace period, then SIGKILL)."""
    stopped = _stack(data_dir).down()
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@main.command()
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def status(data_dir: str | None, as_json: bool) -> None:
    """Show which components run, on which ports."""
    info = _stack(data_dir).status()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    if not info.get("components"):
        click.echo(f"no local stack in {info['data_dir']}")
        sys.exit(1)
    for name, comp in info["components"].items():
        click.echo(f"{name:8s} {'up  ' if comp['alive'] else 'DOWN'} port {comp['port']} pid {comp['pid']}")
    network = info.get("network")
    if network:
        click.echo(f"topology {info['topology']} (limits: {network.get('limits_apply', '')})")
        for host, about in network.get("hosts", {}).items():
            link = about.get("link", {})
            runs = ", ".join(about.get("runs", []))
            click.echo(f"  host {host:10s} {about.get('address', '')}  runs {runs}"
                       f"  up {link.get('up')}  down {link.get('down')}")
        for rule in network.get("partitions", []):
            click.echo(f"  partitioned: {rule}")
        for rule in network.get("degraded", []):
            click.echo(f"  degraded: {rule}")
    sys.exit(0 if info["running"] else 1)


@main.command()
@data_dir_option
@click.argument("a")
@click.argument("b")
def partition(data_dir: str | None, a: str, b: str) -> None:
    """Cut the network between hosts (or components) A and B of a running stack."""
    _network_call(lambda: _stack(data_dir).partition(a, b))
    click.echo(f"partitioned {a} | {b}")


@main.command()
@data_dir_option
@click.argument("a")
@click.argument("b")
def heal(data_dir: str | None, a: str, b: str) -> None:
    """Undo `fedfaas partition A B`."""
    healed = _network_call(lambda: _stack(data_dir).heal(a, b))
    click.echo(f"healed {a} | {b}" if healed else f"{a} and {b} were not partitioned")


@main.command()
@data_dir_option
@click.argument("a")
@click.argument("b")
@click.option("--rate", default=None, metavar="RATE",
              help="Bits per second, e.g. 20mbit or 5000000; leave out to restore the topology's rate.")
def link(data_dir: str | None, a: str, b: str, rate: str | None) -> None:
    """Degrade (or restore) the link rate between hosts A and B of a running stack."""
    bps = None if rate is None else parse_rate(rate, "--rate")
    _network_call(lambda: _stack(data_dir).set_link_rate(a, b, bps))
    click.echo(f"{a} <-> {b}: " + ("the topology's rate" if bps is None else f"{bps} bit/s"))


def _network_call(action: Any) -> Any:
    try:
        return action()
    except FedfaasError as exc:
        raise click.ClickException(exc.message) from None


@main.command()
@data_dir_option
def env(data_dir: str | None) -> None:
    """Print `export FEDFAAS_...=...` lines that point clients at the local stack."""
    try:
        values = _stack(data_dir).env()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    for key, value in values.items():
        click.echo(f"export {key}={value}")


@main.command()
@data_dir_option
@click.argument("function")
@click.option("--instance", type=int, default=None, help="Index of the instance (default: a random one).")
def kill(data_dir: str | None, function: str, instance: int | None) -> None:
    """Kill one instance of FUNCTION, as a cloud provider reclaiming it would."""
    stack = _stack(data_dir)
    try:
        env_vars = stack.env()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    from fedfaas.errors import FedfaasError
    from fedfaas.openfaas.client import FaasClient

    secrets = Path(env_vars["FEDFAAS_SECRETS_DIR"])
    auth = ((secrets / "basic-auth-user").read_text().strip(),
            (secrets / "basic-auth-password").read_text().strip())
    with FaasClient(env_vars["FEDFAAS_FAAS_GATEWAY_URL"], auth, timeout=10) as client:
        try:
            click.echo(json.dumps(client.kill(function, instance)))
        except FedfaasError as exc:
            raise click.ClickException(exc.message) from None


@main.group()
def stack() -> None:
    """Generate stack.yml layouts."""


@stack.command("generate")
@click.option("--cache-functions", type=click.IntRange(min=2), default=4, show_default=True,
              help="Number of FLStore cache functions (cache-0 .. cache-N-1).")
@click.option("--budget-bytes", type=click.IntRange(min=1), default=1024**3, show_default=True,
              help="Memory budget of each cache function.")
@click.option("--out", type=click.Path(dir_okay=False), default="-", help="File to write (default stdout).")
def stack_generate(cache_functions: int, budget_bytes: int, out: str) -> None:
    """Write a stack.yml; the default layout fits OpenFaaS Community Edition (15 functions)."""
    from fedfaas.layout import CE_MAX_FUNCTIONS, generate, render

    layout = generate(cache_functions, budget_bytes)
    text = render(layout)
    if len(layout["functions"]) > CE_MAX_FUNCTIONS:
        click.echo(f"note: {len(layout['functions'])} functions exceed Community Edition's "
                   f"{CE_MAX_FUNCTIONS}; this layout needs OpenFaaS Pro", err=True)
    if out == "-":
        click.echo(text, nl=False)
    else:
        Path(out).write_text(text)


@main.command()
@click.argument("name", type=click.Choice(sorted(BENCHMARKS)))
@click.option("--quick", is_flag=True, help="A short run (under a minute or so).")
@click.option("--topology", default="loopback", show_default=True, metavar="NAME|FILE",
              help="The network the benchmark's local stack runs on (see `fedfaas up --topology`).")
def bench(name: str, quick: bool, topology: str) -> None:
    """Run benchmark NAME; its last output line is one JSON object with its figures and baseline's."""
    try:
        module = importlib.import_module(BENCHMARKS[name])
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"benchmark {name!r} is not available: {exc}") from None
    on_stack = "topology" in inspect.signature(module.run).parameters
    if not on_stack and topology != "loopback":
        raise click.ClickException(f"benchmark {name!r} runs no local stack, so no topology applies")
    kwargs = {"topology": topology} if on_stack else {}
    # A benchmark that owns a local stack tears it down on SIGTERM as on Ctrl-C.
    with sigterm_as_interrupt():
        try:
            result = module.run(quick=quick, **kwargs)
        except FedfaasError as exc:
            raise click.ClickException(exc.message) from None
    result["topology"] = topology if on_stack else None
    sys.stdout.flush()
    click.echo(json.dumps(result))


@main.command()
@click.option("--parties", type=int, default=None, help="Number of parties (default 20+).")
@click.option("--rounds", type=int, default=None, help="Number of rounds.")
@click.option("--report", type=click.Path(file_okay=False), default="reports/demo",
              help="Folder for the report (PNG plots and index.html).")
def demo(parties: int | None, rounds: int | None, report: str) -> None:
    """Run the main job end to end on the embedded local stack and write a report."""
    try:
        module = importlib.import_module("fedfaas.devstack.demo")
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"the demo is not available: {exc}") from None
    module.run(parties=parties, rounds=rounds, report_dir=Path(report))


if __name__ == "__main__":
    main()
