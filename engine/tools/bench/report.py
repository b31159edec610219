"""``microseg bench`` as a table on the terminal: each figure, its target and met/missed."""

from __future__ import annotations

from typing import Any

__all__ = ["print_table", "data_line"]


_ROWS = (
    ("events_per_s", "worker end to end (events/s)"),
    ("produce_per_s", "load generator (events/s)"),
    ("raw_consume_per_s", "raw aiokafka consumer (events/s)"),
    ("replay_events_per_s", "replay, no Kafka (events/s)"),
    ("peer_events_per_s", "quix-streams peer (events/s)"),
    ("p50_ms", "produce -> segment change p50 (ms)"),
    ("p99_ms", "produce -> segment change p99 (ms)"),
    ("state_bytes_per_customer", "state bytes per customer (mean)"),
    ("worker_peak_rss_mb", "worker peak RSS (MiB)"),
)


def data_line(data: dict[str, Any]) -> str:
    """One line saying what a run ran on: the file (or the simulator), events, customers, time span."""
    what = f"{data['path']} ({data['format']})" if data.get("source") == "file" else f"simulator, seed {data.get('seed')}"
    span = f"{data.get('first_ts')} .. {data.get('last_ts')} ({data.get('span_days')} days)"
    line = f"data: {what}; {data['events']:,} events, {data['customers']:,} customers, {span}"
    if data.get("skipped_rows"):
        line += f"; {data['skipped_rows']} rows skipped by the import"
    if data.get("latency_note"):
        line += f"; {data['latency_note']}"
    return line


def print_table(result: dict[str, Any]) -> None:
    """Print ``run_bench``'s result as a rich table, with the peer note and the machine below it."""
    from rich.console import Console
    from rich.table import Table

    targets = result.get("targets", {})
    data = result.get("data") or {}
    source = data.get("file") or f"simulated (seed {data.get('seed')})"
    table = Table(title=f"microseg bench on {source}: {result['events']:,} events, {result['customers']:,} customers, {result['partitions']} partitions")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("", justify="left")
    for key, label in _ROWS:
        value = result.get(key)
        text = "-" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"
        target = targets.get(key)
        mark = "" if not target or target["met"] is None else "[green]met[/]" if target["met"] else "[red]missed[/]"
        table.add_row(label, text, "" if not target else f"{target['target']:,}", mark)
    vs = targets.get("events_per_s_vs_peer")
    if vs and vs["met"] is not None:
        table.add_row("goal: worker >= peer", "", "", "[green]met[/]" if vs["met"] else "[red]missed[/]")
    console = Console()
    console.print(table)
    if result.get("peer_note"):
        console.print(result["peer_note"], highlight=False)
    if data:
        console.print(data_line(data), highlight=False)
    m = result["machine"]
    console.print(f"machine: {m['nproc']} cores, {m['cpu']}, {m['ram_gib']} GiB; broker {result['broker']}; {result['bench_seconds']} s", highlight=False)
