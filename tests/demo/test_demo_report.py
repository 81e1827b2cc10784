"""The demo's summary tables and report folder, from hand-made run results (no stack needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedfaas.devstack.demo.coordinator import JobRun, RoundResult
from fedfaas.devstack.demo.plan import DemoConfig, plan_federation
from fedfaas.devstack.demo.queries import QueryResult
from fedfaas.devstack.demo.report import write_report
from fedfaas.devstack.demo.summary import build_summary, container_ratio, format_summary


def _run(strategy: str, container_s: float, latency: float) -> JobRun:
    rounds = [RoundResult(round=r, state="closed", arrived=4, expected=4, included=4,
                          accuracy=0.2 * r, loss=1.0, aggregation_latency_s=latency,
                          close_latency_s=latency, duration_s=5.0) for r in (1, 2)]
    return JobRun(strategy=strategy, job_id=f"j-{strategy}", rounds=rounds, initial_accuracy=0.1,
                  aggregate={"container_seconds": container_s, "busy_seconds": 1.0,
                             "invocations": 2, "cold_starts": 1},
                  all_functions={}, arrivals=[{"party": "party-00", "round": 1, "offset_s": 2.0,
                                               "train_s": 1.5}],
                  reported_profiles={"party-00": {"epoch_time_s": 0.75}}, wall_s=12.0, errors=[],
                  estimates=[{"round": 1, "t_rnd_pred": 4.5, "t_rnd_obs": 5.0, "t_agg_pred": 0.2,
                              "t_agg_obs": 0.3, "mae_t_upd": 0.4, "late_fraction": 0.25}])


def _summary() -> dict:
    fed = plan_federation(DemoConfig(parties=4, min_examples=10), np.repeat(np.arange(10), 8))
    queries = {"malicious-filter": QueryResult("malicious-filter", 2, 0.1, "cache-0",
                                               {"flagged": [fed.malicious_id]}),
               "contribution": QueryResult("contribution", 2, 0.2, "cache-0",
                                           {"shapley": {fed.malicious_id: -0.3}}),
               "clustering": QueryResult("clustering", 2, 0.3, error="boom")}
    return build_summary(fed, [_run("jit", 4.0, 1.2), _run("eager-serverless", 10.0, 0.2)],
                         queries, {"total_s": 60.0}, test_size=100)


def test_container_ratio_is_per_round_jit_over_eager() -> None:
    # Prepare
    summary = _summary()
    # Execute
    ratio = container_ratio(summary)
    # Assert: (4.0 / 2 rounds) / (10.0 / 2 rounds)
    assert ratio == 0.4
    text = format_summary(summary)
    assert "JIT used 0.40x the container-seconds per round (60% saved)" in text
    assert "planted malicious party" in text and "found" in text
    assert "clustering: FAILED (boom)" in text
    assert "    1       4.50      5.00       0.20      0.30      0.40   25%" in text


def test_report_folder_holds_plots_page_and_json(tmp_path: Path) -> None:
    # Prepare
    summary = _summary()
    # Execute
    index = write_report(tmp_path / "report", summary)
    # Assert
    names = {"accuracy.png", "latency.png", "container_seconds.png", "arrivals.png"}
    for name in names:
        assert (tmp_path / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{name}"' in index.read_text()
    assert (tmp_path / "report" / "summary.json").exists()
    assert "0.40x" in index.read_text()


def test_ratio_above_one_reads_as_more_not_as_negative_savings() -> None:
    from fedfaas.devstack.demo.summary import ratio_text

    assert ratio_text(1.25) == "1.25x the container-seconds per round (25% more)"
    assert ratio_text(0.5) == "0.50x the container-seconds per round (50% saved)"
