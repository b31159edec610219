"""Sliding event-time windows as sparse per-day counters.

A customer's windowed metrics (sessions, purchases, spend, ...) live in one small dict:
UTC day number -> list of metric values. A ``w``-day window at instant ``t`` covers the UTC day
of ``t`` and the ``w - 1`` days before it, so windows are exact at day granularity and a day's
counts leave the window at the UTC midnight ``(day + w) * 86400``. Memory is bounded by the
longest window (90 days), whatever the event rate.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    "RETENTION_DAYS",
    "Buckets",
    "day_of",
    "add",
    "total",
    "prune",
    "next_expiry",
]

DAY = 86_400

SESSIONS, PAGE_VIEWS, APP_SESSIONS, WEB_SESSIONS, BOUNCES, PURCHASES, SPEND, REFUNDS, ABANDONED, MESSAGES, CONVERSIONS, SUPPORT, SWITCHES = range(13)
METRICS = 13
RETENTION_DAYS = 90

Buckets = dict[int, list[float]]


def day_of(t: float) -> int:
    return int(t // DAY)


def add(buckets: Buckets, t: float, metric: int, amount: float = 1) -> None:
    """Add ``amount`` to ``metric`` on the UTC day of ``t`` (mutates: call on a copy)."""
    day = int(t // DAY)
    row = buckets.get(day)
    if row is None:
        row = buckets[day] = [0] * METRICS
    row[metric] += amount


def total(buckets: Buckets, now: float, metric: int, days: int) -> float:
    """Sum of ``metric`` over the ``days``-day window ending at ``now``."""
    today = int(now // DAY)
    first = today - days
    return sum(row[metric] for day, row in buckets.items() if first < day <= today)


def prune(buckets: Buckets, now: float) -> None:
    """Forget days that no window can see any more."""
    first = int(now // DAY) - RETENTION_DAYS
    for day in [d for d in buckets if d <= first]:
        del buckets[day]


def next_expiry(buckets: Buckets, now: float, metrics: Iterable[tuple[int, int]]) -> float | None:
    """Earliest instant after ``now`` when a non-zero (metric, window) value drops out of its window."""
    best: float | None = None
    pairs = tuple(metrics)
    for day, row in buckets.items():
        for metric, days in pairs:
            if row[metric]:
                at = (day + days) * DAY
                if at > now and (best is None or at < best):
                    best = at
    return best
