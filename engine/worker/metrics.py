"""Prometheus metrics of a worker: one object, built against its own registry with a prefix.

The core never imports this; the runtime calls the hooks. Buckets are explicit so dashboards
built on them do not change meaning between versions.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as CounterOf
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics", "observe_many"]

_STEP_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)


class Metrics:
    """Every metric of CONTRACT §6, prefixed ``microseg_``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("microseg_events_processed_total", "Input events folded into DNA, by type.", ["type"], registry=r)
        self.rejected = Counter("microseg_events_rejected_total", "Input records sent to the dead-letter topic, by reason.", ["reason"], registry=r)
        self.duplicates = Counter("microseg_events_duplicate_total", "Input events recognised as already applied.", registry=r)
        self.after_erasure = Counter("microseg_events_after_erasure_total", "Events for erased customers, dropped.", registry=r)
        self.trait_values_dropped = Counter(
            "microseg_trait_values_dropped_total", "Values distinct_count/most_frequent traits could not keep (64 per customer and trait).", registry=r
        )
        self.state_errors = Counter("microseg_state_errors_total", "Stored customer states that could not be read.", registry=r)
        self.processing_seconds = Histogram(
            "microseg_processing_seconds", "Core time per event (fold, rules, diff, decision), averaged over each partition's share of a batch.", buckets=_STEP_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "microseg_batch_seconds", "Wall time per input batch, delivery and flush included.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.produce_to_output_seconds = Histogram(
            "microseg_produce_to_output_seconds",
            "From an input record's produce time to its segment changes being delivered.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.event_time_lag_seconds = Histogram(
            "microseg_event_time_to_output_seconds",
            "From an event's own time (ts) to its segment changes being delivered.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.population = Gauge("microseg_segment_population", "Customers currently in each segment (this worker's partitions).", ["segment"], registry=r)
        self.transitions = Counter("microseg_segment_transitions_total", "Segment entries and exits, by cause kind.", ["segment", "direction", "cause"], registry=r)
        self.messages = Counter("microseg_messages_decided_total", "Next-best-message decisions sent.", ["message", "channel"], registry=r)
        self.suppressed = Counter("microseg_messages_suppressed_total", "Decisions held back, by reason.", ["message", "reason"], registry=r)
        self.rules_version = Gauge("microseg_rules_version_info", "The rule set in force (value 1).", ["version"], registry=r)
        self.rule_errors = Counter("microseg_rule_errors_total", "Published rule sets refused because they did not compile.", registry=r)
        self.model_version = Gauge("microseg_model_version_info", "The predictive model in force (value 1; version none: no model).", ["version"], registry=r)
        self.model_errors = Counter("microseg_model_errors_total", "Published predictive models refused because they were not usable models.", registry=r)
        self.posterior_version = Gauge(
            "microseg_posterior_version_info",
            "The newest posterior snapshot of message variants this worker holds (value: its effective_from, epoch seconds); decisions at earlier event times read older ones.",
            ["version"], registry=r,
        )
        self.posterior_snapshots = Gauge("microseg_posterior_snapshots", "Posterior snapshots this worker holds (the published history).", registry=r)
        self.posterior_late = Counter("microseg_posterior_late_total", "Posterior snapshots read after events at or past their effective time were processed.", registry=r)
        self.conversions_unattributed = Counter(
            "microseg_conversions_unattributed_total", "campaign_converted events of a message with variants that name none of its variants: no arm credited.", registry=r
        )
        self.consumer_lag = Gauge("microseg_consumer_lag", "Input records not yet processed, by partition.", ["partition"], registry=r)
        self.partitions = Gauge("microseg_partitions_assigned", "Input partitions this worker owns.", registry=r)
        self.customers = Gauge("microseg_customers", "Customers stored in this worker's partitions.", registry=r)
        self.wakeups_pending = Gauge("microseg_wakeups_pending", "Customers with a pending time-based wake-up.", registry=r)
        self.erasures = Counter("microseg_erasures_total", "Erasure requests audited, by how they came and what they found.", ["via", "outcome"], registry=r)
        self.api_refused = Counter("microseg_api_refused_total", "Requests to customer endpoints refused by the token guard, by reason.", ["reason"], registry=r)
        self.ready = Gauge("microseg_ready", "1 when /health/ready would answer 200 (every readiness condition holds), else 0; set at each scrape.", registry=r)
        self.crossing_histories = Gauge(
            "microseg_crossing_histories",
            "Purchase histories whose model-score threshold crossings were solved (outcome solved) or left to daily wake-ups "
            "because a score was not monotone or null on a probed day (outcome daily), since the rules or model in force were loaded; set at each scrape.",
            ["outcome"],
            registry=r,
        )

    def observe_crossings(self, stats: dict[str, Any]) -> None:
        """Set ``microseg_crossing_histories`` from ``segments.crossing.Crossings.stats()``."""
        self.crossing_histories.labels(outcome="solved").set(stats.get("solved", 0))
        self.crossing_histories.labels(outcome="daily").set(stats.get("daily", 0))

    def count_outputs(self, changes: list[dict], messages: list[dict], suppressed: list[dict]) -> None:
        """One ``inc(n)`` per label set and batch: label lookups cost more than the work they count."""
        transitions: CounterOf[tuple[str, str, str]] = CounterOf()
        for change in changes:
            segment = change["segment"]
            if segment == "micro":
                continue
            cause = change["cause"]
            kind = "tick" if cause == "tick" else "rules" if cause.startswith("rules:") else "model" if cause.startswith("model:") else "event"
            transitions[(segment, change["change"], kind)] += 1
        for (segment, direction, kind), count in transitions.items():
            self.transitions.labels(segment=segment, direction=direction, cause=kind).inc(count)
        for (message, channel), count in CounterOf((m["message"], m["channel"]) for m in messages).items():
            self.messages.labels(message=message, channel=channel).inc(count)
        for (message, reason), count in CounterOf((h["message"], h["reason"]) for h in suppressed).items():
            self.suppressed.labels(message=message, reason=reason).inc(count)


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value, with one increment per bucket touched instead of two
    locked increments per value (a batch observes thousands of latencies)."""
    if not values:
        return
    buckets = histogram._buckets  # noqa: SLF001 - prometheus_client has no bulk observe
    for index, count in CounterOf(bisect_left(histogram._upper_bounds, v) for v in values).items():  # noqa: SLF001
        buckets[index].inc(count)
    histogram._sum.inc(sum(values))  # noqa: SLF001
