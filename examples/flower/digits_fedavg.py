"""Flower + fedfaas: FedAvg on scikit-learn's digits, recorded (optionally aggregated) in fedfaas.

A real Flower job (ServerApp, ClientApp, Flower's FedAvg, Simulation Engine
with in-process SuperNodes) whose every client update is stored in fedfaas,
where FLStore's non-training workloads can query it (FLStore 4.2).  With
``--aggregate-in-fedfaas`` fedfaas's JIT aggregation (JIT paper 5.5) produces
each round's global model instead of Flower's FedAvg.

Run it against a running local stack::

    .venv/bin/fedfaas up && eval "$(.venv/bin/fedfaas env)"
    .venv/bin/python examples/flower/digits_fedavg.py --clients 3 --rounds 3

Without ``FEDFAAS_GATEWAY_URL`` it starts a local stack of its own in a
temporary folder and stops it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

# Flower sends usage telemetry by default (read when flwr is first imported);
# an example run on a laptop should not.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedfaas.client import AdminClient
from fedfaas.flower import FedfaasStrategy, fedfaas_upload_mod, run_inprocess
from fedfaas.models import (
    build_model,
    evaluate,
    iid_split,
    load_digits_dataset,
    train_local,
)

MODEL = "digits-mlp"
LR = 0.1


def build_apps(admin: AdminClient, outcome: dict[str, Any], *, clients: int, rounds: int,
               aggregate_in_fedfaas: bool, upload_mod: bool, local_epochs: int,
               seed: int, train_nodes: int | None = None) -> tuple[ServerApp, ClientApp]:
    """The Flower ServerApp and ClientApp of this example; results land in ``outcome``."""
    digits = load_digits_dataset(seed=seed)
    parts = iid_split(len(digits.y_train), clients, seed=seed)

    client_app = ClientApp(mods=[fedfaas_upload_mod] if upload_mod else [])

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        config = msg.content.config_records["config"]
        model = build_model(MODEL)
        model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
        idx = parts[partition]
        stats = train_local(model, digits.x_train[idx], digits.y_train[idx],
                            epochs=int(_number(config["local-epochs"])),
                            lr=_number(config["lr"]),
                            seed=seed + 1000 * partition + int(_number(config["server-round"])))
        metrics = MetricRecord({"train_loss": stats["loss"], "num-examples": len(idx)})
        return Message(RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}),
                       reply_to=msg)

    def central_evaluation(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = build_model(MODEL)
        model.load_state_dict(arrays.to_torch_state_dict())
        accuracy, loss = evaluate(model, digits.x_test, digits.y_test)
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        sampled = clients if train_nodes is None else train_nodes
        inner = FedAvg(fraction_train=sampled / clients, fraction_evaluate=0.0,
                       min_train_nodes=sampled, min_available_nodes=clients)
        strategy = FedfaasStrategy(inner, admin, aggregate_in_fedfaas=aggregate_in_fedfaas,
                                   local_epochs=local_epochs, round_timeout_s=120,
                                   job_spec={"name": "flower-digits-fedavg"})
        initial = ArrayRecord(build_model(MODEL, seed=seed).state_dict())
        result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds, timeout=120,
                                train_config=_config(local_epochs), evaluate_fn=central_evaluation)
        outcome["job_id"] = strategy.job_id
        outcome["rounds"] = dict(strategy.rounds)
        outcome["parties"] = sorted(p.party_id for p in strategy.parties.values())
        outcome["final_arrays"] = {k: v.numpy() for k, v in result.arrays.items()}
        outcome["accuracy"] = {r: _number(m["accuracy"])
                               for r, m in result.evaluate_metrics_serverapp.items()}

    return server_app, client_app


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _config(local_epochs: int) -> ConfigRecord:
    return ConfigRecord({"local-epochs": local_epochs, "lr": LR})


def run(admin: AdminClient, *, clients: int = 3, rounds: int = 2,
        aggregate_in_fedfaas: bool = False, upload_mod: bool = True, local_epochs: int = 1,
        seed: int = 0, train_nodes: int | None = None) -> dict[str, Any]:
    """Run the Flower job; returns the fedfaas job id, round mapping, accuracies and final model.

    ``train_nodes`` samples that many of the ``clients`` per round (default: all).
    """
    torch.set_num_threads(1)
    outcome: dict[str, Any] = {}
    server_app, client_app = build_apps(
        admin, outcome, clients=clients, rounds=rounds, aggregate_in_fedfaas=aggregate_in_fedfaas,
        upload_mod=upload_mod, local_epochs=local_epochs, seed=seed, train_nodes=train_nodes)
    run_inprocess(server_app, client_app, num_supernodes=clients, num_workers=min(clients, 2))
    if "job_id" not in outcome:
        raise RuntimeError("the Flower ServerApp did not finish")
    return outcome


def _summary(outcome: dict[str, Any]) -> dict[str, Any]:
    return {"job_id": outcome["job_id"], "rounds": outcome["rounds"],
            "parties": outcome["parties"], "accuracy": outcome["accuracy"],
            "model_bytes": int(sum(np.asarray(a).nbytes for a in outcome["final_arrays"].values()))}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--aggregate-in-fedfaas", action="store_true")
    parser.add_argument("--no-upload-mod", action="store_true",
                        help="send updates through Flower; the strategy stores them")
    args = parser.parse_args(argv)
    options: dict[str, Any] = dict(
        clients=args.clients, rounds=args.rounds, local_epochs=args.local_epochs,
        aggregate_in_fedfaas=args.aggregate_in_fedfaas, upload_mod=not args.no_upload_mod)
    if os.environ.get("FEDFAAS_GATEWAY_URL"):
        with AdminClient.from_env() as admin:
            outcome = run(admin, **options)
    else:
        from fedfaas.devstack.localstack.stack import LocalStack, StackOptions

        with tempfile.TemporaryDirectory(prefix="fedfaas-flower-") as tmp:
            stack = LocalStack(Path(tmp))
            stack.up(StackOptions(components=("redis", "s3", "router", "gateway")))
            try:
                env = stack.env()
                token = (Path(env["FEDFAAS_SECRETS_DIR"]) / "fedfaas-admin-token").read_text()
                with AdminClient(env["FEDFAAS_GATEWAY_URL"], token.strip()) as admin:
                    outcome = run(admin, **options)
            finally:
                stack.down()
    print(json.dumps(_summary(outcome)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
