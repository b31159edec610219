"""``microseg rules preview``, and the evaluation as of one instant that ``rules diff --events`` shares.

Every customer of a JSONL file is evaluated **as of one instant** (``--as-of``, default the newest
event of the file): events after it are left out and time runs on to it for everyone, as a worker's
clock would, through the same record pipeline as every host (``engine.tools.replay`` ->
``segments.pipeline``). Not each customer as of their own last event: that left a customer whose
only order is a year old in ``rfm_new`` (on CDNOW: 50.5 % ``rfm_new``, 0 ``rfm_lost``; as of the
newest event 0 and 18,114).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import orjson
import typer

__all__ = ["rules_preview", "sizes_as_of", "newest_instant", "CountingSink", "AsOfOpt"]

AsOfOpt = Annotated[Optional[str], typer.Option("--as-of", help="Evaluate everyone as of this instant (RFC 3339; default: the newest event).")]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load_ruleset(directory: Path | None) -> Any:
    from microseg.engine.tools.cli import _load_ruleset as load

    return load(directory)


def _instant(text: str, option: str) -> float:
    from microseg.engine.tools.cli import _parse_instant

    return _parse_instant(text, option)


def _event_time(line: bytes) -> float | None:
    """The ``ts`` of an event line (epoch seconds), or None when it has none readable (the
    pipeline then dead-letters the line with its reason)."""
    from datetime import datetime

    try:
        ts = orjson.loads(line).get("ts")
        moment = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except (orjson.JSONDecodeError, AttributeError, ValueError, TypeError):
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def newest_instant(events: Path) -> float | None:
    """The newest event time of a JSONL file (epoch seconds)."""
    from microseg.engine.tools.replay import read_lines

    newest: float | None = None
    for line in read_lines(str(events)):
        t = _event_time(line)
        if t is not None and (newest is None or t > newest):
            newest = t
    return newest


def _lines_until(events: Path, as_of: float, skipped: list[int]) -> Iterator[bytes]:
    from microseg.engine.tools.replay import read_lines

    for line in read_lines(str(events)):
        t = _event_time(line)
        if t is not None and t > as_of:
            skipped[0] += 1
            continue
        yield line


def sizes_as_of(core: Any, events: Path, as_of: float | None, sink: Any) -> tuple[Any, dict[str, Any], float, int]:
    """Run ``core`` over ``events`` through the record pipeline (``replay``) and let time run on to
    ``as_of`` for everyone (default: the newest event); events after ``as_of`` are left out.
    Returns (stats, final states, the instant, events left out)."""
    from microseg.engine.tools.replay import replay

    instant = as_of if as_of is not None else newest_instant(events)
    if instant is None:
        _fail(f"{events}: no event with a readable ts; nothing to evaluate")
    skipped = [0]
    from microseg.engine.tools.replay import read_lines

    lines = read_lines(str(events)) if as_of is None else _lines_until(events, instant, skipped)  # nothing is after the newest
    stats, states = replay(lines, core, sink, until=instant, source=str(events), now=math.inf)
    return stats, states, instant, skipped[0]


# -- preview ------------------------------------------------------------------------------


class CountingSink:
    """Counts what a preview would emit without keeping every record."""

    def __init__(self) -> None:
        from microseg.engine.tools.flaps import FlapCounter

        self.moves: Counter[tuple[str, str]] = Counter()
        self.causes: Counter[str] = Counter()
        self.message_counts: Counter[str] = Counter()
        self.held: Counter[tuple[str, str]] = Counter()
        """(message, reason) of every decision held back, holdouts included."""
        self.rejected = 0
        self.flaps = FlapCounter()

    def changes(self, records: Any) -> None:
        self.flaps.add(records)
        for record in records:
            self.moves[(record["segment"], record["change"])] += 1
            self.causes["tick" if record["cause"] == "tick" else "event"] += 1

    def messages(self, records: Any) -> None:
        for record in records:
            self.message_counts[record["message"]] += 1

    def suppressed(self, records: Any) -> None:
        for record in records:
            self.held[(record["message"], record["reason"])] += 1

    def holdouts(self, records: Any) -> None:
        """Counted with the suppressions (reasons ``holdout``, ``global_holdout``)."""

    def dead_letter(self, record: Any) -> None:
        self.rejected += 1


def message_table(ruleset: Any, sink: CountingSink) -> Any:
    """Per message: decisions sent and held back by reason (``segments.decide.REASONS``), as if
    every decision were made live at its own time."""
    from rich.table import Table

    from microseg.segments.decide import REASONS

    table = Table(title="Messages (decisions as if made live at their own time)")
    for column in ("message", "decided", *REASONS):
        table.add_column(column, justify="left" if column == "message" else "right")
    for message in ruleset.messages:
        table.add_row(message.id, f"{sink.message_counts[message.id]:,}", *(f"{sink.held[(message.id, r)]:,}" for r in REASONS))
    return table


def _cell_histogram(sizes: Counter[str]) -> list[tuple[str, int]]:
    bands = [("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6-20", 6, 20), ("21-100", 21, 100), ("101+", 101, 10**12)]
    return [(name, sum(1 for n in sizes.values() if lo <= n <= hi)) for name, lo, hi in bands]


def _trait_table(core: Any, states: dict[str, Any], instant: str) -> Any:
    """Each trait's distribution over the customers as of the preview's instant: numbers as
    min / median / p95 / max, other values as the most common ones (to pick thresholds)."""
    from rich.table import Table

    table = Table(title=f"Traits (value per customer as of {instant})")
    for column in ("trait", "customers with a value", "min", "median", "p95", "max / most common"):
        table.add_column(column, justify="left" if column == "trait" else "right")
    live = [state for state in states.values() if not state.erased]
    for trait in core.ruleset.traits:
        values = [core.view(state.dna, state.evaluated_at)[trait.id] for state in live]
        present = [v for v in values if v is not None and v != 0]
        numbers = sorted(v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool))
        if numbers and len(numbers) == sum(1 for v in values if v is not None):
            def at(q: float) -> str:
                return f"{numbers[min(len(numbers) - 1, int(q * len(numbers)))]:g}"

            table.add_row(trait.id, str(len(present)), f"{numbers[0]:g}", at(0.5), at(0.95), f"{numbers[-1]:g}")
        else:
            common = Counter(str(v) for v in values if v is not None).most_common(3)
            table.add_row(trait.id, str(len(present)), "", "", "", ", ".join(f"{v} ({n})" for v, n in common) or "-")
    return table


def rules_preview(
    directory: Annotated[Path, typer.Argument(help="Directory of *.yaml rule files.")],
    events: Annotated[Path, typer.Option("--events", exists=True, dir_okay=False, help="Events to run the rules over (JSONL).")],
    as_of: AsOfOpt = None,
    until: Annotated[Optional[str], typer.Option("--until", hidden=True, help="Former name of --as-of.")] = None,
    model: Annotated[Optional[Path], typer.Option("--model")] = None,
    no_model: Annotated[bool, typer.Option("--no-model")] = False,
) -> None:
    """Segment sizes, micro-segment cell sizes and the moves the rules would give, everyone as of one instant."""
    from rich.console import Console
    from rich.table import Table

    from microseg.engine.tools.cli import _load_model
    from microseg.engine.tools.flaps import flap_table
    from microseg.segments.step import Core
    from microseg.segments.view import iso

    wanted = as_of or until
    at = _instant(wanted, "--as-of") if wanted else None  # the arguments first, before any model warning
    ruleset = _load_ruleset(directory)
    core = Core(ruleset, _load_model(model, no_model))
    sink = CountingSink()
    stats, states, instant, skipped = sizes_as_of(core, events, at, sink)
    population: Counter[str] = Counter()
    cells: Counter[str] = Counter()
    live = 0
    for state in states.values():
        if state.erased:
            continue
        live += 1
        population.update(state.segments)
        if state.code is not None:
            cells[state.code] += 1
    console = Console(width=120)
    from microseg.engine.tools.summaries import counted

    after = f"; {counted(skipped, 'event')} after it left out" if skipped else ""
    table = Table(title=f"Segments as of {iso(instant)} ({'--as-of' if wanted else 'the newest event'}): {counted(stats.events, 'event')}, {counted(live, 'customer')}{after}; rules {ruleset.version}")
    for column in ("segment", "customers", "share", "entered", "exited"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for segment in ruleset.segments:
        size = population[segment.id]
        share = f"{100 * size / live:.1f}%" if live else "-"
        table.add_row(segment.id, f"{size:,}", share, f"{sink.moves[(segment.id, 'entered')]:,}", f"{sink.moves[(segment.id, 'exited')]:,}")
    console.print(table)
    if cells:
        hist = Table(title=f"Micro-segments: {len(cells)} cells")
        hist.add_column("customers per cell")
        hist.add_column("cells", justify="right")
        for band, count in _cell_histogram(cells):
            hist.add_row(band, str(count))
        console.print(hist)
        biggest = ", ".join(f"{code} ({n})" for code, n in cells.most_common(5))
        console.print(f"largest cells: {biggest}")
    messages = ", ".join(f"{m} {n:,}" for m, n in sorted(sink.message_counts.items())) or "none"
    console.print(
        f"moves: {sum(n for (s, c), n in sink.moves.items() if s != 'micro'):,} segment changes "
        f"({sink.causes['tick']:,} by time alone), {sink.moves[('micro', 'moved')]:,} micro moves; "
        f"messages: {messages}; rejected lines: {stats.rejected:,}"
    )
    if ruleset.messages:
        console.print(message_table(ruleset, sink))
    if ruleset.traits:
        console.print(_trait_table(core, states, iso(instant)))
    if (flapping := flap_table(sink.flaps)) is not None:
        console.print(flapping)
    empty = [s.id for s in ruleset.segments if population[s.id] == 0 and sink.moves[(s.id, 'entered')] == 0]
    if empty:
        console.print(f"[yellow]never entered on this data:[/] {', '.join(empty)}")
