"""Golden errors: every expression that must be refused, with ``line:col`` and the message."""

from __future__ import annotations

import pytest

from microseg.segments.language import Problem, RuleError, compile_expression, render_problem
from microseg.segments.ruleset import Origin

ORIGIN = Origin("e", 1, 1)

GOLDEN: list[tuple[str, str]] = [
    # names and functions
    ("sesions_30d > 1", "1:1: unknown field 'sesions_30d'; did you mean 'sessions_30d'?"),
    ("sessions_30d > 1 and foo", "1:22: unknown field 'foo'"),
    ("affinty('shoes') > 0", "1:1: unknown function 'affinty'; did you mean 'affinity'?"),
    ("__import__('os') > 0", "1:1: unknown function '__import__'"),
    ("affinity > 0", "1:1: 'affinity' is a function; call it as affinity(category)"),
    ("sessions_30d() > 0", "1:1: 'sessions_30d' is a field, not a function"),
    ("True", "1:1: unknown name 'True'; keywords are lower case: write 'true'"),
    # arity and argument types
    ("affinity() > 0", "1:1: affinity() takes exactly 1 argument (0 given)"),
    ("affinity('a', 'b') > 0", "1:1: affinity() takes exactly 1 argument (2 given)"),
    ("open_rate('a', 'b') > 0", "1:1: open_rate() takes 0 to 1 arguments (2 given)"),
    ("min(1) > 0", "1:1: min() takes at least 2 arguments (1 given)"),
    ("affinity(3) > 0", "1:10: argument 1 of affinity() (category) must be string, got number"),
    ("consented(true)", "1:11: argument 1 of consented() (channel) must be string, got bool"),
    ("min(1, 'a') > 0", "1:8: argument 2 of min() (b) must be number, got string"),
    ("coalesce(nps, 'x') == 1", "1:1: coalesce() arguments must all be of one kind, got number and string"),
    # comparisons
    ("sessions_30d == 'x'", "1:14: cannot compare number with string using '=='"),
    ("'a' < 1", "1:5: cannot compare string with number using '<'"),
    ("true < false", "1:6: true/false cannot be ordered with '<'; use == or !="),
    ("nps == null", "1:5: comparing with null always gives null; write 'is null'"),
    ("nps != null", "1:5: comparing with null always gives null; write 'is not null'"),
    ("journey_stage == 'actve'", "1:18: 'actve' is not a possible journey_stage; did you mean 'active'?"),
    ("'lapsd' == journey_stage", "1:1: 'lapsd' is not a possible journey_stage; did you mean 'lapsed'?"),
    ("journey_stage in ['active', 'gone']", "1:29: 'gone' is not a possible journey_stage"),
    # arithmetic and logic
    ("top_category + 1 > 0", "1:1: '+' needs numbers, got string"),
    ("sessions_30d * true > 0", "1:16: '*' needs numbers, got bool"),
    ("-top_category == 'x'", "1:1: unary '-' needs a number, got string"),
    ("sessions_30d and true", "1:1: 'and' needs true or false on both sides, got number"),
    ("true or 'x'", "1:9: 'or' needs true or false on both sides, got string"),
    ("not nps", "1:5: 'not' needs true or false, got number"),
    # in
    ("sessions_30d in 5", "1:17: 'in' needs a list such as [1, 2] or ['a', 'b'], got number"),
    ("sessions_30d in [1, 'a']", "1:17: list mixes number and string items; use one kind"),
    ("sessions_30d in [1, null]", "1:21: a list cannot hold null; test with 'is null' instead"),
    ("sessions_30d in [1, nps]", "1:21: list items must be literal numbers, strings or true/false"),
    ("top_category in [1, 2]", "1:14: cannot look for a string in a list of numbers"),
    ("null in [1]", "1:6: looking for null in a list always gives null; write 'is null'"),
    ("[1, 2] == 1", "1:1: a list can only follow 'in' or 'not in'"),
    # not a condition
    ("sessions_30d", "1:1: a condition must be true or false, but this is number"),
    ("top_category", "1:1: a condition must be true or false, but this is string"),
    ("attr('vip')", "1:1: a condition must be true or false, but this is any; compare it, e.g. attr('vip') == true"),
    ("null", "1:1: a condition must be true or false, but this is null"),
    # syntax
    ("", "1:1: empty expression"),
    ("sessions_30d >", "1:15: unexpected end of expression; expected an expression"),
    ("a < b < c", "1:7: comparisons do not chain"),
    ("sessions_30d = 1", "1:14: use '==' to compare"),
    ("sessions_30d > 1 && true", "1:18: use 'and'"),
    ("!true", "1:1: use 'not' to negate"),
    ("x ** 2", "1:3: '**' is not supported: there is no power operator"),
    ("2**999999", "1:2: '**' is not supported"),
    ("a.__class__", "1:2: attribute access ('.') is not allowed"),
    ("().__class__", "1:2: unexpected ')'; expected an expression"),
    ("a[0]", "1:2: indexing ('[') is not allowed"),
    ("lambda: 1", "1:7: ':' is not part of the rule language"),
    ("[x for x in y]", "1:4: 'for' is not part of the rule language"),
    ("__import__('os').system('x')", "1:17: attribute access ('.') is not allowed"),
    ("f(1)(2)", "1:5: only registry functions can be called"),
    ("'abc", "1:1: unterminated string"),
    ("x > .5", "1:5: write numbers with a leading digit, e.g. 0.5"),
    ("'\\q' == 'a'", "1:2: unknown escape '\\q' in string"),
    ("1e999 > 1", "1:1: number 1e999 is out of range"),
    ("{'a': 1}", "1:1: '{' is not part of the rule language"),
    ("sessions_30d > 1; true", "1:17: one expression per rule"),
    # positions on later lines
    ("sessions_30d > 1 and\n  nps > 'x'", "2:7: cannot compare number with string using '>'"),
    ("true and\n\n  bogus", "3:3: unknown field 'bogus'"),
]


@pytest.mark.parametrize(("text", "expected"), GOLDEN, ids=[g[0] or "<empty>" for g in GOLDEN])
def test_refused_with_position(text: str, expected: str) -> None:
    with pytest.raises(RuleError) as info:
        compile_expression(text, origin=ORIGIN)
    rendered = [str(p).removeprefix("e:") for p in info.value.problems]
    assert any(r.startswith(expected) for r in rendered), rendered


def test_all_problems_are_reported_in_order() -> None:
    with pytest.raises(RuleError) as info:
        compile_expression("foo > 1 and bar == 'x' and sessions_30d == 'y'", origin=ORIGIN)
    cols = [p.col for p in info.value.problems]
    assert cols == sorted(cols) and len(cols) == 3


def test_origin_offsets_first_line_only() -> None:
    origin = Origin("rules/a.yaml", 10, 11)
    with pytest.raises(RuleError) as info:
        compile_expression("nope > 1 and\n  bad > 2", origin=origin)
    assert [str(p) for p in info.value.problems] == [
        "rules/a.yaml:10:11: unknown field 'nope'",
        "rules/a.yaml:11:3: unknown field 'bad'",
    ]


def test_custom_locator_is_used() -> None:
    with pytest.raises(RuleError) as info:
        compile_expression("nope > 1", origin=ORIGIN, locate=lambda offset: (7, 100 + offset))
    assert info.value.problems[0] == Problem("e", 7, 100, "unknown field 'nope'")


def test_problem_str_and_render() -> None:
    problem = Problem("rules/a.yaml", 2, 8, "unknown field 'x'")
    assert str(problem) == "rules/a.yaml:2:8: unknown field 'x'"
    assert str(Problem("rules", 0, 0, "rules directory not found")) == "rules: rules directory not found"
    source = "version: 1\n\twhen: x > 1\n"
    assert render_problem(problem, source).splitlines() == [
        "rules/a.yaml:2:8: unknown field 'x'",
        "    \twhen: x > 1",
        "    \t      ^",
    ]
    assert render_problem(Problem("/nonexistent/file.yaml", 1, 1, "m")) == "/nonexistent/file.yaml:1:1: m"


def test_rule_error_message_lists_problems() -> None:
    error = RuleError([Problem("a", 1, 1, "one"), Problem("a", 2, 1, "two")])
    assert str(error) == "a:1:1: one\na:2:1: two"
