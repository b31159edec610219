"""Progress lines: totals from the worker's metrics, the event rate since the previous line, and the last line."""

from __future__ import annotations

from microseg.engine.worker.metrics import Metrics
from microseg.engine.worker.progress import ProgressLog, Totals


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_totals_sum_every_label_of_the_metrics() -> None:
    metrics = Metrics()
    metrics.events.labels(type="purchase").inc(3)
    metrics.events.labels(type="page_viewed").inc(7)
    metrics.rejected.labels(reason="invalid").inc(2)
    metrics.transitions.labels(segment="a", direction="entered", cause="event").inc(4)
    metrics.consumer_lag.labels(partition="0").set(5)
    metrics.consumer_lag.labels(partition="1").set(6)
    metrics.partitions.set(2)
    metrics.customers.set(9)
    assert Totals.of(metrics) == Totals(events=10, rejected=2, changes=4, messages=0, lag=11, partitions=2, customers=9)


def test_each_line_gives_the_rate_since_the_previous_one_and_the_last_line_the_totals() -> None:
    metrics, clock = Metrics(), _Clock()
    progress = ProgressLog(metrics, clock)
    metrics.events.labels(type="purchase").inc(1200)
    clock.now += 60
    first = progress.line()
    assert first.startswith("progress: 1,200 events (20/s over the last 60 s), 0 rejected, 0 segment changes")
    metrics.events.labels(type="purchase").inc(300)
    clock.now += 30
    assert "1,500 events (10/s over the last 30 s)" in progress.line()
    clock.now += 10
    assert progress.stopped(0) == "stopped after 100 s (exit code 0): 1,500 events, 0 rejected, 0 segment changes, 0 messages"
