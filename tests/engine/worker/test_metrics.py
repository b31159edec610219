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


def test_the_crossing_gauge_counts_histories_solved_by_the_core() -> None:
    from prometheus_client import generate_latest

    from microseg.engine.tools.replay import replay
    from microseg.engine.tools.sinks import ListSink
    from microseg.engine.worker.metrics import Metrics
    from microseg.segments.predictive import load_default_model
    from microseg.segments.step import Core
    from microseg.segments.testing import event_bytes, load_rules_text

    rules = load_rules_text("version: 1\nsegments:\n  - id: fading\n    when: p_alive < 0.5\n")
    core = Core(rules, load_default_model())
    lines = [event_bytes(f"c{i}", "purchase", f"2026-01-0{1 + i}T10:00:00Z", order_id=f"o{i}", amount=20) + b"\n" for i in range(3)]
    replay(lines, core, ListSink(), now=float("inf"))
    stats = core.dependence.crossings.stats()
    assert stats["solved"] >= 3
    metrics = Metrics()
    metrics.observe_crossings(stats)
    text = generate_latest(metrics.registry).decode()
    assert f'microseg_crossing_histories{{outcome="solved"}} {float(stats["solved"])}' in text
    assert f'microseg_crossing_histories{{outcome="daily"}} {float(stats["daily"])}' in text
