"""`fedfaas demo` end to end in a small configuration: real stack, party processes, report."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fedfaas.devstack.demo import DemoConfig, run
from fedfaas.devstack.localstack.stack import LocalStack

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def test_small_demo_writes_its_report_and_finds_the_malicious_party(tmp_path: Path) -> None:
    # Prepare: 6 parties, 2 JIT rounds, fast emulated devices, no eager re-run
    config = DemoConfig(parties=6, rounds=2, examples_per_s=2000.0, t_wait_min_s=3.0,
                        idle_s=1.0)
    out = io.StringIO()
    # Execute
    summary = run(report_dir=tmp_path / "report", data_dir=tmp_path / "stack", compare=False,
                  config=config, stream=out)
    # Assert
    report = tmp_path / "report"
    for name in ("index.html", "accuracy.png", "latency.png", "container_seconds.png",
                 "arrivals.png", "summary.json"):
        assert (report / name).stat().st_size > 0, name
    saved = json.loads((report / "summary.json").read_text())
    malicious = saved["federation"]["malicious"]
    assert malicious in saved["queries"]["malicious-filter"]["result"]["flagged"]
    jit = summary["runs"]["jit"]
    shapley = saved["queries"]["contribution"]["result"]["shapley"]
    assert len(shapley) == jit["rounds"][-1]["included"] and malicious in shapley
    assert [r["state"] for r in jit["rounds"]] == ["closed", "closed"]
    assert jit["aggregate"]["invocations"] >= 2 and jit["aggregate_container_s"] > 0
    assert list(summary["runs"]) == ["jit"]
    assert "planted malicious party" in out.getvalue()
    assert LocalStack(tmp_path / "stack").read_state() is None  # torn down
