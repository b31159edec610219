"""Keywords are whole words and never names: ``orders_total`` is one name (not ``or ders_total``),
and ``a and and b`` is refused at the second ``and`` (issue 18), in the expression and in a rule file."""

from __future__ import annotations

from pathlib import Path

import pytest

from microseg.segments.language import RuleError, compile_expression, render_problem
from microseg.segments.language.parser import Logic, Name, parse
from microseg.segments.rulefiles import check_rules
from microseg.segments.ruleset import Origin

ORIGIN = Origin("e", 1, 1)


def _names(node: object) -> list[str]:
    if isinstance(node, Name):
        return [node.name]
    found: list[str] = []
    for value in getattr(node, "__slots__", ()):
        child = getattr(node, value)
        for item in child if isinstance(child, tuple) else (child,):
            found += _names(item)
    return found


@pytest.mark.parametrize("name", ["orders_total", "order", "android", "notes", "not_yet", "inbox", "in_cart", "is_vip", "island", "nullable", "trueish", "falsey", "andy"])
def test_names_that_start_with_a_keyword_are_names(name: str) -> None:
    node = parse(f"{name} and {name}")
    assert isinstance(node, Logic) and _names(node) == [name, name]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sessions_30d > 1 and and sessions_7d > 0", "1:22: unexpected 'and'; expected an expression"),
        ("sessions_30d > 1 or or true", "1:21: unexpected 'or'; expected an expression"),
        ("sessions_30d > 1 and and orders_total > 1", "1:22: unexpected 'and'; expected an expression"),
        ("and sessions_30d > 1", "1:1: unexpected 'and'; expected an expression"),
        ("not not", "1:8: unexpected end of expression; expected an expression"),
    ],
)
def test_a_doubled_keyword_is_refused_where_it_stands(text: str, expected: str) -> None:
    with pytest.raises(RuleError) as info:
        compile_expression(text, origin=ORIGIN)
    rendered = [str(p).removeprefix("e:") for p in info.value.problems]
    assert rendered == [expected], "one problem, at the doubled keyword"


def test_rules_check_puts_the_caret_under_the_second_and(tmp_path: Path) -> None:
    source = "version: 1\nsegments:\n  - id: doubled\n    when: sessions_30d > 1 and and sessions_7d > 0\n"
    (tmp_path / "r.yaml").write_text(source)
    problems = check_rules(tmp_path)
    assert [str(p) for p in problems] == [f"{tmp_path / 'r.yaml'}:4:32: unexpected 'and'; expected an expression"]
    lines = render_problem(problems[0], source).splitlines()
    code, caret = lines[1], lines[2]
    column = caret.index("^")
    assert code[column : column + 3] == "and" and code[column - 4 : column] == "and ", "the caret is under the second 'and'"
