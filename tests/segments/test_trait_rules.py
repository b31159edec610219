"""Computed traits and custom event types as analysts write them: rule files through the pipeline."""

from __future__ import annotations

import pytest

from microseg.segments.language import RuleError
from microseg.segments.testing import Journey, load_rules_text

RULES = """
version: 1
events:
  - type: trial_started
    description: A free trial began
    props:
      plan: string
      seats: number?
  - type: purchase
    props:
      coupon: string?
traits:
  - id: shoe_views_7d
    events: [product_viewed]
    where: prop('category') == 'shoes'
    aggregate: count
    window: 7d
  - id: app_sessions_6h
    events: [session_started]
    where: channel == 'app'
    aggregate: count
    window: 6h
  - id: coupon_spend_90d
    events: [purchase]
    where: prop('coupon') is not null
    aggregate: sum
    value: prop('amount')
    window: 90d
  - id: last_plan
    events: [trial_started]
    aggregate: last
    value: prop('plan')
  - id: categories_30d
    events: [product_viewed, cart_updated]
    aggregate: distinct_count
    value: prop('category')
    window: 30d
  - id: seats_avg
    events: [trial_started]
    aggregate: avg
    value: prop('seats')
segments:
  - id: shoe_intent
    when: shoe_views_7d >= 3 and purchases_30d == 0
  - id: app_burst
    when: app_sessions_6h >= 3
  - id: coupon_spender
    when: coupon_spend_90d >= 50
  - id: pro_trial
    when: last_plan == 'pro'
  - id: browser
    when: categories_30d >= 2
"""


def view(j: Journey, customer: str, category: str, ts: str) -> None:
    j.send(customer, "product_viewed", ts, product_id="p", category=category)


def test_count_over_days_enters_and_leaves_at_the_exact_midnight() -> None:
    j = Journey(RULES)
    for ts in ("2026-03-01T10:00:00.000Z", "2026-03-03T09:00:00.000Z", "2026-03-04T23:00:00.000Z"):
        view(j, "c1", "shoes", ts)
    view(j, "c1", "hats", "2026-03-05T08:00:00.000Z")
    assert j.entered("c1", "shoe_intent") == "2026-03-04T23:00:00.000Z"
    j.until("2026-03-10T00:00:00.000Z")
    assert j.moves("c1", "shoe_intent")[-1] == ("exited", "2026-03-08T00:00:00.000Z", "tick")
    assert j.value("c1", "shoe_views_7d", "2026-03-09T00:00:00.000Z") == 2


def test_hour_window_exit_is_on_the_hour_with_no_event() -> None:
    j = Journey(RULES)
    for ts in ("2026-03-01T10:15:00.000Z", "2026-03-01T11:40:00.000Z", "2026-03-01T12:05:00.000Z"):
        j.send("c1", "session_started", ts, channel="app")
    j.send("c1", "session_started", "2026-03-01T12:30:00.000Z", channel="web")
    assert j.entered("c1", "app_burst") == "2026-03-01T12:05:00.000Z"
    j.until("2026-03-02T00:00:00.000Z")
    assert j.moves("c1", "app_burst")[-1] == ("exited", "2026-03-01T16:00:00.000Z", "tick")


def test_money_sums_are_exact_and_where_filters() -> None:
    j = Journey(RULES)
    for i, amount in enumerate((12.11, 19.99, 17.90)):
        j.send("c1", "purchase", f"2026-03-0{i + 1}T10:00:00.000Z", order_id=f"o{i}", amount=amount, coupon="SPRING")
    j.send("c1", "purchase", "2026-03-04T10:00:00.000Z", order_id="o9", amount=500.0)
    assert j.value("c1", "coupon_spend_90d") == 50.0
    assert "coupon_spender" in j.segments("c1")
    j.until("2026-06-01T00:00:00.000Z")
    assert j.moves("c1", "coupon_spender")[-1] == ("exited", "2026-05-30T00:00:00.000Z", "tick")


def test_custom_event_feeds_a_lifetime_last_and_a_nullable_avg() -> None:
    j = Journey(RULES)
    j.send("c1", "trial_started", "2026-03-02T10:00:00.000Z", plan="pro")
    j.send("c1", "trial_started", "2026-03-01T10:00:00.000Z", plan="basic", seats=4)  # older: not the last
    assert j.value("c1", "last_plan") == "pro"
    assert j.value("c1", "seats_avg") == 4
    assert j.segments("c1") == ("pro_trial",)
    j.until("2027-03-01T00:00:00.000Z")
    assert j.segments("c1") == ("pro_trial",)


def test_a_bad_custom_event_is_a_dead_letter_naming_the_prop_and_the_rest_goes_on() -> None:
    j = Journey(RULES)
    j.send("c1", "trial_started", "2026-03-01T10:00:00.000Z", plan="pro", seats="four")
    j.send("c1", "trial_started", "2026-03-01T11:00:00.000Z", plan="pro")
    assert len(j.dead_letters) == 1 and "seats" in j.dead_letters[0]["reason"]
    assert j.segments("c1") == ("pro_trial",)


def test_duplicates_and_out_of_order_events_count_once() -> None:
    j = Journey(RULES)
    view(j, "c1", "shoes", "2026-03-03T10:00:00.000Z")
    j.send("c1", "product_viewed", "2026-03-03T10:00:00.000Z", event_id="dup", product_id="p", category="shoes")
    j.send("c1", "product_viewed", "2026-03-03T10:00:00.000Z", event_id="dup", product_id="p", category="shoes")
    view(j, "c1", "shoes", "2026-03-01T10:00:00.000Z")
    assert j.value("c1", "shoe_views_7d") == 3
    assert j.entered("c1", "shoe_intent") == "2026-03-03T10:00:00.000Z"


def test_distinct_over_two_types_and_incremental_evaluation_skips_unrelated_rules() -> None:
    j = Journey(RULES)
    view(j, "c1", "shoes", "2026-03-01T10:00:00.000Z")
    j.send("c1", "cart_updated", "2026-03-01T11:00:00.000Z", product_id="p", category="hats", quantity=1, cart_value=10.0)
    assert "browser" in j.segments("c1")
    touched = j.core.registry.touches
    assert "categories_30d" in touched["cart_updated"] and "shoe_views_7d" not in touched["cart_updated"]
    assert touched["trial_started"] == frozenset({"last_plan", "seats_avg"})


@pytest.mark.parametrize(
    ("trait", "message"),
    [
        ("{id: spend_30d, events: [purchase], aggregate: count}", "built-in DNA field"),
        ("{id: t1, events: [purchase], aggregate: sum, value: prop('order_id')}", "needs a number value, got string"),
        ("{id: t1, events: [purchase], aggregate: count, window: 401d}", "1..400"),
        ("{id: t1, events: [purchase], aggregate: count, window: 169h}", "1..168"),
        ("{id: t1, events: [purchase], aggregate: last, value: prop('__class__')}", "unknown prop '__class__'"),
        ("{id: t1, events: [purchase, refund], aggregate: last, value: prop('coupon')}", "declared by purchase but not by refund"),
        ("{id: t1, events: [purchase], aggregate: sum}", "needs a 'value'"),
        ("{id: t1, events: [purchse], aggregate: count}", "did you mean 'purchase'"),
        ("{id: t1, events: [purchase], aggregate: count, where: spend_30d > 1}", "'spend_30d' is a DNA field; here only the event can be read"),
        ("{id: t1, events: [purchase], aggregate: count, where: " + "(" * 80 + "true" + ")" * 80 + "}", "nest"),
    ],
)
def test_hostile_or_wrong_traits_are_refused_at_their_place(trait: str, message: str) -> None:
    text = f"version: 1\nevents:\n  - {{type: purchase, props: {{coupon: 'string?'}}}}\ntraits:\n  - {trait}\n"
    with pytest.raises(RuleError) as caught:
        load_rules_text(text)
    problems = caught.value.problems
    assert any(message in p.message for p in problems), problems
    assert all(p.line == 5 for p in problems), problems


def test_a_segment_may_read_a_trait_declared_in_another_file() -> None:
    from microseg.segments.rulefiles import compile_rule_texts

    traits = "version: 1\ntraits:\n  - {id: views_7d, events: [product_viewed], aggregate: count, window: 7d}\n"
    segments = "version: 1\nsegments:\n  - {id: browsing, when: views_7d >= 2}\n"
    j = Journey(compile_rule_texts({"b_segments.yaml": segments, "a_traits.yaml": traits}))
    view(j, "c1", "shoes", "2026-03-01T10:00:00.000Z")
    view(j, "c1", "hats", "2026-03-01T11:00:00.000Z")
    assert j.segments("c1") == ("browsing",)


@pytest.mark.parametrize(
    ("aggregate", "value", "condition", "exit_at"),
    [
        ("count", None, ">= 2", "2026-03-03T00:00:00.000Z"),
        ("sum", "prop('price')", ">= 30", "2026-03-03T00:00:00.000Z"),
        ("avg", "prop('price')", ">= 15", "2026-03-04T00:00:00.000Z"),
        ("min", "prop('price')", "<= 10", "2026-03-03T00:00:00.000Z"),
        ("max", "prop('price')", ">= 20", "2026-03-04T00:00:00.000Z"),
        ("distinct_count", "prop('category')", ">= 2", "2026-03-03T00:00:00.000Z"),
        ("first", "prop('category')", "== 'hats'", "2026-03-03T00:00:00.000Z"),
        ("last", "prop('category')", "== 'shoes'", "2026-03-04T00:00:00.000Z"),
        ("most_frequent", "prop('category')", "== 'hats'", "2026-03-03T00:00:00.000Z"),
    ],
)
def test_every_aggregate_leaves_its_two_day_window_at_midnight_by_a_tick(aggregate: str, value: str | None, condition: str, exit_at: str) -> None:
    """hats at 10.00 on 03-01, shoes at 20.00 on 03-02: a 2d window drops the first at 03-03T00:00Z
    and the second at 03-04T00:00Z; the segment leaves at whichever instant makes it false."""
    value_line = f", value: \"{value}\"" if value else ""
    rules = (
        "version: 1\ntraits:\n"
        f"  - {{id: t, events: [product_viewed], aggregate: {aggregate}{value_line}, window: 2d}}\n"
        f"segments:\n  - {{id: s, when: \"t {condition}\"}}\n"
    )
    j = Journey(rules)
    j.send("c1", "product_viewed", "2026-03-01T10:00:00.000Z", product_id="p", category="hats", price=10.0)
    j.send("c1", "product_viewed", "2026-03-02T20:00:00.000Z", product_id="p", category="shoes", price=20.0)
    assert j.segments("c1") == ("s",)
    j.until("2026-03-10T00:00:00.000Z")
    assert j.moves("c1", "s")[-1] == ("exited", exit_at, "tick")


def test_an_unquoted_optional_type_in_a_one_line_mapping_gets_a_hint() -> None:
    with pytest.raises(RuleError) as caught:
        load_rules_text("version: 1\nevents:\n  - {type: trial_started, props: {seats: number?}}\n")
    (problem,) = caught.value.problems
    assert problem.line == 3 and "quote values" in problem.message and "'number?'" in problem.message
