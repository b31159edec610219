"""The worker's progress lines: what it has done since it started and since the last line.

Every ``MICROSEG_PROGRESS_INTERVAL_S`` (60 s by default) the worker logs one line such as
``progress: 120,000 events (2,001/s over the last 60 s), 12 rejected, 3,400 segment changes,
lag 0 records, 4 partitions, 9,870 customers``, and as it stops a last line with the totals and
how long it ran. Everything comes from the worker's own metrics (``engine.worker.metrics``), so the
log and ``/metrics`` never disagree.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.metrics import MetricWrapperBase

from microseg.engine.worker.metrics import Metrics

__all__ = ["Totals", "ProgressLog", "total"]


def total(metric: MetricWrapperBase) -> float:
    """The sum of a metric's samples over all its labels (``_total`` for counters, the value for gauges)."""
    found = 0.0
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") or sample.name == family.name:
                found += sample.value
    return found


@dataclass(frozen=True)
class Totals:
    """Counts since the worker started (events, rejected records, segment changes, decisions) and
    the gauges now (lag in records, partitions, customers)."""

    events: int
    rejected: int
    changes: int
    messages: int
    lag: int
    partitions: int
    customers: int

    @classmethod
    def of(cls, metrics: Metrics) -> "Totals":
        return cls(
            events=int(total(metrics.events)),
            rejected=int(total(metrics.rejected)),
            changes=int(total(metrics.transitions)),
            messages=int(total(metrics.messages)),
            lag=int(total(metrics.consumer_lag)),
            partitions=int(total(metrics.partitions)),
            customers=int(total(metrics.customers)),
        )


class ProgressLog:
    """Progress lines from ``metrics``; ``clock`` gives seconds (monotonic)."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.clock = clock
        self.started = clock()
        self._last_t = self.started
        self._last_events = 0

    def line(self) -> str:
        """``progress: ...``: totals, and the event rate since the previous line (or the start)."""
        now = self.clock()
        totals = Totals.of(self.metrics)
        span = now - self._last_t
        rate = (totals.events - self._last_events) / span if span > 0 else 0.0
        self._last_t, self._last_events = now, totals.events
        return (
            f"progress: {totals.events:,} events ({rate:,.0f}/s over the last {span:.0f} s), {totals.rejected:,} rejected, "
            f"{totals.changes:,} segment changes, {totals.messages:,} messages, lag {totals.lag:,} records, "
            f"{totals.partitions} partitions, {totals.customers:,} customers"
        )

    def stopped(self, code: int) -> str:
        """The last line: how long the worker ran, its totals and its exit code."""
        totals = Totals.of(self.metrics)
        return (
            f"stopped after {self.clock() - self.started:.0f} s (exit code {code}): {totals.events:,} events, "
            f"{totals.rejected:,} rejected, {totals.changes:,} segment changes, {totals.messages:,} messages"
        )
