"""``microseg replay``: the core over a JSONL file, offline and deterministic.

Lines are read in chunks (memory grows with customers, not events) and go through the same
record pipeline as the worker's input batches (``segments.pipeline``): the same decoding and
reasons for rejected lines, the same dedupe, the same customer step, the same outputs. ``until``
lets time run on after the last event so that exits by time alone fire. Per chunk, the sink gets
the segment changes, then the messages (the worker, too, sends each batch to two topics).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from microseg.segments.identity import MemoryAliases
from microseg.segments.pipeline import Batch, Pipeline, Record
from microseg.segments.state import CustomerState, encode
from microseg.segments.step import Core

from microseg.engine.tools.sinks import Sink

__all__ = ["ReplayStats", "replay", "advance_all", "read_lines", "CHUNK"]

CHUNK = 1_000
"""Lines per pipeline call: large enough to amortise the call, small enough to keep memory flat."""


@dataclass
class ReplayStats:
    lines: int = 0
    events: int = 0
    rejected: int = 0
    duplicates: int = 0
    after_erasure: int = 0
    changes: int = 0
    messages: int = 0
    holdouts: int = 0
    """Decisions for customers in a control group (topic ``message-holdouts``)."""
    suppressed: Counter[str] = field(default_factory=Counter)
    rejected_reasons: Counter[str] = field(default_factory=Counter)
    crossings: dict[str, Any] = field(default_factory=dict)
    """How the model scores' threshold crossings were solved (``segments.crossing``: histories
    solved, left to a daily wake-up and why, score computations, answers from the memo)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "events": self.events,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "after_erasure": self.after_erasure,
            "changes": self.changes,
            "messages": self.messages,
            "holdouts": self.holdouts,
            "suppressed": dict(self.suppressed),
            "crossings": self.crossings,
        }


def read_lines(path: str) -> Iterator[bytes]:
    """Lines of a file without their newline; blank lines are skipped."""
    with open(path, "rb") as handle:
        for line in handle:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def _emit(batch: Batch, sink: Sink, stats: ReplayStats) -> None:
    if batch.changes:
        sink.changes(batch.changes)
        stats.changes += len(batch.changes)
    if batch.messages:
        sink.messages(batch.messages)
        stats.messages += len(batch.messages)
    for dead in batch.dead_letters:
        sink.dead_letter(dead)
    if batch.holdouts:
        stats.holdouts += len(batch.holdouts)
        holdouts = getattr(sink, "holdouts", None)  # sinks.HoldoutSink
        if holdouts is not None:
            holdouts(batch.holdouts)
    if batch.suppressed:
        for held in batch.suppressed:
            stats.suppressed[held["reason"]] += 1
        suppressed = getattr(sink, "suppressed", None)
        if suppressed is not None:
            suppressed(batch.suppressed)
    stats.rejected += len(batch.dead_letters)
    stats.rejected_reasons.update(batch.rejected)
    stats.duplicates += batch.duplicates
    stats.after_erasure += batch.after_erasure


def _records(lines: Iterable[bytes], on_line: Callable[[int], None] | None) -> Iterator[list[Record]]:
    """Chunks of ``CHUNK`` records; ``offset`` is the line number (1-based; blank lines are skipped and not counted)."""
    chunk: list[Record] = []
    for number, raw in enumerate(lines, start=1):
        if on_line is not None:
            on_line(len(raw) + 1)
        chunk.append(Record(0, number, None, raw))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def replay(
    lines: Iterable[bytes],
    core: Core,
    sink: Sink,
    *,
    states: dict[str, CustomerState] | None = None,
    until: float | None = None,
    source: str = "file",
    on_line: Callable[[int], None] | None = None,
    now: float | None = None,
    aliases: MemoryAliases | None = None,
) -> tuple[ReplayStats, dict[str, CustomerState]]:
    """Run ``core`` over raw JSON lines in order through the record pipeline; returns the
    statistics and the final states (customer id -> state).

    ``now`` is the processing clock for the future-time check and for decisions (epoch seconds;
    default: the wall clock at start; ``math.inf``: none, each decision as if made live at its own
    time, as ``rules preview`` does), exactly as the worker applies it. ``until`` (epoch seconds) lets time run on
    for every customer after the last line. Dead letters carry ``source`` as topic and the line
    number as offset. ``aliases``: the alias table (identity, CONTRACT §8), kept in memory and
    updated as ``identify`` events link visitors to customers (a new one by default).
    """
    states = {} if states is None else states
    stats = ReplayStats()
    solved_before = core.dependence.crossings.stats()
    aliases = MemoryAliases() if aliases is None else aliases
    pipeline = Pipeline(core, source=source, kafka=False, aliases=aliases)
    clock: float = time.time() if now is None else now

    def load(partition: int, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        return {c: states[c] for c in customer_ids if c in states}

    for chunk in _records(lines, on_line):
        batch = pipeline.process(chunk, clock, load)
        states.update(batch.states[0] if batch.states else ())
        for key in batch.removed.get(0, ()):
            states.pop(key, None)  # an anonymous visitor merged into its customer: kept only as an alias
        if batch.links or batch.unlinked:
            aliases.apply(batch.links, batch.unlinked)
        _emit(batch, sink, stats)
        stats.lines = chunk[-1].offset
    stats.events = stats.lines - stats.rejected
    if until is not None:
        advance_all(pipeline, states, until, sink, stats, now=max(clock, until))  # time has run on to until: the clock too
    stats.crossings = _since(solved_before, core.dependence.crossings.stats())
    return stats, states


def _since(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Counters of ``after`` less those of ``before`` (a core may replay more than once)."""
    return {
        name: _since(before.get(name, {}), value) if isinstance(value, dict) else value - before.get(name, 0)
        for name, value in after.items()
    }


def advance_all(pipeline: Pipeline, states: dict[str, CustomerState], until: float, sink: Sink, stats: ReplayStats, now: float | None = None) -> None:
    """Let time run on to ``until`` for every customer (in customer-id order, for determinism);
    ``now``: the processing clock for decisions (default ``until``)."""
    batch = pipeline.advance(0, sorted(states), until, lambda partition, ids: states, now)
    states.update(batch.states[0])
    _emit(batch, sink, stats)


def state_sizes(states: dict[str, CustomerState]) -> list[int]:
    return [len(encode(s)) for s in states.values()]
