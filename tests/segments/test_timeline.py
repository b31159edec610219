"""The timeline wakes a customer only when time alone can flip something a rule reads."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path

import orjson

from microseg.engine.tools.replay import replay
from microseg.engine.tools.simulator import simulate
from microseg.engine.tools.sinks import ListSink
from microseg.segments.rulefiles import load_rules
from microseg.segments.step import Core
from microseg.segments.testing import Journey
from microseg.segments.timeline import _crossing_days

STARTER = Path(__file__).parents[2] / "rules"


def test_a_counter_flips_on_the_first_whole_day_past_its_threshold() -> None:
    assert _crossing_days([(">", 30.0)]) == (31,)
    assert _crossing_days([("<=", 30.0)]) == (31,)
    assert _crossing_days([(">=", 30.0), ("<", 7.5)]) == (8, 30)
    assert _crossing_days([(">", 2.5)]) == (3,)
    assert _crossing_days([("==", 3.0), ("!=", 0.0)]) == (0, 1, 3, 4)
    assert _crossing_days([("==", 2.5), (">", -3.0)]) == ()


def test_a_rule_on_days_since_is_woken_once_at_its_crossing() -> None:
    j = Journey("version: 1\nsegments:\n  - {id: quiet, when: days_since_last_purchase > 3}\n")
    j.send("c1", "purchase", "2026-03-01T10:00:00.000Z", order_id="o", amount=5.0)
    assert j.states["c1"].wake == j.states["c1"].dna.last_purchase + 4 * 86_400
    j.until("2026-03-20T00:00:00.000Z")
    assert j.moves("c1", "quiet") == [("entered", "2026-03-05T10:00:00.000Z", "tick")]
    assert j.states["c1"].wake is None


def test_a_day_leaving_a_window_wakes_only_if_it_counted_what_the_rules_read() -> None:
    j = Journey("version: 1\nsegments:\n  - {id: visitor, when: sessions_7d >= 1}\n")
    j.send("c1", "purchase", "2026-03-01T10:00:00.000Z", order_id="o", amount=5.0)
    assert j.states["c1"].wake is None  # a purchase-only day: nothing read leaves any window
    j.send("c1", "session_started", "2026-03-01T11:00:00.000Z", channel="web")
    assert j.states["c1"].wake == datetime(2026, 3, 8, tzinfo=timezone.utc).timestamp()
    j.until("2026-03-20T00:00:00.000Z")
    assert j.moves("c1", "visitor")[-1] == ("exited", "2026-03-08T00:00:00.000Z", "tick")


def test_cuts_on_a_day_counter_wake_at_the_cuts_only() -> None:
    rules = (
        "version: 1\nmicrosegments:\n  dimensions:\n"
        "    - {name: recency, of: days_since_last_purchase, cuts: [7, 30], labels: [recent, cooling, gone]}\n"
    )
    j = Journey(rules)
    j.send("c1", "purchase", "2026-03-01T10:00:00.000Z", order_id="o", amount=5.0)
    assert j.states["c1"].wake == j.states["c1"].dna.last_purchase + 7 * 86_400
    j.until("2026-05-01T00:00:00.000Z")
    moves = j.moves("c1", "micro")
    assert [at for _, at, _ in moves] == ["2026-03-01T10:00:00.000Z", "2026-03-08T10:00:00.000Z", "2026-03-31T10:00:00.000Z"]
    assert [cause for _, _, cause in moves[1:]] == ["tick", "tick"]


def test_the_optimised_schedule_gives_what_a_daily_schedule_gives() -> None:
    """Reference: every day counter woken every day, every day with counts an expiry."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    lines = [orjson.dumps(e) for e in simulate(60, 50, 5, start)]
    fast = Core(load_rules(STARTER))
    slow = Core(fast.ruleset)
    slow.dependence = dataclasses.replace(
        fast.dependence, counters=tuple((name, None, since) for name, _, since in fast.dependence.counters), span_metrics=()
    )
    until = datetime(2026, 4, 1, tzinfo=timezone.utc).timestamp()
    got, expected = ListSink(), ListSink()
    replay(lines, fast, got, until=until)
    replay(lines, slow, expected, until=until)
    assert got.change_records == expected.change_records
    assert got.message_records == expected.message_records
