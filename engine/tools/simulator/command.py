"""``microseg simulate``: the simulator's lines to a file, stdout, or the input topic.

With ``--to-topic`` the lines go through ``microseg produce``'s producer (``produce_lines``):
same settings (``--broker`` or ``MICROSEG_BROKER``, security, ``MICROSEG_INPUT_TOPIC``), keyed
by ``customer_id`` (lines without one, such as some ``--inject-bad`` lines, go unkeyed and the
worker dead-letters them), paced by ``--rate`` events per second (0 = as fast as possible).
"""

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
from microseg.errors import ConfigError, MicrosegError

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


def _send(lines: Iterator[bytes], broker: str | None, rate: float) -> None:
    """The lines onto the input topic, as ``microseg produce`` sends a file; exit 2 without a broker."""
    from microseg.engine.settings import load_settings
    from microseg.engine.tools.produce import configured_bootstrap, produce_lines

    try:
        settings = load_settings(broker=broker)
        bootstrap = configured_bootstrap(settings)
        summary = produce_lines(settings, bootstrap, lines, rate=rate)
    except MicrosegError as exc:  # no broker configured, or it cannot be reached: one line, exit 2
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"sent {summary.sent} events to {settings.input_topic} in {summary.seconds:.2f}s ({summary.per_second:,.0f}/s); "
        f"{summary.skipped} lines without a customer_id sent unkeyed (the worker dead-letters them)",
        err=True,
    )


def simulate_command(
    customers: Annotated[int, typer.Option("--customers", "-n", min=1, help="Number of simulated customers.")] = 1000,
    days: Annotated[int, typer.Option("--days", "-d", min=1, help="Length of the simulated period in days.")] = 90,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives byte-identical output.")] = 7,
    out: Annotated[Path | None, typer.Option("--out", "-o", dir_okay=False, help="JSONL file to write (default: stdout).")] = None,
    start: Annotated[str, typer.Option("--start", help="Start of the period, RFC 3339.")] = "2026-01-01T00:00:00Z",
    to_topic: Annotated[bool, typer.Option("--to-topic", help="Send to the input topic (as 'microseg produce' does) instead of a file.")] = False,
    broker: Annotated[str | None, typer.Option("--broker", help="With --to-topic: kafka://host:port[,host:port] (default: MICROSEG_BROKER).")] = None,
    rate: Annotated[float, typer.Option("--rate", min=0.0, help="With --to-topic: events per second (0 = as fast as possible).")] = 0.0,
    personas: Annotated[str | None, typer.Option("--personas", help="Persona weights, e.g. loyal_regular=2,new_browser=1.")] = None,
    inject_bad: Annotated[float, typer.Option("--inject-bad", min=0.0, max=1.0, help="Share of malformed lines to mix in (demos).")] = 0.0,
    anonymous: Annotated[bool, typer.Option("--anonymous", help="Prospects browse as anonymous visitors (anonymous_id) until they sign up; an identify then links them.")] = False,
) -> None:
    """Realistic synthetic customer journeys (personas) as input events (docs/dna.md, "Input events"), in event-time order."""
    moment = _parse_start(start)
    try:
        weights = parse_persona_weights(personas) if personas else None
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--personas") from None
    if out is not None and to_topic:
        raise typer.BadParameter("use either --out or --to-topic", param_hint="--to-topic")
    lines = simulate_lines(customers, days, seed, moment, weights, inject_bad, anonymous=anonymous)
    if to_topic:
        _send(lines, broker, rate)
        return
    began = time.perf_counter()
    if out is None:
        _write(lines, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    with out.open("wb", buffering=1 << 20) as sink:
        count = _write(lines, sink)
    typer.echo(f"wrote {count} lines to {out} in {time.perf_counter() - began:.1f}s", err=True)
