"""Sliding event-time windows: sparse per-day counters with running totals.

A customer's windowed metrics (sessions, purchases, spend, ...) live in ``Windows``: UTC day
number -> list of integer metric values (money in cents), plus the 7/30/90-day totals as of the newest day seen. A
``w``-day window at instant ``t`` covers the UTC day of ``t`` and the ``w - 1`` days before it,
so windows are exact at day granularity and a day's counts leave a window at the UTC midnight
``(day + w) * 86400``. Reading a total is O(1) on the newest day and O(days elapsed) after;
memory is bounded by the longest window (90 days), whatever the event rate.

Rows are replaced, never changed in place, so a shallow copy of a ``Windows`` is a safe
snapshot (the fold relies on it to stay pure).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "DAY",
    "SESSIONS",
    "PAGE_VIEWS",
    "APP_SESSIONS",
    "WEB_SESSIONS",
    "BOUNCES",
    "PURCHASES",
    "SPEND",
    "REFUNDS",
    "ABANDONED",
    "MESSAGES",
    "CONVERSIONS",
    "SUPPORT",
    "SWITCHES",
    "METRICS",
    "SPANS",
    "RETENTION_DAYS",
    "Windows",
    "day_of",
]

# Final: mypyc inlines these where they are used (a plain module global is a lookup every time)
DAY: Final = 86_400

SESSIONS: Final = 0
PAGE_VIEWS: Final = 1
APP_SESSIONS: Final = 2
WEB_SESSIONS: Final = 3
BOUNCES: Final = 4
PURCHASES: Final = 5
SPEND: Final = 6
REFUNDS: Final = 7
ABANDONED: Final = 8
MESSAGES: Final = 9
CONVERSIONS: Final = 10
SUPPORT: Final = 11
SWITCHES: Final = 12
METRICS: Final = 13
SPANS: Final = (7, 30, 90)
RETENTION_DAYS: Final = 90
_SPAN_INDEX = {span: i for i, span in enumerate(SPANS)}


def day_of(t: float) -> int:
    return int(t // DAY)


def _zeros() -> list[list[int]]:
    return [[0] * METRICS for _ in SPANS]


@dataclass(slots=True, init=False)
class Windows:
    """Per-day rows and the running totals of each span as of ``day`` (the newest day seen)."""

    rows: dict[int, list[int]]
    totals: list[list[int]]
    day: int
    shared: bool = field(compare=False, repr=False)
    _expiry: tuple[int, tuple[int, ...], tuple[tuple[int, ...], ...] | None, float | None] | None = field(compare=False, repr=False)

    def __init__(
        self,
        rows: dict[int, list[int]] | None = None,
        totals: list[list[int]] | None = None,
        day: int = -1,
        shared: bool = False,
        expiry: tuple[int, tuple[int, ...], tuple[tuple[int, ...], ...] | None, float | None] | None = None,
    ) -> None:
        self.rows = {} if rows is None else rows
        self.totals = _zeros() if totals is None else totals
        self.day = day
        self.shared = shared
        self._expiry = expiry

    def copy(self) -> Windows:
        """A snapshot that shares storage until either side is written (copy on write)."""
        self.shared = True
        return Windows(self.rows, self.totals, self.day, True, self._expiry)

    def _own(self) -> None:
        if self.shared:
            self.rows = dict(self.rows)
            self.totals = [t[:] for t in self.totals]
            self.shared = False

    def _roll(self, new_day: int) -> None:
        """Move the totals forward to ``new_day``, dropping the days that leave each span."""
        old = self.day
        rows = self.rows
        for i, span in enumerate(SPANS):
            totals = self.totals[i]
            if new_day - old >= span:
                self.totals[i] = [0] * METRICS
                continue
            for gone in range(old - span + 1, new_day - span + 1):
                row = rows.get(gone)
                if row is not None:
                    self.totals[i] = totals = [a - b for a, b in zip(totals, row)]
        self.day = new_day
        first = new_day - RETENTION_DAYS
        for gone in [d for d in rows if d <= first]:
            del rows[gone]
            self._expiry = None

    def add(self, t: float, metric: int, amount: int = 1) -> None:
        if self.shared:
            self._own()
        day = int(t // DAY)
        if self.day < 0:
            self.day = day
        elif day > self.day:
            self._roll(day)
        age = self.day - day
        if age >= RETENTION_DAYS:
            return
        row = self.rows.get(day)
        self._expiry = None  # a metric new to the row may make it an expiry
        if row is None:
            row = [0] * METRICS
        else:
            row = row[:]
        row[metric] += amount
        self.rows[day] = row
        totals = self.totals
        for i, span in enumerate(SPANS):
            if age < span:
                totals[i][metric] += amount

    def total(self, now: float, metric: int, span: int) -> int:
        """Sum of ``metric`` over the ``span``-day window ending at ``now`` (now >= newest event)."""
        if self.day < 0:
            return 0
        today = int(now // DAY)
        lag = today - self.day
        if lag >= span:
            return 0
        value = self.totals[_SPAN_INDEX[span]][metric]
        if lag > 0:
            rows = self.rows
            for gone in range(self.day - span + 1, today - span + 1):
                row = rows.get(gone)
                if row is not None:
                    value -= row[metric]
        elif lag < 0:
            return self.scan(now, metric, span)
        return value

    def scan(self, now: float, metric: int, span: int) -> int:
        """The same total by brute force (reference for tests and for reads in the past)."""
        today = int(now // DAY)
        return sum(row[metric] for day, row in self.rows.items() if today - span < day <= today)

    def next_expiry(self, now: float, spans: tuple[int, ...], metrics: tuple[tuple[int, ...], ...] | None = None) -> float | None:
        """Earliest instant after ``now`` at which a day with counts leaves one of ``spans``;
        ``metrics[i]``, when given, the metrics read over ``spans[i]``: a day with none of them
        leaving that window changes nothing read, so it is not an expiry."""
        today = int(now // DAY)
        cached = self._expiry
        if cached is not None and cached[0] == today and cached[1] == spans and cached[2] == metrics:
            return cached[3]
        days = sorted(self.rows)
        rows = self.rows
        best: float | None = None
        for i, span in enumerate(spans):
            if metrics is not None and today >= self.day:
                # Counts are never negative: none of these metrics over the span as of the newest
                # day means no day in the window (now or later) has any of them.
                totals = self.totals[_SPAN_INDEX[span]]
                if not any(totals[metric] for metric in metrics[i]):
                    continue
            position = bisect_right(days, today - span)
            while position < len(days):
                day = days[position]
                if metrics is not None:
                    row = rows[day]
                    if not any(row[metric] for metric in metrics[i]):
                        position += 1
                        continue
                at = float((day + span) * DAY)
                if at > now and (best is None or at < best):
                    best = at
                break
        self._expiry = (today, spans, metrics, best)
        return best
