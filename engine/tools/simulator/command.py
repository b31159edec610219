"""``microseg simulate``: the simulator's lines to a file or stdout."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Annotated

import typer

from microseg.engine.tools.simulator.lines import simulate_lines
from microseg.engine.tools.simulator.personas import parse_persona_weights
from microseg.engine.tools.simulator.streams import simulate
from microseg.errors import ConfigError

__all__ = ["simulate_command"]


def _parse_start(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an RFC 3339 time such as 2026-01-01T00:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)



def _write(lines: Iterator[bytes], sink: IO[bytes]) -> int:
    count = 0
    write = sink.write
    for line in lines:
        write(line)
        count += 1
    return count



def simulate_command(
    customers: Annotated[int, typer.Option("--customers", "-n", min=1, help="Number of simulated customers.")] = 1000,
    days: Annotated[int, typer.Option("--days", "-d", min=1, help="Length of the simulated period in days.")] = 90,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives byte-identical output.")] = 7,
    out: Annotated[Path | None, typer.Option("--out", "-o", dir_okay=False, help="JSONL file to write (default: stdout).")] = None,
    start: Annotated[str, typer.Option("--start", help="Start of the period, RFC 3339.")] = "2026-01-01T00:00:00Z",
    to_topic: Annotated[bool, typer.Option("--to-topic", help="Send to the customer-events topic instead of a file.")] = False,
    personas: Annotated[str | None, typer.Option("--personas", help="Persona weights, e.g. loyal_regular=2,new_browser=1.")] = None,
    inject_bad: Annotated[float, typer.Option("--inject-bad", min=0.0, max=1.0, help="Share of malformed lines to mix in (demos).")] = 0.0,
) -> None:
    """Realistic synthetic customer journeys (personas) as CONTRACT §1 events, in event-time order."""
    moment = _parse_start(start)
    try:
        weights = parse_persona_weights(personas) if personas else None
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--personas") from None
    if to_topic:
        try:
            from microseg.engine.producer import produce_events  # type: ignore[import-not-found, attr-defined]
        except ImportError:
            typer.echo("--to-topic is not available yet (microseg.engine.producer is missing); "
                       "write a file with --out and send it with `microseg produce FILE.jsonl`.", err=True)
            raise typer.Exit(2) from None
        sent = produce_events(simulate(customers, days, seed, moment, weights))
        typer.echo(f"sent {sent} events to the topic", err=True)
        return
    lines = simulate_lines(customers, days, seed, moment, weights, inject_bad)
    began = time.perf_counter()
    if out is None:
        _write(lines, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    with out.open("wb", buffering=1 << 20) as sink:
        count = _write(lines, sink)
    typer.echo(f"wrote {count} lines to {out} in {time.perf_counter() - began:.1f}s", err=True)

