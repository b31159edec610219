"""``microseg replay``: the core over a JSONL file, offline and deterministic.

Lines are read one at a time (memory grows with customers, not events); every line is decoded
exactly as the worker decodes a Kafka record, so rejected lines get the same reasons, and every
good event goes through the same ``Core.on_event``. ``until`` lets time run on after the last
event so that exits by time alone fire.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from microseg.schemas.events import InvalidEvent, decode_event
from microseg.segments.process import Core, StepResult
from microseg.segments.state import CustomerState, encode

from microseg.engine.tools.sinks import Sink, dead_letter

__all__ = ["ReplayStats", "replay", "advance_all", "read_lines"]


@dataclass
class ReplayStats:
    lines: int = 0
    events: int = 0
    rejected: int = 0
    duplicates: int = 0
    after_erasure: int = 0
    changes: int = 0
    messages: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    rejected_reasons: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "events": self.events,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "after_erasure": self.after_erasure,
            "changes": self.changes,
            "messages": self.messages,
            "suppressed": dict(self.suppressed),
        }


def read_lines(path: str) -> Iterator[bytes]:
    """Lines of a file without their newline; blank lines are skipped."""
    with open(path, "rb") as handle:
        for line in handle:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def _emit(result: StepResult, sink: Sink, stats: ReplayStats) -> None:
    if result.changes:
        sink.changes(result.changes)
        stats.changes += len(result.changes)
    if result.messages:
        sink.messages(result.messages)
        stats.messages += len(result.messages)
    for held in result.suppressed:
        stats.suppressed[held["reason"]] += 1


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
) -> tuple[ReplayStats, dict[str, CustomerState]]:
    """Run ``core`` over raw JSON lines in order; returns the statistics and the final states.

    ``now`` is the processing clock for the future-time check (default: the wall clock at start),
    exactly as the worker applies it.
    """
    states = {} if states is None else states
    stats = ReplayStats()
    newest: float = time.time() if now is None else now
    on_event = core.on_event
    number = 0
    for number, raw in enumerate(lines, start=1):
        if on_line is not None:
            on_line(len(raw) + 1)
        try:
            event = decode_event(raw, reference_t=newest)
        except InvalidEvent as exc:
            stats.rejected += 1
            stats.rejected_reasons[str(exc).split(":")[0]] += 1
            sink.dead_letter(dead_letter(str(exc), raw, topic=source, partition=None, offset=number))
            continue
        if event.t > newest:
            newest = event.t
        result = on_event(states.get(event.customer_id), event)
        if result.duplicate:
            stats.duplicates += 1
        elif result.ignored:
            stats.after_erasure += 1
        else:
            states[event.customer_id] = result.state
            if result.changes or result.messages or result.suppressed:
                _emit(result, sink, stats)
    stats.lines = number
    stats.events = number - stats.rejected
    if until is not None:
        advance_all(core, states, until, sink, stats)
    return stats, states


def advance_all(core: Core, states: dict[str, CustomerState], until: float, sink: Sink, stats: ReplayStats) -> None:
    """Let time run on to ``until`` for every customer (in customer-id order, for determinism)."""
    for customer_id in sorted(states):
        state = states[customer_id]
        nothing_due = state.wake is None or state.wake > until
        if nothing_due and state.rules_version == core.ruleset.version:
            continue
        result = core.advance(customer_id, state, until)
        states[customer_id] = result.state
        _emit(result, sink, stats)


def state_sizes(states: dict[str, CustomerState]) -> list[int]:
    return [len(encode(s)) for s in states.values()]
