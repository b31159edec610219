"""The customer step: exact entry/exit instants, time-based exits, and the equivalences the
worker relies on (incremental = full evaluation; a clock tick = waiting for the next event)."""

from __future__ import annotations

import math

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from microseg.engine.tools.replay import replay
from microseg.engine.tools.simulator import simulate
from microseg.engine.tools.sinks import ListSink
from microseg.schemas.outputs import NextBestMessage, SegmentChange
from microseg.segments.predictive import load_default_model
from microseg.segments.step import Core
from microseg.segments.rulefiles import load_rules
from microseg.segments.testing import Journey, parse_ts

RULES = """
version: 1
segments:
  - id: active_7d
    description: visited in the last 7 days
    when: sessions_7d >= 1
  - id: lapsed_high_value
    description: spent a lot, then went quiet
    when: spend_total >= 500 and days_since_last_activity > 45
  - id: cart_abandoner
    description: left a cart
    when: carts_abandoned_30d >= 1 and coalesce(days_since_last_purchase, 9999) > 3
microsegments:
  dimensions:
    - name: value
      of: spend_total
      cuts: [100, 500]
      labels: [low, mid, high]
messages:
  - id: winback
    segments: [lapsed_high_value]
    channel: email
    priority: 50
    cooldown: 14d
    holdout: 0
contact_policy:
  caps: {per_day: 1, per_week: 3}
  quiet_hours: {start: "21:00", end: "08:00"}
"""

STARTER = Path(__file__).parents[2] / "rules"


def test_active_exit_happens_by_time_alone_at_utc_midnight() -> None:
    j = Journey(RULES)
    j.send("c1", "session_started", "2026-03-02T10:00:00.000Z", event_id="e1", channel="web")
    assert j.moves("c1", "active_7d") == [("entered", "2026-03-02T10:00:00.000Z", "e1")]
    j.until("2026-03-20T00:00:00.000Z")
    assert j.moves("c1", "active_7d")[-1] == ("exited", "2026-03-09T00:00:00.000Z", "tick")


def test_lapsed_high_value_entry_instant_and_message() -> None:
    j = Journey(RULES)
    j.send("c1", "consent_changed", "2026-01-01T09:00:00.000Z", props={"channel": "email", "granted": True})
    j.send("c1", "purchase", "2026-01-01T10:00:00.000Z", event_id="p1", order_id="o1", amount=600.0)
    j.until("2026-03-01T00:00:00.000Z")
    assert j.entered("c1", "lapsed_high_value") == "2026-02-16T10:00:00.000Z"
    assert [m["message"] for m in j.messages] == ["winback"]
    message = j.messages[0]
    assert message["send_at"] == "2026-02-16T10:00:00.000Z"
    assert message["cause"] == "tick"
    j.send("c1", "session_started", "2026-03-01T12:00:00.000Z", event_id="s1", channel="web")
    assert j.exited("c1", "lapsed_high_value") == "2026-03-01T12:00:00.000Z"


def test_quiet_hours_defer_and_consent_suppresses() -> None:
    j = Journey(RULES)
    j.send("c1", "profile_updated", "2026-01-01T00:00:00.000Z", timezone="Europe/Paris")
    j.send("c1", "consent_changed", "2026-01-01T00:00:00.000Z", props={"channel": "email", "granted": True})
    j.send("c1", "purchase", "2026-01-01T21:30:00.000Z", order_id="o1", amount=600.0)
    j.send("c2", "purchase", "2026-01-01T10:00:00.000Z", order_id="o2", amount=600.0)
    j.until("2026-03-01T00:00:00.000Z")
    (sent,) = j.messages
    assert sent["customer_id"] == "c1"
    assert sent["at"] == "2026-02-16T21:30:00.000Z"
    assert sent["send_at"] == "2026-02-17T07:00:00.000Z", "08:00 in Paris"
    assert [(s["customer_id"], s["reason"]) for s in j.suppressed] == [("c2", "consent")]
    assert [h[1:] for h in j.states["c2"].held] == [["winback", "consent"]], "kept for explain"


def test_cart_abandoned_one_hour_after_the_last_cart_event() -> None:
    j = Journey(RULES)
    j.send("c1", "cart_updated", "2026-01-05T10:00:00.000Z", product_id="p", category="shoes", quantity=1, cart_value=90.0)
    j.send("c1", "cart_updated", "2026-01-05T10:20:00.000Z", product_id="p", category="shoes", quantity=2, cart_value=180.0)
    j.until("2026-01-05T12:00:00.000Z")
    assert j.entered("c1", "cart_abandoner") == "2026-01-05T11:20:00.000Z"
    j.until("2026-02-10T00:00:00.000Z")
    assert j.exited("c1", "cart_abandoner") == "2026-02-04T00:00:00.000Z"


def test_micro_moves_and_erasure() -> None:
    j = Journey(RULES)
    j.send("c1", "purchase", "2026-01-01T10:00:00.000Z", event_id="p1", order_id="o1", amount=50.0)
    j.send("c1", "purchase", "2026-01-02T10:00:00.000Z", event_id="p2", order_id="o2", amount=100.0)
    micro = [(c["from"], c["to"], c["cause"]) for c in j.changes if c["segment"] == "micro"]
    assert micro == [(None, "low", "p1"), ("low", "mid", "p2")]
    j.send("c1", "erasure_requested", "2026-01-03T00:00:00.000Z", event_id="x1")
    assert j.changes[-1]["to"] is None and j.changes[-1]["cause"] == "x1"
    forgotten = j.states["c1"]
    assert forgotten.erased and forgotten.dna.purchases_total == 0 and forgotten.segments == ()
    before = len(j.changes)
    j.send("c1", "purchase", "2026-01-04T10:00:00.000Z", event_id="p3", order_id="o3", amount=900.0)
    j.until("2026-06-01T00:00:00.000Z")
    assert len(j.changes) == before and j.messages == [], "nothing about an erased customer, ever again"


def test_records_match_the_published_schemas() -> None:
    j = Journey(RULES)
    j.send("c1", "consent_changed", "2026-01-01T09:00:00.000Z", props={"channel": "email", "granted": True})
    j.send("c1", "purchase", "2026-01-01T10:00:00.000Z", order_id="o1", amount=600.0)
    j.until("2026-03-01T00:00:00.000Z")
    for change in j.changes:
        SegmentChange.model_validate(change)
    assert j.messages
    for message in j.messages:
        NextBestMessage.model_validate(message)


def test_change_ids_are_deterministic_and_unique() -> None:
    def run() -> list[str]:
        j = Journey(RULES)
        j.send("c1", "session_started", "2026-03-02T10:00:00.000Z", event_id="e1", channel="web")
        j.send("c1", "purchase", "2026-03-02T10:05:00.000Z", event_id="e2", order_id="o", amount=700.0)
        j.until("2026-06-01T00:00:00.000Z")
        return [c["change_id"] for c in j.changes]

    first = run()
    assert first == run()
    assert len(set(first)) == len(first)


def test_duplicate_event_is_not_counted_twice() -> None:
    j = Journey(RULES)
    j.send("c1", "purchase", "2026-01-01T10:00:00.000Z", event_id="p1", order_id="o1", amount=300.0)
    j.send("c1", "purchase", "2026-01-01T10:00:00.000Z", event_id="p1", order_id="o1", amount=300.0)
    assert j.core.view(j.states["c1"].dna, parse_ts("2026-01-02T00:00:00.000Z"))["spend_total"] == 300.0


def _simulated(customers: int, days: int, seed: int) -> list[bytes]:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return [orjson.dumps(e) for e in simulate(customers, days, seed, start)]


@pytest.fixture(scope="module")
def journeys() -> list[bytes]:
    return _simulated(80, 60, 11)


@pytest.fixture(scope="module")
def starter_core() -> Core:
    return Core(load_rules(STARTER), load_default_model())


def test_incremental_evaluation_equals_full_evaluation(journeys: list[bytes], starter_core: Core) -> None:
    fast, slow = ListSink(), ListSink()
    replay(journeys, starter_core, fast, now=math.inf)
    replay(journeys, Core(starter_core.ruleset, starter_core.model, incremental=False), slow, now=math.inf)
    assert fast.change_records == slow.change_records
    assert fast.message_records == slow.message_records


def test_ticking_often_gives_the_same_changes_as_waiting_for_events(journeys: list[bytes], starter_core: Core) -> None:
    """Worker clocks tick at arbitrary moments; the emitted changes must not depend on when."""
    decode = starter_core.ruleset.catalog.decode  # the starter rules declare props of their own
    last = max(decode(raw).t for raw in journeys)
    lazy = ListSink()
    replay(journeys, starter_core, lazy, until=last, now=math.inf)
    eager = ListSink()
    ticking: dict = {}
    for raw in journeys:
        event = decode(raw)
        for customer_id in list(ticking):
            result = starter_core.advance(customer_id, ticking[customer_id], event.t, inclusive=False)
            ticking[customer_id] = result.state
            eager.changes(result.changes)
            eager.messages(result.messages)
        result = starter_core.on_event(ticking.get(event.customer_id), event)
        ticking[event.customer_id] = result.state
        eager.changes(result.changes)
        eager.messages(result.messages)
    for customer_id in sorted(ticking):
        result = starter_core.advance(customer_id, ticking[customer_id], last)
        eager.changes(result.changes)
        eager.messages(result.messages)
    key = lambda r: r.get("change_id") or r.get("decision_id")  # noqa: E731
    assert sorted(map(key, eager.change_records)) == sorted(map(key, lazy.change_records))
    assert sorted(map(key, eager.message_records)) == sorted(map(key, lazy.message_records))


def test_state_round_trip_does_not_change_the_outcome(journeys: list[bytes], starter_core: Core) -> None:
    from microseg.segments.state import decode, encode

    direct = ListSink()
    replay(journeys, starter_core, direct, now=math.inf)
    through_bytes = ListSink()
    states: dict = {}
    for raw in journeys:
        event = starter_core.ruleset.catalog.decode(raw)
        previous = states.get(event.customer_id)
        result = starter_core.on_event(None if previous is None else decode(previous), event)
        if not result.duplicate:
            states[event.customer_id] = encode(result.state)
        through_bytes.changes(result.changes)
        through_bytes.messages(result.messages)
    assert through_bytes.change_records == direct.change_records
    assert through_bytes.message_records == direct.message_records


def test_quiet_hours_can_suppress_instead_of_defer() -> None:
    rules = RULES.replace('quiet_hours: {start: "21:00", end: "08:00"}', 'quiet_hours: {start: "21:00", end: "08:00", action: suppress}')
    j = Journey(rules)
    j.send("c1", "consent_changed", "2026-01-01T00:00:00.000Z", props={"channel": "email", "granted": True})
    j.send("c1", "purchase", "2026-01-01T22:00:00.000Z", order_id="o1", amount=600.0)
    j.until("2026-03-01T00:00:00.000Z")
    assert j.messages == []
    assert [s["reason"] for s in j.suppressed] == ["quiet"]


def test_next_wake_is_the_earliest_pending_instant(journeys: list[bytes], starter_core: Core) -> None:
    from microseg.segments.timeline import _instants, next_wake

    _, states = replay(journeys, starter_core, ListSink())
    dep = starter_core.dependence
    checked = 0
    for state in states.values():
        for now in (state.evaluated_at, state.evaluated_at + 3 * 86_400, state.evaluated_at + 45 * 86_400):
            found = _instants(dep, state.dna, now, True)
            assert next_wake(dep, state.dna, now, has_model=True) == (min(at for at, _ in found) if found else None)
            checked += 1
    assert checked > 100


def test_predictive_rules_work_in_replay() -> None:
    rules = """
version: 1
segments:
  - id: valuable_but_fading
    description: probably gone, but worth winning back
    when: p_alive < 0.3 and clv_12m > 200
  - id: scored
    description: has a model score
    when: p_alive is not null
"""
    j = Journey(rules, load_default_model())
    for day, amount in enumerate([400.0, 350.0, 500.0, 450.0, 420.0, 380.0]):
        j.send("c1", "purchase", f"2026-01-{1 + 3 * day:02d}T10:00:00.000Z", order_id=f"o{day}", amount=amount)
    assert j.segments("c1") == ("scored",)
    view = j.core.view(j.states["c1"].dna, parse_ts("2026-01-16T10:00:00.000Z"))
    assert 0.9 < view["p_alive"] <= 1.0 and view["clv_12m"] > 200
    assert abs(view["churn_risk"] - (1 - view["p_alive"])) < 1e-12
    j.until("2026-12-31T00:00:00.000Z")
    moves = j.moves("c1", "valuable_but_fading")
    assert moves and moves[0][0] == "entered" and moves[0][2] == "tick", "entered by time alone"
    entered = moves[0][1]
    assert "2026-01-17" < entered < "2026-12-31"
    late = j.core.view(j.states["c1"].dna, parse_ts(entered))
    assert late["p_alive"] < 0.3


def test_without_a_model_predictive_fields_are_null_and_rules_still_load() -> None:
    j = Journey("version: 1\nsegments:\n  - id: fading\n    description: x\n    when: p_alive < 0.3\n")
    j.send("c1", "purchase", "2026-01-01T10:00:00.000Z", order_id="o", amount=10.0)
    assert j.core.view(j.states["c1"].dna, parse_ts("2026-06-01T00:00:00.000Z"))["p_alive"] is None
    j.until("2027-01-01T00:00:00.000Z")
    assert j.segments("c1") == ()


def test_open_cart_value_ends_when_the_cart_is_abandoned() -> None:
    j = Journey("version: 1\nsegments:\n  - id: big_open_cart\n    description: x\n    when: coalesce(open_cart_value, 0) > 150\n")
    j.send("c1", "cart_updated", "2026-01-05T10:00:00.000Z", product_id="p", category="shoes", quantity=1, cart_value=200.0)
    j.until("2026-01-06T00:00:00.000Z")
    assert j.moves("c1", "big_open_cart")[-1] == ("exited", "2026-01-05T11:00:00.000Z", "tick")


def test_profile_attributes_of_mixed_types_stay_bounded() -> None:
    j = Journey("version: 1\nsegments:\n  - id: gold\n    description: x\n    when: attr('tier') == 'gold'\n")
    for i in range(40):
        value = [f"v{i}", i, None, True, 1.5][i % 5]
        j.send("c1", "profile_updated", f"2026-01-01T00:{i:02d}:00Z", attributes={f"k{i}": value})
    j.send("c1", "profile_updated", "2026-01-01T01:00:00.000Z", attributes={"tier": "gold"})
    assert j.segments("c1") == ("gold",)
    assert len(j.states["c1"].dna.attributes) <= 32


def test_memberships_after_advancing_equal_a_fresh_evaluation_at_any_instant(journeys: list[bytes], starter_core: Core) -> None:
    """No time-based change is missed: whatever the wake-up schedule skipped could not have changed."""
    from microseg.segments.evaluate import dna_code, evaluate_segments

    _, states = replay(journeys, starter_core, ListSink())
    ruleset = starter_core.ruleset
    probes = 0
    for customer_id, state in sorted(states.items()):
        start = state.evaluated_at
        for step in range(1, 160):
            at = start + step * 13_333.0
            state = starter_core.advance(customer_id, state, at).state
            view = starter_core.view(state.dna, at)
            assert state.segments == evaluate_segments(ruleset, view), (customer_id, at)
            assert state.code == dna_code(ruleset, view), (customer_id, at)
            probes += 1
    assert probes > 10_000


def test_money_boundaries_hold_in_rules() -> None:
    """Issue 12: three purchases of 0.10 kept avg_order_value at 0.09999999999999999, so a customer
    who is exactly at the boundary left `avg_order_value >= 0.1`; 12.11 + 19.99 + 17.90 is 50."""
    j = Journey(
        "version: 1\nsegments:\n"
        "  - id: small_spender\n    description: x\n    when: avg_order_value >= 0.1\n"
        "  - id: fifty\n    description: x\n    when: spend_30d >= 50 and spend_total >= 50\n"
    )
    for i in range(3):
        j.send("c1", "purchase", f"2026-01-01T10:0{i}:00Z", order_id=f"o{i}", amount=0.10)
    assert j.moves("c1", "small_spender") == [("entered", "2026-01-01T10:00:00.000Z", j.changes[0]["cause"])]
    for i, amount in enumerate((12.11, 19.99, 17.90)):
        j.send("c2", "purchase", f"2026-01-01T11:0{i}:00Z", order_id=f"p{i}", amount=amount)
    assert j.entered("c2", "fifty") == "2026-01-01T11:02:00.000Z"
