"""The growth series written down: its targets, a markdown table and a plot (``scale.md``, ``scale.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microseg.engine.tools.bench.config import TARGETS

__all__ = ["scale_summary", "scale_markdown", "plot_scale"]


def scale_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``customers_ratio`` (events/s at the most customers over the fewest) and ``segments_cost``
    (events/s at the fewest segments over the most), each with its target and whether it is met."""
    by_customers = [r for r in rows if r["series"] == "customers"]
    by_segments = [r for r in rows if r["series"] == "segments"]
    summary: dict[str, Any] = {}
    if len(by_customers) >= 2:
        small, large = by_customers[0], by_customers[-1]
        ratio = large["events_per_s"] / small["events_per_s"]
        summary["customers_ratio"] = {"from": small["customers"], "to": large["customers"], "value": round(ratio, 3),
                                      "target": f">= {TARGETS['scale_customers_ratio']}", "met": ratio >= TARGETS["scale_customers_ratio"]}
    if len(by_segments) >= 2:
        small, large = by_segments[0], by_segments[-1]
        cost = small["events_per_s"] / large["events_per_s"]
        summary["segments_cost"] = {"from": small["segments"], "to": large["segments"], "value": round(cost, 3),
                                    "target": f"<= {TARGETS['scale_segments_cost']}", "met": cost <= TARGETS["scale_segments_cost"]}
    return summary


def scale_markdown(report: dict[str, Any]) -> str:
    """The rows as a markdown table, then the targets and the machine."""
    lines = [
        "| series | customers | customers seen | segments | events | worker events/s | replay events/s | state bytes/customer | worker peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['series']} ({r.get('generator', 'simulate')}) | {r['customers']:,} | {r['customers_seen']:,} | {r['segments']} | {r['events']:,} | {r['events_per_s']:,} | "
            f"{r['replay_events_per_s']:,} | {r['state_bytes_per_customer']} | {r['worker_peak_rss_mb']} |"
        )
    lines.append("")
    for name, item in report["targets"].items():
        lines.append(f"- {name}: {item['value']} (target {item['target']}): {'met' if item['met'] else 'missed'}")
    m = report["machine"]
    lines.append(f"\nMachine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM; {report['partitions']} partitions.")
    return "\n".join(lines) + "\n"


def plot_scale(rows: list[dict[str, Any]], path: Path) -> None:
    """Throughput against customers (log scale) and against segments, as a PNG; raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, series, x_key, label in ((axes[0], "customers", "customers", "customers"), (axes[1], "segments", "segments", "segments")):
        pts = [r for r in rows if r["series"] == series]
        if not pts:
            continue
        xs = [r[x_key] for r in pts]
        ax.plot(xs, [r["events_per_s"] for r in pts], "o-", label="worker end to end")
        ax.plot(xs, [r["replay_events_per_s"] for r in pts], "s--", label="replay (no Kafka)")
        ax.axhline(TARGETS["events_per_s"], color="grey", linestyle=":", label="20k target")
        if series == "customers":
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("events/s")
        ax.set_ylim(bottom=0)
        ax.set_title(f"throughput vs {label}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
