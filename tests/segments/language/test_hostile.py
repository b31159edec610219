"""Hostile expressions: each is refused with a position, quickly, and nothing is executed."""

from __future__ import annotations

import builtins
import contextlib
import time
from collections.abc import Iterator

import pytest

from microseg.segments.language import RuleError, compile_expression
from microseg.segments.ruleset import Origin

ORIGIN = Origin("h", 1, 1)

HOSTILE: list[tuple[str, str]] = [
    ("__import__('os').system('x')", "attribute access"),
    ("().__class__", "unexpected ')'"),
    ("sessions_30d.__class__.__bases__", "attribute access"),
    ("[x for x in y]", "'for' is not part of the rule language"),
    ("lambda: 1", "':'"),
    ("a[0]", "indexing"),
    ("2**999999", "no power operator"),
    ("9" * 5000 + " > 1", "number literal is 5000 characters long"),
    ("'" + "a" * 10_000_000 + "' == top_category", "the limit is 10000"),
    ("'" + "a" * 5000 + "' == top_category", "string literal is 5000 characters long; the limit is 1000"),
    ("sessions_30d in [" + ",".join(["1"] * 100_000) + "]", "the limit is 10000"),
    ("sessions_30d in [" + ",".join(["1"] * 1_500) + "]", "list has 1500 items; the limit is 1000"),
    ("(" * 10_000 + "1" + ")" * 10_000, "the limit is 10000"),
    ("(" * 100 + "true" + ")" * 100, "nests more than 64 levels"),
    ("not " * 100 + "true", "nests more than 64 levels"),
    ("-" * 200 + "sessions_30d > 0", "nests more than 64 levels"),
    ("import os", "'import' is not part of the rule language"),
    ("exec('1')", "unknown function 'exec'"),
    ("eval('1') > 0", "unknown function 'eval'"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("getattr(sessions_30d, 'real')", "unknown function 'getattr'"),
    ("sessions_30d if true else 1", "'if' is not part of the rule language"),
    ("f'{x}'", "unexpected string"),
    ("'\\x41' == 'A'", "unknown escape"),
]


@contextlib.contextmanager
def _no_dynamic_code() -> Iterator[None]:
    """Make any use of eval/exec/compile by the compiler fail loudly while it runs."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("the compiler must not call eval/exec/compile")

    compile_expression("true", origin=ORIGIN)  # imports and the parser table are built before patching
    saved = {name: getattr(builtins, name) for name in ("eval", "exec", "compile")}
    try:
        for name in saved:
            setattr(builtins, name, boom)
        yield
    finally:
        for name, fn in saved.items():
            setattr(builtins, name, fn)


@pytest.mark.parametrize(("text", "fragment"), HOSTILE, ids=[h[0][:40] for h in HOSTILE])
def test_hostile_expression_is_refused(text: str, fragment: str) -> None:
    started = time.perf_counter()
    error: RuleError | None = None
    with _no_dynamic_code():
        try:
            compile_expression(text, origin=ORIGIN)
        except RuleError as exc:
            error = exc
    assert error is not None
    assert time.perf_counter() - started < 2.0
    problems = error.problems
    assert problems and all(p.line >= 1 and p.col >= 1 for p in problems)
    assert any(fragment in p.message for p in problems), [str(p) for p in problems]


def test_long_flat_chains_are_fine_and_evaluate_without_recursion() -> None:
    text = " + ".join(["1"] * 2000) + " > 0"
    assert compile_expression(text, origin=ORIGIN).fn({}) is True
    text = " and ".join(["sessions_30d > 0"] * 400)
    assert compile_expression(text, origin=ORIGIN).fn({"sessions_30d": 1}) is True


def test_huge_values_do_not_raise() -> None:
    expr = compile_expression("spend_total * 10.0 / sessions_30d + 1.5 > 0", origin=ORIGIN)
    assert expr.fn({"spend_total": 10**400, "sessions_30d": 3}) is None
    assert expr.fn({"spend_total": 1e308, "sessions_30d": 1e-308}) is True
    assert expr.fn({"spend_total": float("nan"), "sessions_30d": 1}) is False
