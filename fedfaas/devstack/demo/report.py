"""The demo's report folder: PNG plots (matplotlib's Agg canvas) and one ``index.html`` (JIT 6.2, FLStore 5).

Plots: global-model accuracy per round, aggregation latency per round,
container-seconds of the ``aggregate`` function per strategy, and when each
party's update arrived within its round.  The page shows them with the
summary's tables, the parties and the non-training queries' answers.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from fedfaas.devstack.demo.summary import (
    container_ratio,
    cost_table,
    estimate_lines,
    query_lines,
    ratio_text,
    round_table,
)

COLORS = {"jit": "#1f77b4", "eager-serverless": "#d62728"}
ROLE_COLORS = {"active": "#2ca02c", "intermittent": "#ff7f0e", "malicious": "#d62728"}
DPI = 110


def _color(name: str) -> str:
    return COLORS.get(name, "#7f7f7f")


def plot_accuracy(summary: Mapping[str, Any], path: Path) -> None:
    """Test accuracy of the global model after every round, one line per strategy."""
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for i, (name, run) in enumerate(summary["runs"].items()):
        xs = [0] + [r["round"] for r in run["rounds"] if r["accuracy"] is not None]
        ys = [run["initial_accuracy"]] + [r["accuracy"] for r in run["rounds"]
                                          if r["accuracy"] is not None]
        # Same seeds and participation give the strategies the same models: keep both visible.
        ax.plot(xs, [100 * y for y in ys], color=_color(name), label=name,
                linestyle="-" if i == 0 else "--", marker="o" if i == 0 else "x",
                markersize=8 if i == 0 else 9, linewidth=2.5 if i == 0 else 1.5)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(range(0, max(len(r["rounds"]) for r in summary["runs"].values()) + 1))
    ax.set_title(f"Global model accuracy on {summary['federation']['test_size']} held-out digits")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def plot_latency(summary: Mapping[str, Any], path: Path) -> None:
    """Per-round latencies, grouped bars per strategy: gateway's figure and close latency."""
    runs = summary["runs"]
    fig = Figure(figsize=(11, 4.4))
    axes = fig.subplots(1, 2)
    panels = (("aggregation_latency_s", "last update arrived -> global model"),
              ("close_latency_s", "round could close (all in, or t_wait) -> global model"))
    width = 0.8 / max(len(runs), 1)
    rounds = max(len(r["rounds"]) for r in runs.values())
    for ax, (key, title) in zip(axes, panels, strict=True):
        for i, (name, run) in enumerate(runs.items()):
            rs = [r for r in run["rounds"] if r[key] is not None]
            ax.bar([r["round"] + (i - (len(runs) - 1) / 2) * width for r in rs],
                   [r[key] for r in rs], width=width, color=_color(name), label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("round")
        ax.set_ylabel("seconds")
        ax.set_xticks(range(1, rounds + 1))
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.25)
        ax.legend(fontsize=9, loc="upper right", ncols=len(runs))
    fig.suptitle("Aggregation latency per round")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def plot_cost(summary: Mapping[str, Any], path: Path) -> None:
    """Container-seconds of the aggregate function, total and per round, split busy / idle."""
    runs = summary["runs"]
    names = list(runs)
    fig = Figure(figsize=(10, 4.4))
    axes = fig.subplots(1, 2)
    for ax, per_round in ((axes[0], False), (axes[1], True)):
        div = [max(len(runs[n]["rounds"]), 1) if per_round else 1 for n in names]
        total = [runs[n]["aggregate_container_s"] / d for n, d in zip(names, div, strict=True)]
        busy = [min(float(runs[n]["aggregate"].get("busy_seconds", 0.0)) / d, t)
                for n, d, t in zip(names, div, total, strict=True)]
        colors = [_color(n) for n in names]
        ax.bar(names, busy, color=colors)
        bars = ax.bar(names, [t - b for t, b in zip(total, busy, strict=True)], bottom=busy,
                      color=colors, alpha=0.35)
        ax.bar_label(bars, labels=[f"{t:.1f}" for t in total])
        ax.set_title("per round" if per_round else "whole job", fontsize=10)
        ax.set_ylabel("container-seconds")
        ax.grid(axis="y", alpha=0.3)
        ax.margins(y=0.2)
        ax.legend(handles=[Patch(color="#555555", label="executing calls"),
                           Patch(color="#555555", alpha=0.35,
                                 label="idle, cold start, scale-down wait")],
                  fontsize=8, loc="upper left")
    fig.suptitle("Container-seconds of the 'aggregate' function (scale-to-zero after "
                 f"{summary['config']['idle_s']:g} s idle)")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def plot_arrivals(summary: Mapping[str, Any], strategy: str, path: Path) -> None:
    """When each update arrived within its round, by party role, against ``t_wait``."""
    run = summary["runs"][strategy]
    roles = {p["party_id"]: p["role"] for p in summary["federation"]["parties"]}
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    shift = {"active": -0.2, "intermittent": 0.0, "malicious": 0.2}
    for role, color in ROLE_COLORS.items():
        pts = [a for a in run["arrivals"] if roles.get(a["party"]) == role and a["offset_s"]]
        ax.scatter([a["round"] + shift[role] for a in pts], [a["offset_s"] for a in pts],
                   s=14, color=color, label=role, alpha=0.8)
    predicted = [(e["round"], e["t_rnd_pred"]) for e in run.get("estimates") or []
                 if e.get("t_rnd_pred") is not None]
    if predicted:
        ax.scatter([r for r, _ in predicted], [t for _, t in predicted], marker="_", s=500,
                   color="black", label="JIT t_rnd")
    ax.axhline(summary["federation"]["t_wait_s"], color="black", linestyle="--", label="t_wait")
    ax.set_xlabel("round")
    ax.set_ylabel("seconds after the round opened")
    ax.set_title(f"Update arrivals ({strategy} run)")
    ax.set_xticks(range(1, len(run["rounds"]) + 1))
    ax.set_ylim(0, 1.25 * max([summary["federation"]["t_wait_s"]] + [t for _, t in predicted]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="upper left", ncols=5)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def _pre(lines: list[str]) -> str:
    return "<pre>" + html.escape("\n".join(lines)) + "</pre>"


def _party_table(summary: Mapping[str, Any]) -> str:
    runs = list(summary["runs"].values())
    reported = runs[0]["reported"] if runs else {}
    shapley = summary["queries"].get("contribution", {}).get("result", {}).get("shapley", {})
    clusters = summary["queries"].get("clustering", {}).get("result", {}).get("assignments", {})
    flagged = set(summary["queries"].get("malicious-filter", {}).get("result", {})
                  .get("flagged", []))
    rows = []
    for p in summary["federation"]["parties"]:
        rep = reported.get(p["party_id"], {})
        epoch, bw = rep.get("epoch_time_s"), rep.get("bandwidth_up_bps")
        value = shapley.get(p["party_id"])
        cells = [p["party_id"], p["role"], str(p["examples"]), f"{p['slowdown']:.2f}",
                 "-" if epoch is None else f"{epoch:.2f}",
                 "-" if bw is None else f"{bw / 1e6:.1f}",
                 "yes" if p["party_id"] in flagged else "",
                 "-" if value is None else f"{value:+.4f}",
                 str(clusters.get(p["party_id"], "-"))]
        css = ' class="bad"' if p["role"] == "malicious" else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = ["party", "role", "examples", "slowdown", "reported epoch s", "reported up Mbit/s",
            "flagged", "Shapley", "cluster"]
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + "".join(rows) + "</table>")


def render_html(summary: Mapping[str, Any], images: Mapping[str, str]) -> str:
    """The report page."""
    fed = summary["federation"]
    ratio = container_ratio(summary)
    headline = ("" if ratio is None else
                f"<p class=big>JIT used {html.escape(ratio_text(ratio))} of eager-serverless "
                "aggregation.</p>")
    figs = "".join(f'<figure><img src="{html.escape(src)}" alt="{html.escape(title)}">'
                   f"<figcaption>{html.escape(title)}</figcaption></figure>"
                   for title, src in images.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fedfaas demo report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }}
pre {{ background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 13px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
tr.bad td {{ background: #fde0e0; }}
figure {{ display: inline-block; margin: 0.5em; }} img {{ max-width: 100%; }}
.big {{ font-size: 1.2em; }}
</style></head><body>
<h1>fedfaas demo: JIT aggregation and FLStore on real data</h1>
<p>{len(fed['parties'])} parties train the digits MLP (FedAvg) on a Dirichlet label-skew split
of scikit-learn's digits; t_wait {fed['t_wait_s']:g} s, quorum {fed['quorum']}, planted malicious
party <b>{html.escape(fed['malicious'])}</b>. Every function ran behind the local
OpenFaaS-compatible router with scale-to-zero after {summary['config']['idle_s']:g} s idle.</p>
{headline}
{figs}
<h2>Per round</h2>{_pre(round_table(summary))}
<h2>Cost</h2>{_pre(cost_table(summary))}
<h2>JIT estimator</h2>{_pre(estimate_lines(summary) or ['(no estimates)'])}
<h2>Non-training queries</h2>{_pre(query_lines(summary) or ['(none)'])}
<h2>Parties</h2>{_party_table(summary)}
<h2>Configuration</h2>{_pre([json.dumps(summary['config'], indent=1)])}
</body></html>
"""


def write_report(folder: Path, summary: Mapping[str, Any]) -> Path:
    """Write the plots, ``summary.json`` and ``index.html`` into ``folder``; returns the page."""
    folder.mkdir(parents=True, exist_ok=True)
    images = {"Accuracy per round": "accuracy.png",
              "Aggregation latency per round": "latency.png",
              "Container-seconds per strategy": "container_seconds.png"}
    plot_accuracy(summary, folder / images["Accuracy per round"])
    plot_latency(summary, folder / images["Aggregation latency per round"])
    plot_cost(summary, folder / images["Container-seconds per strategy"])
    if "jit" in summary["runs"]:
        images["Update arrivals (JIT run)"] = "arrivals.png"
        plot_arrivals(summary, "jit", folder / "arrivals.png")
    (folder / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    index = folder / "index.html"
    index.write_text(render_html(summary, images))
    return index
