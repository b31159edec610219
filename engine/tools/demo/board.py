"""What the demo shows, computed from the worker's outputs alone: segment populations, micro-segment
cells, the latest moves and messages, and the input rate.

Membership is kept per customer and record ids are deduplicated, so redelivered records
(at-least-once) never skew the counts. Times are epoch seconds (``time.time()``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Board", "Move", "Decision", "RecentRate", "clock_text"]


@dataclass(frozen=True)
class Move:
    """One segment entry or exit as seen on ``segment-changes``."""

    seen: float
    customer_id: str
    segment: str
    change: str
    cause: str

    def line(self) -> str:
        return f"{clock_text(self.seen)} {self.customer_id} {self.change} {self.segment} (cause {self.cause})"


@dataclass(frozen=True)
class Decision:
    """One next-best-message decision as seen on ``next-best-messages``."""

    seen: float
    customer_id: str
    message: str
    channel: str
    send_at: str
    reason: str

    def line(self) -> str:
        return f"{clock_text(self.seen)} {self.customer_id} message {self.message} via {self.channel}, send at {self.send_at} ({self.reason})"


def clock_text(moment: float) -> str:
    """``HH:MM:SS`` local time of an epoch second."""
    return time.strftime("%H:%M:%S", time.localtime(moment))


class RecentRate:
    """Events per second over the last few seconds, from (time, running total) samples."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, total: int) -> float:
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window_s:
            self._samples.popleft()
        first_t, first_n = self._samples[0]
        return (total - first_n) / (now - first_t) if now > first_t else 0.0


@dataclass
class Board:
    """Everything the view shows, fed by the follower thread and read by the main thread under ``lock``.

    Membership is kept per customer and change ids are deduplicated, so redelivered records
    (at-least-once) never skew the counts.
    """

    started: float
    segment_ids: tuple[str, ...] = ()
    keep: int = 12
    lock: threading.Lock = field(default_factory=threading.Lock)
    members: dict[str, set[str]] = field(default_factory=dict)
    entered: Counter[str] = field(default_factory=Counter)
    exited: Counter[str] = field(default_factory=Counter)
    codes: dict[str, str] = field(default_factory=dict)
    cells: Counter[str] = field(default_factory=Counter)
    moves: deque[Move] = field(default_factory=deque)
    decisions: deque[Decision] = field(default_factory=deque)
    pending: list[str] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)
    changes: int = 0
    micro_moves: int = 0
    ticks: int = 0
    messages: int = 0
    first_entry: float | None = None
    produced: int = 0
    producing_done: bool = False

    def apply(self, topic_kind: str, record: dict[str, Any], now: float) -> None:
        """Fold one output record in; ``topic_kind`` is ``change`` or ``message``."""
        with self.lock:
            if topic_kind == "change":
                self._change(record, now)
            else:
                self._message(record, now)

    def _change(self, record: dict[str, Any], now: float) -> None:
        change_id = str(record.get("change_id", ""))
        if change_id in self.seen_ids:
            return
        self.seen_ids.add(change_id)
        customer = str(record.get("customer_id") or (f"anonymous {record['anonymous_id']}" if record.get("anonymous_id") else "?"))
        segment = str(record.get("segment", "?"))
        cause = str(record.get("cause", "?"))
        if cause == "tick":
            self.ticks += 1
        if segment == "micro":
            self.micro_moves += 1
            old, new = self.codes.pop(customer, None), record.get("to")
            if old is not None:
                self.cells[old] -= 1
                if self.cells[old] <= 0:
                    del self.cells[old]
            if new:
                self.codes[customer] = str(new)
                self.cells[str(new)] += 1
            return
        self.changes += 1
        kind = str(record.get("change", "?"))
        members = self.members.setdefault(segment, set())
        if kind == "entered":
            members.add(customer)
            self.entered[segment] += 1
            if self.first_entry is None:
                self.first_entry = now
        elif kind == "exited":
            members.discard(customer)
            self.exited[segment] += 1
        move = Move(now, customer, segment, kind, cause)
        self._remember(self.moves, move)
        self.pending.append(move.line())

    def _message(self, record: dict[str, Any], now: float) -> None:
        decision_id = "m:" + str(record.get("decision_id", ""))
        if decision_id in self.seen_ids:
            return
        self.seen_ids.add(decision_id)
        self.messages += 1
        decision = Decision(
            now,
            str(record.get("customer_id", "?")),
            str(record.get("message", "?")),
            str(record.get("channel", "?")),
            str(record.get("send_at", "?")),
            str(record.get("reason", "")),
        )
        self._remember(self.decisions, decision)
        self.pending.append(decision.line())

    def _remember(self, queue: deque[Any], item: Any) -> None:
        queue.append(item)
        while len(queue) > self.keep:
            queue.popleft()

    def populations(self) -> list[tuple[str, int, int, int]]:
        """``(segment, members, entered, exited)`` for every known segment, largest first."""
        names = list(dict.fromkeys([*self.segment_ids, *self.members]))
        rows = [(s, len(self.members.get(s, ())), self.entered[s], self.exited[s]) for s in names]
        return sorted(rows, key=lambda r: (-r[1], -r[2], r[0]))

    def drain(self) -> list[str]:
        with self.lock:
            lines, self.pending = self.pending, []
        return lines

    def summary(self, now: float, rate: float) -> str:
        with self.lock:
            top = ", ".join(f"{s} {n}" for s, n, _, _ in self.populations()[:5] if n)
            return (
                f"{clock_text(now)} summary: {self.produced:,} events produced ({rate:,.0f}/s now), "
                f"{self.changes:,} segment changes ({self.ticks:,} by time), {self.messages:,} messages, "
                f"{len(self.cells):,} micro cells over {len(self.codes):,} customers; largest: {top or '-'}"
            )
