"""What the console reads from a worker's Prometheus metrics (``engine.worker.metrics.Metrics``):
counter totals by label, gauges, and quantiles estimated from histogram buckets.

Quantiles are estimated as Prometheus's ``histogram_quantile`` does: find the bucket holding the
q-th observation and interpolate linearly inside it (the first bucket from 0); an estimate in the
``+Inf`` bucket is reported as the largest finite bound ("at least"). Buckets are cumulative since
the worker started, so these are quantiles over the worker's whole life; Prometheus, when one
scrapes the worker, gives them over any window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Quantiles", "by_labels", "gauge_by_label", "total", "quantiles"]


def _samples(metric: Any, suffix: str) -> Iterable[Any]:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                yield sample


def by_labels(counter: Any, *labels: str) -> dict[tuple[str, ...], float]:
    """A labelled counter's totals summed over every other label, keyed by the values of ``labels``."""
    found: dict[tuple[str, ...], float] = {}
    for sample in _samples(counter, "_total"):
        key = tuple(sample.labels.get(label, "") for label in labels)
        found[key] = found.get(key, 0.0) + sample.value
    return found


def total(counter: Any) -> float:
    """A counter's total over all its labels (0 before anything was counted)."""
    return sum(sample.value for sample in _samples(counter, "_total"))


def gauge_by_label(gauge: Any, label: str) -> dict[str, float]:
    """A labelled gauge's current values by one label."""
    return {sample.labels.get(label, ""): sample.value for family in gauge.collect() for sample in family.samples}


@dataclass(frozen=True)
class Quantiles:
    """Estimated quantiles of one histogram: ``count`` observations, ``mean`` seconds and
    ``values`` (quantile -> seconds; None before any observation); ``capped`` names the quantiles
    that fell in the ``+Inf`` bucket (the value shown is the largest finite bound)."""

    count: int
    mean: float | None
    values: dict[float, float | None]
    capped: frozenset[float]


def quantiles(histogram: Any, qs: Sequence[float] = (0.5, 0.95, 0.99)) -> Quantiles:
    """Quantile estimates from a histogram's cumulative buckets (module docstring)."""
    buckets: list[tuple[float, float]] = []
    count = 0.0
    sum_ = 0.0
    for family in histogram.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                sum_ = sample.value
    buckets.sort()
    values: dict[float, float | None] = {}
    capped: set[float] = set()
    for q in qs:
        values[q] = None
        if count <= 0 or not buckets:
            continue
        rank = q * count
        lower_bound, lower_count = 0.0, 0.0
        for bound, cumulative in buckets:
            if cumulative >= rank:
                if math.isinf(bound):
                    finite = [b for b, _ in buckets if not math.isinf(b)]
                    values[q] = finite[-1] if finite else None
                    capped.add(q)
                elif cumulative == lower_count:
                    values[q] = bound
                else:
                    values[q] = lower_bound + (bound - lower_bound) * (rank - lower_count) / (cumulative - lower_count)
                break
            lower_bound, lower_count = bound, cumulative
    return Quantiles(int(count), sum_ / count if count else None, values, frozenset(capped))
