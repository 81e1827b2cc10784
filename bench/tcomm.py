"""The JIT estimator's ``t_comm`` against the network: one party of each link class, measured.

JIT (paper 5.3, Fig. 6 line 9) predicts a party's communication time as
``t_comm = M / B_down + M / B_up``: the global model down, the update up.  On a
topology whose parties sit behind shaped links (``cloud``: mobile, cable and
fibre uplinks), one party of each class downloads the initial model and
uploads an update of the same size from its own address on its edge host;
the benchmark reports, per class, the estimator's ``t_comm`` from the class's
link rates, the measured time and the relative error.  On ``loopback`` no
class exists and it reports nothing to compare.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from fedfaas import codec
from fedfaas.devstack.localstack.stack import PROJECT_ROOT, LocalStack, StackOptions
from fedfaas.jit.formulas import t_comm

QUICK_MB, FULL_MB = 1.0, 4.0


def _admin(stack: LocalStack) -> str:
    return (stack.data_dir / "secrets" / "fedfaas-admin-token").read_text().strip()


def _call(method: str, url: str, token: str, timeout_s: float = 120.0, **kwargs: Any) -> requests.Response:
    return requests.request(method, url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s,
                            **kwargs)


def _party_times(stack: LocalStack, party: str, base: str, jid: str, token: str, body: Path
                 ) -> dict[str, float]:
    """Run the download and the upload from ``party``'s own address on its edge host."""
    argv = [sys.executable, "-m", "bench.tcomm_party", "--source", stack.network.address(party),
            "--base", base, "--job", jid, "--token", token, "--body", str(body)]
    done = subprocess.run(stack.network.exec_argv(party, argv), capture_output=True, text=True,
                          timeout=600, cwd=PROJECT_ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"party {party} failed: {done.stderr.strip()[-400:]}")
    times: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return times


def run(quick: bool = False, topology: str = "cloud") -> dict[str, Any]:
    """Measure each party class's model download and update upload on ``topology``."""
    size_mb = QUICK_MB if quick else FULL_MB
    weights = {"w": np.random.default_rng(0).standard_normal(int(size_mb * 2**20) // 4).astype(np.float32)}
    model = codec.encode(weights, {})
    with tempfile.TemporaryDirectory(prefix="fedfaas-bench-tcomm-") as tmp:
        stack = LocalStack(Path(tmp) / "stack")
        print(f"starting the local stack on {topology} in {tmp} ...", flush=True)
        stack.up(StackOptions(components=("redis", "s3", "gateway"), topology=topology,
                              extra_env={"FEDFAAS_FLSTORE": "0"}))
        try:
            state = stack.read_state() or {}
            if not state.get("hosts"):
                return {"bench": "tcomm", "classes": {}, "note": "no party links on this topology"}
            classes: dict[str, Any] = {}
            for party in stack.network.topology.parties():
                classes.setdefault(party.profile, party)
            base, admin = stack.env()["FEDFAAS_GATEWAY_URL"], _admin(stack)
            job = _call("POST", f"{base}/v1/jobs", admin, json={
                "model": {"name": "tcomm", "size_bytes": len(model)}, "t_wait_s": 3600,
                "quorum": 1, "rounds": 1, "strategy": {"name": "lazy"}}).json()
            jid = job["job_id"]
            assert _call("PUT", f"{base}/v1/jobs/{jid}/model", admin, data=model).status_code == 201
            tokens = {name: _call("POST", f"{base}/v1/jobs/{jid}/parties", job["enrollment_token"],
                                  json={"party_id": name}).json()["token"] for name in classes}
            assert _call("POST", f"{base}/v1/jobs/{jid}/rounds", admin).status_code == 201
            body = Path(tmp) / "update.ffu"
            body.write_bytes(codec.encode(weights, {"num_examples": 1}))
            rows: dict[str, Any] = {}
            for profile, party in classes.items():
                started = time.monotonic()
                measured = _party_times(stack, party.name, base, jid, tokens[profile], body)
                down_bps, up_bps = party.link.down_bps, party.link.up_bps
                predicted = t_comm(len(model), down_bps / 8, up_bps / 8)
                total = measured["download_s"] + measured["upload_s"]
                rows[profile] = {
                    "party": party.name, "down_bps": down_bps, "up_bps": up_bps,
                    "t_comm_predicted_s": round(predicted, 3), "t_comm_measured_s": round(total, 3),
                    "download_s": round(measured["download_s"], 3),
                    "upload_s": round(measured["upload_s"], 3),
                    "relative_error": round((total - predicted) / predicted, 3),
                }
                print(f"{profile:8s} predicted {predicted:7.2f} s  measured {total:7.2f} s "
                      f"(down {measured['download_s']:.2f} s, up {measured['upload_s']:.2f} s) "
                      f"in {time.monotonic() - started:.1f} s", flush=True)
        finally:
            stack.down()
    errors = [abs(r["relative_error"]) for r in rows.values()]
    return {"bench": "tcomm", "model_bytes": len(model), "classes": rows,
            "max_abs_relative_error": round(max(errors), 3) if errors else None}
