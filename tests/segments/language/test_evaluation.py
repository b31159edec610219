"""The language as data: (expression, DNA overrides, expected value) rows, CONTRACT §3."""

from __future__ import annotations

from typing import Any

import pytest

from _fake import FakeCtx, base_values
from microseg.segments.language import compile_expression
from microseg.segments.ruleset import Origin

ORIGIN = Origin("test.yaml", 1, 1)

N = None
ROWS: list[tuple[str, dict[str, Any], Any]] = [
    # literals
    ("1", {}, 1),
    ("1.5", {}, 1.5),
    ("'it\\'s'", {}, "it's"),
    ('"double"', {}, "double"),
    ("true", {}, True),
    ("false", {}, False),
    ("null", {}, None),
    ("-3", {}, -3),
    # fields
    ("sessions_30d", {"sessions_30d": 4}, 4),
    ("top_category", {"top_category": "shoes"}, "shoes"),
    ("days_since_last_purchase", {}, None),
    # arithmetic and precedence
    ("1 + 2 * 3", {}, 7),
    ("(1 + 2) * 3", {}, 9),
    ("10 - 4 - 3", {}, 3),
    ("12 / 4 / 3", {}, 1.0),
    ("7 / 2", {}, 3.5),
    ("-sessions_30d + 1", {"sessions_30d": 4}, -3),
    ("- - 2", {}, 2),
    ("spend_total / sessions_30d", {"spend_total": 100, "sessions_30d": 0}, N),
    ("spend_total / 0.0", {"spend_total": 100}, N),
    ("avg_order_value * 2", {"avg_order_value": None}, N),
    ("-avg_order_value", {}, N),
    ("1 + null", {}, N),
    # comparison
    ("sessions_30d == 3", {"sessions_30d": 3}, True),
    ("sessions_30d != 3", {"sessions_30d": 3}, False),
    ("sessions_30d < 3", {"sessions_30d": 2}, True),
    ("sessions_30d <= 3", {"sessions_30d": 3}, True),
    ("sessions_30d > 3", {"sessions_30d": 3}, False),
    ("sessions_30d >= 3", {"sessions_30d": 3}, True),
    ("3 < sessions_30d", {"sessions_30d": 4}, True),
    ("3 >= sessions_30d", {"sessions_30d": 4}, False),
    ("sessions_30d + 1 > sessions_7d * 2", {"sessions_30d": 4, "sessions_7d": 2}, True),
    ("days_since_last_purchase > 3", {}, N),
    ("3 < days_since_last_purchase", {}, N),
    ("nps >= csat", {"nps": 9, "csat": None}, N),
    ("journey_stage == 'active'", {"journey_stage": "active"}, True),
    ("first_seen < '2024-02-01'", {"first_seen": "2024-01-31T09:00:00Z"}, True),
    ("1 == 1.0", {}, True),
    ("true == false", {}, False),
    # logic: three-valued
    ("true and false", {}, False),
    ("true or false", {}, True),
    ("not true", {}, False),
    ("nps > 5 and false", {}, False),
    ("nps > 5 and true", {}, N),
    ("false and nps > 5", {}, False),
    ("nps > 5 or true", {}, True),
    ("nps > 5 or false", {}, N),
    ("not nps > 5", {}, N),
    ("nps > 5 and nps > 6 and false", {}, False),
    ("nps > 5 or nps > 6 or true", {}, True),
    ("nps > 5 or nps > 6 or false", {}, N),
    ("true and true and true", {}, True),
    ("false or false or false", {}, False),
    # precedence of not / and / or vs comparison
    ("not sessions_30d > 3", {"sessions_30d": 5}, False),
    ("true or false and false", {}, True),
    ("(true or false) and false", {}, False),
    ("not false and false", {}, False),
    ("not (false and false)", {}, True),
    ("sessions_30d > 1 and sessions_30d < 10 or nps > 9", {"sessions_30d": 5}, True),
    # in / not in
    ("journey_stage in ['active', 'lapsed']", {"journey_stage": "lapsed"}, True),
    ("journey_stage not in ['active', 'lapsed']", {"journey_stage": "lapsed"}, False),
    ("sessions_30d in [1, 2, 3]", {"sessions_30d": 2}, True),
    ("sessions_30d in [1, 2.5]", {"sessions_30d": 3}, False),
    ("sessions_30d not in [1, 2, 3,]", {"sessions_30d": 5}, True),
    ("top_category in ['shoes']", {"top_category": None}, N),
    ("top_category not in ['shoes']", {"top_category": None}, N),
    ("sessions_30d + 1 in [3]", {"sessions_30d": 2}, True),
    ("sessions_30d in []", {"sessions_30d": 2}, False),
    ("sessions_30d not in []", {"sessions_30d": 2}, True),
    ("consented('email') in [true]", {}, True),
    # is null
    ("days_since_last_purchase is null", {}, True),
    ("days_since_last_purchase is not null", {}, False),
    ("days_since_last_purchase is null", {"days_since_last_purchase": 3}, False),
    ("nps + 1 is null", {}, True),
    ("spend_total / 0 is null", {}, True),
    ("null is null", {}, True),
    # functions
    ("affinity('shoes')", {}, 0.7),
    ("affinity('garden')", {}, 0.0),
    ("affinity(top_category) > 0.5", {"top_category": "shoes"}, True),
    ("affinity(top_category)", {"top_category": None}, N),
    ("consented('email')", {}, True),
    ("consented(preferred_channel)", {"preferred_channel": "sms"}, False),
    ("consented(preferred_channel)", {"preferred_channel": None}, N),
    ("unsubscribed('sms')", {}, True),
    ("open_rate()", {}, 0.5),
    ("open_rate('email')", {}, 0.25),
    ("open_rate('push') > 0.1", {}, N),
    ("click_rate() is null", {}, True),
    ("min(3, 1, 2)", {}, 1),
    ("max(3, 1.5)", {}, 3),
    ("min(nps, 5)", {"nps": None}, N),
    ("max(nps, 5)", {"nps": 7}, 7),
    ("abs(-4)", {}, 4),
    ("abs(nps)", {}, N),
    ("abs(nps - 9)", {"nps": 2}, 7),
    ("coalesce(nps, 0)", {}, 0),
    ("coalesce(nps, csat, 1)", {"csat": 4}, 4),
    ("coalesce(nps, csat)", {}, N),
    ("coalesce(days_since_last_purchase, 999) > 30", {}, True),
    ("coalesce(top_category, 'none')", {}, "none"),
    # attr(): type any, runtime mismatches give null
    ("attr('tier') == 'gold'", {}, True),
    ("attr('tier') != 'gold'", {}, False),
    ("attr('visits') > 3", {}, True),
    ("attr('visits') == 'five'", {}, N),
    ("attr('tier') < 3", {}, N),
    ("attr('vip') == true", {}, True),
    ("attr('vip') == 1", {}, N),
    ("attr('vip') > false", {}, N),
    ("attr('missing') == 'x'", {}, N),
    ("attr('tier') in ['gold', 'silver']", {}, True),
    ("attr('visits') in ['gold']", {}, N),
    ("attr('visits') + 1", {}, 6),
    ("attr('tier') + 1", {}, N),
    ("-attr('tier')", {}, N),
    ("attr('vip') and true", {}, True),
    ("attr('tier') and true", {}, N),
    ("not attr('tier')", {}, N),
    ("attr('tier') == attr('tier')", {}, True),
    ("attr('score') * 2 >= 5", {}, True),
    ("min(attr('visits'), 3)", {}, 3),
    ("min(attr('tier'), 3)", {}, N),
    ("coalesce(attr('missing'), 'x')", {}, "x"),
    # whitespace and line breaks
    ("sessions_30d >\n  3 and\n\tnps is null", {"sessions_30d": 4}, True),
]


@pytest.mark.parametrize(("text", "overrides", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_expression_evaluates_to_expected(text: str, overrides: dict[str, Any], expected: Any) -> None:
    expr = compile_expression(text, origin=ORIGIN, expect_bool=False)
    result = expr.fn(FakeCtx(base_values() | overrides))
    assert result == expected and type(result) is type(expected) or (
        isinstance(expected, (int, float)) and not isinstance(expected, bool) and result == expected and not isinstance(result, bool)
    )


META_ROWS: list[tuple[str, dict[str, set[float]], set[str], set[str], set[str]]] = [
    ("sessions_30d > 3", {"sessions_30d": {3.0}}, set(), {"sessions_30d"}, set()),
    ("3 <= sessions_30d and sessions_30d < 10", {"sessions_30d": {3.0, 10.0}}, set(), {"sessions_30d"}, set()),
    ("days_since_last_activity > -1", {"days_since_last_activity": {-1.0}}, set(), {"days_since_last_activity"}, set()),
    ("tenure_days in [30, 60]", {"tenure_days": {30.0, 60.0}}, set(), {"tenure_days"}, set()),
    ("tenure_days + 1 > 30", {}, {"tenure_days"}, {"tenure_days"}, set()),
    ("journey_stage == 'active'", {}, {"journey_stage"}, {"journey_stage"}, set()),
    ("affinity(top_category) > 0.5 and sessions_7d >= 2", {"sessions_7d": {2.0}}, {"top_category"}, {"top_category", "sessions_7d"}, {"affinity"}),
    ("coalesce(nps, 0) > 8 or nps > 9", {"nps": {8.0, 9.0}}, set(), {"nps"}, {"coalesce"}),
    ("coalesce(days_since_last_purchase, 9999) > 3", {"days_since_last_purchase": {3.0}}, set(), {"days_since_last_purchase"}, {"coalesce"}),
    ("coalesce(days_since_last_purchase, tenure_days) > 3", {}, {"days_since_last_purchase", "tenure_days"}, {"days_since_last_purchase", "tenure_days"}, {"coalesce"}),
    ("coalesce(nps, 0) + 1 > 8", {}, {"nps"}, {"nps"}, {"coalesce"}),
    ("days_since_last_purchase is null", {}, {"days_since_last_purchase"}, {"days_since_last_purchase"}, set()),
]


@pytest.mark.parametrize(("text", "thresholds", "opaque", "fields", "functions"), META_ROWS, ids=[r[0] for r in META_ROWS])
def test_expression_metadata(text: str, thresholds: dict[str, set[float]], opaque: set[str], fields: set[str], functions: set[str]) -> None:
    expr = compile_expression(text, origin=ORIGIN)
    assert {k: set(v) for k, v in expr.thresholds.items()} == thresholds
    assert set(expr.opaque) == opaque
    assert set(expr.fields) == fields
    assert set(expr.functions) == functions


def test_expr_keeps_source_origin_and_type() -> None:
    expr = compile_expression("nps > 5", origin=ORIGIN)
    assert expr.source == "nps > 5" and expr.origin == ORIGIN
    assert str(expr.type) == "bool?"
    assert str(compile_expression("sessions_30d > 5", origin=ORIGIN).type) == "bool"
    assert str(compile_expression("coalesce(nps, 0)", origin=ORIGIN, expect_bool=False).type) == "number"


def test_field_vs_constant_stays_fast() -> None:
    """A loose guard against de-specialisation; the real numbers are in docs/rule-language.md."""
    import timeit

    expr = compile_expression("sessions_30d >= 3 and days_since_last_purchase > 7", origin=ORIGIN)
    ctx = FakeCtx(base_values() | {"sessions_30d": 5, "days_since_last_purchase": 10})
    per_call = min(timeit.repeat(lambda: expr.fn(ctx), number=20_000, repeat=3)) / 20_000
    assert per_call < 5e-6
