"""``observe_many`` leaves a histogram exactly as one ``observe`` per value would."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from microseg.engine.worker.metrics import _LATENCY_BUCKETS, observe_many


def _samples(histogram: Histogram) -> dict[str, float]:
    return {f"{s.name}{sorted(s.labels.items())}": s.value for metric in histogram.collect() for s in metric.samples if not s.name.endswith("_created")}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e5, allow_nan=False) | st.sampled_from(_LATENCY_BUCKETS), max_size=60))
def test_observe_many_matches_observe(values: list[float]) -> None:
    one, many = (Histogram("h", "h", buckets=_LATENCY_BUCKETS, registry=CollectorRegistry()) for _ in range(2))
    for value in values:
        one.observe(value)
    observe_many(many, values)
    expected, got = _samples(one), _samples(many)
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        assert math.isclose(got[name], value, rel_tol=1e-9, abs_tol=1e-9), name
