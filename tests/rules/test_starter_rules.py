"""The starter rules analysts copy: valid, and each segment both reachable and escapable on simulated journeys."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import orjson

from microseg.engine.tools.replay import replay
from microseg.engine.tools.simulator import simulate
from microseg.segments.predictive import load_default_model
from microseg.segments.step import Core
from microseg.segments.rulefiles import check_rules, load_rules
from microseg.segments.testing import parse_ts

STARTER = Path(__file__).parents[2] / "rules"


class _Counts:
    def __init__(self) -> None:
        self.moves: Counter[tuple[str, str]] = Counter()
        self.messages_sent: Counter[str] = Counter()

    def changes(self, records: list) -> None:
        for r in records:
            self.moves[(r["segment"], r["change"])] += 1
            if r["cause"] == "tick":
                self.moves[(r["segment"], r["change"] + " by time")] += 1

    def messages(self, records: list) -> None:
        for r in records:
            self.messages_sent[r["message"]] += 1

    def dead_letter(self, record: dict) -> None:
        raise AssertionError(f"simulated event rejected: {record['reason']}")


def test_starter_rules_pass_the_checker() -> None:
    assert check_rules(STARTER) == []
    ruleset = load_rules(STARTER)
    assert len(ruleset.segments) >= 25
    assert len(ruleset.dimensions) >= 4
    names = {s.id for s in ruleset.segments}
    for rfm in ("champions", "loyal", "potential_loyalist", "new", "promising", "need_attention",
                "about_to_sleep", "at_risk", "cant_lose_them", "hibernating", "lost"):
        assert f"rfm_{rfm}" in names


def test_no_starter_segment_is_always_empty_or_always_full() -> None:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    lines = [orjson.dumps(e) for e in simulate(200, 200, 5, start)]
    core = Core(load_rules(STARTER), load_default_model())
    counts = _Counts()
    stats, states = replay(lines, core, counts, until=parse_ts("2027-01-31T00:00:00Z"))
    population = Counter(s for state in states.values() for s in state.segments)
    for segment in core.ruleset.segments:
        entered = counts.moves[(segment.id, "entered")]
        exited = counts.moves[(segment.id, "exited")]
        assert entered > 0, f"{segment.id} is never entered"
        later = counts.moves[(segment.id, "entered by time")]
        assert exited > 0 or later > 0 or population[segment.id] < len(states), f"{segment.id} holds everyone, always"
    assert counts.moves[("micro", "moved")] > 0
    assert set(counts.messages_sent) == {m.id for m in core.ruleset.messages}
