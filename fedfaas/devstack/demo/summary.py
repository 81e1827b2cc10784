"""The demo's results as one JSON-ready summary, and its text tables (JIT 6.2 metrics, FLStore 5).

The summary holds, per strategy, each round's accuracy and latencies, the
``aggregate`` function's container-seconds (the cost JIT saves), what every
party reported about itself, and the answers of the non-training queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from fedfaas.devstack.demo.coordinator import JobRun
from fedfaas.devstack.demo.plan import Federation
from fedfaas.devstack.demo.queries import QueryResult

SHAPLEY_COLUMNS = 4


def build_summary(fed: Federation, runs: Sequence[JobRun], queries: Mapping[str, QueryResult],
                  timing: Mapping[str, float], test_size: int) -> dict[str, Any]:
    """Everything the report shows, as plain JSON types."""
    cfg = fed.config
    parties = [{
        "party_id": p.party_id, "role": p.role, "examples": p.num_examples,
        "slowdown": p.slowdown,
        "emulated_train_s": round(p.train_time_s(cfg.local_epochs, cfg.examples_per_s), 3),
    } for p in fed.parties]
    out_runs: dict[str, Any] = {}
    for run in runs:
        n = len(run.rounds)
        cs = float(run.aggregate.get("container_seconds", 0.0))
        reported = {pid: {k: prof.get(k) for k in ("epoch_time_s", "minibatch_time_s",
                                                    "bandwidth_up_bps", "bandwidth_down_bps")}
                    for pid, prof in run.reported_profiles.items()}
        out_runs[run.strategy] = {
            "job_id": run.job_id,
            "initial_accuracy": run.initial_accuracy,
            "rounds": [asdict(r) for r in run.rounds],
            "aggregate": run.aggregate,
            "aggregate_container_s": cs,
            "aggregate_container_s_per_round": cs / n if n else None,
            "all_functions": run.all_functions,
            "arrivals": [{k: e.get(k) for k in ("party", "round", "offset_s", "train_s")}
                         for e in run.arrivals],
            "reported": reported,
            "wall_s": run.wall_s,
            "errors": run.errors,
            "estimates": run.estimates,
        }
    return {
        "config": asdict(cfg),
        "federation": {"t_wait_s": fed.t_wait_s, "quorum": fed.quorum,
                       "malicious": fed.malicious_id, "test_size": test_size,
                       "parties": parties},
        "runs": out_runs,
        "queries": {name: asdict(q) for name, q in queries.items()},
        "timing": dict(timing),
    }


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.1%}"


def _sec(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.2f}"


def round_table(summary: Mapping[str, Any]) -> list[str]:
    """Per round: accuracy, aggregation latency, close latency and updates fused, per strategy."""
    runs = summary["runs"]
    names = list(runs)
    width = 8 + 1 + 9 + 1 + 7 + 1 + 5

    def cells(acc: str, agg: str = "", close: str = "", fused: str = "") -> str:
        return f"{acc:>8s} {agg:>9s} {close:>7s} {fused:>5s}"

    lines = ["      " + "   ".join(f"{n:^{width}s}" for n in names),
             "round " + "   ".join(cells("accuracy", "agg lat s", "close s", "in") for _ in names),
             "    0 " + "   ".join(cells(_pct(runs[n]["initial_accuracy"])) for n in names)]
    total = max((len(r["rounds"]) for r in runs.values()), default=0)
    for i in range(total):
        row = []
        for n in names:
            rs = runs[n]["rounds"]
            if i >= len(rs):
                row.append(cells(""))
                continue
            r = rs[i]
            acc = _pct(r["accuracy"]) if r["state"] == "closed" else "FAILED"
            row.append(cells(acc, _sec(r["aggregation_latency_s"]), _sec(r["close_latency_s"]),
                             f"{r['included']}/{r['expected']}"))
        lines.append(f"{i + 1:5d} " + "   ".join(row))
    return lines


def cost_table(summary: Mapping[str, Any]) -> list[str]:
    """Container-seconds of the aggregate function per strategy, in total and per round."""
    lines = [f"{'strategy':18s} {'rounds':>6s} {'container-s':>11s} {'per round':>9s} "
             f"{'busy-s':>7s} {'calls':>6s} {'cold starts':>11s}"]
    for name, run in summary["runs"].items():
        agg = run["aggregate"]
        lines.append(f"{name:18s} {len(run['rounds']):6d} {run['aggregate_container_s']:11.1f} "
                     f"{run['aggregate_container_s_per_round'] or 0:9.2f} "
                     f"{agg.get('busy_seconds', 0):7.2f} {agg.get('invocations', 0):6d} "
                     f"{agg.get('cold_starts', 0):11d}")
    ratio = container_ratio(summary)
    if ratio is not None:
        lines.append(f"JIT used {ratio_text(ratio)} of eager-serverless")
    return lines


def ratio_text(ratio: float) -> str:
    """``"0.79x the container-seconds per round (21% saved)"`` and its opposite."""
    change = f"{1 - ratio:.0%} saved" if ratio <= 1 else f"{ratio - 1:.0%} more"
    return f"{ratio:.2f}x the container-seconds per round ({change})"


def container_ratio(summary: Mapping[str, Any]) -> float | None:
    """JIT's container-seconds per round over eager-serverless's (None without both runs)."""
    runs = summary["runs"]
    jit, eager = runs.get("jit"), runs.get("eager-serverless")
    if not jit or not eager or not eager["aggregate_container_s_per_round"]:
        return None
    return float(jit["aggregate_container_s_per_round"] / eager["aggregate_container_s_per_round"])


def estimate_lines(summary: Mapping[str, Any], strategy: str = "jit") -> list[str]:
    """The JIT estimator's predictions against what happened, per round (seconds from start)."""
    rows = summary["runs"].get(strategy, {}).get("estimates") or []
    if not rows:
        return []
    lines = [f"{'round':>5s} {'t_rnd pred':>10s} {'t_rnd obs':>9s} {'t_agg pred':>10s} "
             f"{'t_agg obs':>9s} {'t_upd MAE':>9s} {'late':>5s}"]
    for row in rows:
        late = row.get("late_fraction")
        lines.append(f"{row.get('round', 0):5d} {_sec(row.get('t_rnd_pred')):>10s} "
                     f"{_sec(row.get('t_rnd_obs')):>9s} {_sec(row.get('t_agg_pred')):>10s} "
                     f"{_sec(row.get('t_agg_obs')):>9s} {_sec(row.get('mae_t_upd')):>9s} "
                     f"{'-' if late is None else f'{late:.0%}':>5s}")
    return lines


def query_lines(summary: Mapping[str, Any]) -> list[str]:
    """The non-training queries' answers in a few lines each."""
    malicious = summary["federation"]["malicious"]
    lines = []
    for name, q in summary["queries"].items():
        where = f"round {q['round']}, on {q['function']}, {q['seconds']:.1f} s"
        if q["error"]:
            lines.append(f"{name}: FAILED ({q['error']})")
            continue
        res = q["result"]
        if name == "malicious-filter":
            flagged = res.get("flagged", [])
            verdict = "found" if malicious in flagged else "MISSED"
            lines.append(f"{name} ({where}): flagged {', '.join(flagged) or 'nobody'}; "
                         f"planted malicious party {malicious}: {verdict}")
        elif name == "contribution":
            values = sorted(res.get("shapley", {}).items(), key=lambda kv: -kv[1])
            lines.append(f"{name} ({where}): GTG-Shapley accuracy values, "
                         f"{res.get('permutations')} permutations, "
                         f"converged {res.get('converged')}")
            cells = [f"{p} {v:+.4f}" for p, v in values]
            for i in range(0, len(cells), SHAPLEY_COLUMNS):
                lines.append("    " + "   ".join(cells[i:i + SHAPLEY_COLUMNS]))
        elif name == "clustering":
            lines.append(f"{name} ({where}): k = {res.get('k')}")
            for cluster in res.get("clusters", []):
                lines.append(f"    cluster {cluster['id']}: {', '.join(cluster['members'])}")
        else:
            lines.append(f"{name} ({where})")
    return lines


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary printed at the end of the demo."""
    fed = summary["federation"]
    timing = summary["timing"]
    out = ["", "=" * 78, "fedfaas demo summary", "=" * 78,
           f"{len(fed['parties'])} parties, t_wait {fed['t_wait_s']:g} s, quorum {fed['quorum']}, "
           f"malicious party {fed['malicious']}; accuracy on {fed['test_size']} held-out images",
           "", "Accuracy and latency per round (agg lat: gateway's aggregation_latency_s, "
           "last arrival to model;", "close: from the instant the round could close, last "
           "expected update or t_wait, to model; in: updates fused)"]
    out += round_table(summary)
    out += ["", "Container-seconds of the 'aggregate' function (router accounting)"]
    out += cost_table(summary)
    estimates = estimate_lines(summary)
    if estimates:
        out += ["", "JIT estimator: predicted vs observed (seconds after the round opened; "
                "late: updates after their prediction)"]
        out += estimates
    if summary["queries"]:
        out += ["", "Non-training queries (FLStore)"]
        out += query_lines(summary)
    for name, run in summary["runs"].items():
        for err in run["errors"]:
            out.append(f"! {name}: {err}")
    out += ["", "Wall clock: " + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s"
                                           for k, v in timing.items())]
    return "\n".join(line.rstrip() for line in out)
