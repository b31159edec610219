"""Flapping: how often a customer enters the same segment within one UTC day, and how short stays are.

A segment *flaps* when customers keep entering and leaving it, e.g. on each page view of a visit:
its change records (and the messages they trigger) then say more about the rule than about the
customers. ``FlapCounter`` reads segment-change records, as a replay sink or from a
``microseg replay --out`` file, and keeps, per segment, the entries per customer and UTC day of
``at`` and the stays (entry to exit) shorter than ``short`` seconds. ``microseg rules preview``
prints its worst segments; the starter rules are held to at most 3 entries per customer-day.
Memory grows with customers x segments, not with changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["FlapCounter", "SegmentFlaps", "SHORT_STAY_S", "flap_table"]

SHORT_STAY_S = 3600.0
"""A stay (entry to exit) shorter than this, in seconds, is counted as short: one hour."""


def _seconds(at: str) -> float:
    """Epoch seconds of a record's ``at`` (RFC 3339, ``Z`` or an offset)."""
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True, slots=True)
class SegmentFlaps:
    """One segment's figures over the records read.

    ``max_per_day`` is the most entries of one customer on one UTC day, reached by ``worst``
    (customer id, ``YYYY-MM-DD``); ``short_stays`` counts the exits less than ``short`` seconds
    after the customer's entry, and ``stays`` every exit that followed an entry that was read.
    """

    segment: str
    entries: int
    max_per_day: int
    worst: tuple[str, str] | None
    stays: int
    short_stays: int


class FlapCounter:
    """Counts entries per (segment, customer, UTC day) and short stays from segment-change records.

    A sink for ``replay`` (``changes``; messages and dead letters are ignored), or fed records with
    ``add``. Records of the micro-segment code (``segment == 'micro'``) are skipped. ``at`` is taken
    as written: records in ``at`` order per customer (as the core emits them) give exact stays.
    """

    def __init__(self, short: float = SHORT_STAY_S) -> None:
        self.short = short
        self._day: dict[tuple[str, str], tuple[str, int]] = {}
        self._entered: dict[tuple[str, str], float] = {}
        self._entries: dict[str, int] = {}
        self._max: dict[str, tuple[int, str, str]] = {}
        self._stays: dict[str, int] = {}
        self._short: dict[str, int] = {}

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        """Read segment-change records (``customer_id``, ``segment``, ``change``, ``at``)."""
        for record in records:
            segment, change = record["segment"], record["change"]
            if change == "entered":
                self._enter(segment, record["customer_id"], record["at"])
            elif change == "exited":
                self._exit(segment, record["customer_id"], record["at"])

    def _enter(self, segment: str, customer: str, at: str) -> None:
        key, day = (segment, customer), at[:10]
        seen_day, n = self._day.get(key, ("", 0))
        n = n + 1 if seen_day == day else 1
        self._day[key] = (day, n)
        self._entered[key] = _seconds(at)
        self._entries[segment] = self._entries.get(segment, 0) + 1
        best = self._max.get(segment)
        if best is None or n > best[0]:
            self._max[segment] = (n, customer, day)

    def _exit(self, segment: str, customer: str, at: str) -> None:
        since = self._entered.pop((segment, customer), None)
        if since is None:
            return
        self._stays[segment] = self._stays.get(segment, 0) + 1
        if _seconds(at) - since < self.short:
            self._short[segment] = self._short.get(segment, 0) + 1

    def changes(self, records: Iterable[dict[str, Any]]) -> None:
        self.add(records)

    def messages(self, records: Iterable[dict[str, Any]]) -> None:
        """Messages are not changes: ignored."""

    def dead_letter(self, record: dict[str, Any]) -> None:
        """Rejected lines are not changes: ignored."""

    def segments(self) -> list[SegmentFlaps]:
        """Every segment entered at least once, the most entries per customer-day first
        (then the most short stays, then the id)."""
        out = []
        for segment, entries in self._entries.items():
            n, customer, day = self._max[segment]
            out.append(SegmentFlaps(segment, entries, n, (customer, day), self._stays.get(segment, 0), self._short.get(segment, 0)))
        out.sort(key=lambda s: (-s.max_per_day, -s.short_stays, s.segment))
        return out

    def worst(self) -> SegmentFlaps | None:
        """The segment with the most entries of one customer on one UTC day; None when nothing was entered."""
        ranked = self.segments()
        return ranked[0] if ranked else None


def flap_table(counter: FlapCounter, top: int = 5) -> Any:
    """A ``rich`` table of the ``top`` segments most prone to flapping (those with a customer-day of
    2+ entries or a short stay), for ``microseg rules preview``; None when no segment qualifies."""
    from rich.table import Table

    ranked = [s for s in counter.segments() if s.max_per_day > 1 or s.short_stays > 0][:top]
    if not ranked:
        return None
    minutes = f"{counter.short / 60:g} min" if counter.short < 3600 else f"{counter.short / 3600:g} h"
    table = Table(title="Flapping: entries per customer and UTC day, short stays")
    for column in ("segment", "most entries in a customer-day", "customer, day", f"stays under {minutes}", "stays"):
        table.add_column(column, justify="left" if column in ("segment", "customer, day") else "right")
    for s in ranked:
        table.add_row(s.segment, str(s.max_per_day), " ".join(s.worst or ()), str(s.short_stays), str(s.stays))
    return table
