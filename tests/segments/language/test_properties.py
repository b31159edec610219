"""Properties: random well-typed expressions compile and agree with a reference interpreter;
random text never escapes as anything but RuleError."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _fake import FakeCtx, base_values
from microseg.segments.language import RuleError, compile_expression
from microseg.segments.ruleset import Origin

ORIGIN = Origin("p", 1, 1)
Gen = tuple[str, Callable[[Any], Any]]

NUMBER_FIELDS = ["sessions_30d", "spend_total", "nps", "days_since_last_purchase", "clv_12m"]
STRING_FIELDS = ["top_category", "preferred_channel"]
WORDS = ["shoes", "bags", "email", "sms", "", "x y"]
CMP = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _kind(v: Any) -> str | None:
    return {bool: "b", int: "n", float: "n", str: "s"}.get(type(v))


def _num_lit(v: float) -> str:
    return repr(v) if v >= 0 else f"({v!r})"


def _field(name: str) -> Gen:
    return name, lambda c: c[name]


def _arith(op: str, a: Gen, b: Gen) -> Gen:
    def ref(c: Any) -> Any:
        x, y = a[1](c), b[1](c)
        if x is None or y is None:
            return None
        if op == "/":
            return None if y == 0 else x / y
        return {"+": x + y, "-": x - y, "*": x * y}[op]

    return f"({a[0]} {op} {b[0]})", ref


def _nullary(fn: Callable[..., Any]) -> Callable[..., Any]:
    def ref(*values: Any) -> Any:
        return None if any(v is None for v in values) else fn(*values)

    return ref


def numbers(depth: int) -> st.SearchStrategy[Gen]:
    leaves = st.one_of(
        st.integers(-1000, 1000).map(lambda v: (_num_lit(v), lambda c, v=v: v)),
        st.floats(-1e3, 1e3, allow_nan=False).map(lambda v: (_num_lit(v), lambda c, v=v: v)),
        st.sampled_from(NUMBER_FIELDS).map(_field),
        st.sampled_from(WORDS).map(lambda w: (f"affinity('{w}')", lambda c, w=w: c.affinity(w))),
        st.just(("open_rate()", lambda c: c.open_rate())),
    )
    if depth <= 0:
        return leaves
    sub = numbers(depth - 1)
    return st.one_of(
        leaves,
        st.tuples(st.sampled_from("+-*/"), sub, sub).map(lambda t: _arith(*t)),
        sub.map(lambda a: (f"(-{a[0]})", lambda c, a=a: None if a[1](c) is None else -a[1](c))),
        st.tuples(st.sampled_from(["min", "max"]), sub, sub).map(
            lambda t: (f"{t[0]}({t[1][0]}, {t[2][0]})", lambda c, t=t: _nullary(min if t[0] == "min" else max)(t[1][1](c), t[2][1](c)))
        ),
        sub.map(lambda a: (f"abs({a[0]})", lambda c, a=a: _nullary(abs)(a[1](c)))),
        st.tuples(sub, sub).map(
            lambda t: (f"coalesce({t[0][0]}, null, {t[1][0]})", lambda c, t=t: next((v for v in (t[0][1](c), t[1][1](c)) if v is not None), None))
        ),
    )


def strings() -> st.SearchStrategy[Gen]:
    return st.one_of(
        st.sampled_from(WORDS).map(lambda w: (repr(w), lambda c, w=w: w)),
        st.sampled_from(STRING_FIELDS).map(_field),
    )


def _compare(op: str, a: Gen, b: Gen) -> Gen:
    def ref(c: Any) -> Any:
        x, y = a[1](c), b[1](c)
        if x is None or y is None:
            return None
        return CMP[op](x, y)

    return f"({a[0]} {op} {b[0]})", ref


def _attr_compare(op: str, name: str, lit: Any) -> Gen:
    def ref(c: Any) -> Any:
        x = c.attr(name)
        if x is None or _kind(x) is None or _kind(x) != _kind(lit):
            return None
        if _kind(x) == "b" and op not in ("==", "!="):
            return None
        return CMP[op](x, lit)

    text = "true" if lit is True else "false" if lit is False else repr(lit)
    return f"(attr('{name}') {op} {text})", ref


def _logic(op: str, a: Gen, b: Gen) -> Gen:
    def ref(c: Any) -> Any:
        x, y = a[1](c), b[1](c)
        if op == "and":
            if x is False or y is False:
                return False
            return None if x is None or y is None else True
        if x is True or y is True:
            return True
        return None if x is None or y is None else False

    return f"({a[0]} {op} {b[0]})", ref


def _in(a: Gen, items: list[Any], negated: bool) -> Gen:
    def ref(c: Any) -> Any:
        x = a[1](c)
        if x is None:
            return None
        return (x in items) != negated

    word = "not in" if negated else "in"
    return f"({a[0]} {word} [{', '.join(repr(i) for i in items)}])", ref


def bools(depth: int) -> st.SearchStrategy[Gen]:
    ops = st.sampled_from(list(CMP))
    nums = numbers(min(depth, 2))
    leaves = st.one_of(
        st.booleans().map(lambda v: ("true" if v else "false", lambda c, v=v: v)),
        st.sampled_from(["email", "sms", "push"]).map(lambda w: (f"consented('{w}')", lambda c, w=w: c.consented(w))),
        st.tuples(ops, nums, nums).map(lambda t: _compare(*t)),
        st.tuples(ops, strings(), strings()).map(lambda t: _compare(*t)),
        st.tuples(nums, st.lists(st.integers(-5, 5), max_size=4), st.booleans()).map(lambda t: _in(*t)),
        st.tuples(strings(), st.lists(st.sampled_from(WORDS), max_size=3), st.booleans()).map(lambda t: _in(*t)),
        st.tuples(nums, st.booleans()).map(
            lambda t: (f"({t[0][0]} is {'not ' if t[1] else ''}null)", lambda c, t=t: (t[0][1](c) is None) != t[1])
        ),
        st.tuples(ops, st.sampled_from(["tier", "visits", "vip", "score", "missing"]), st.one_of(st.integers(-3, 10), st.sampled_from(["gold", "x"]), st.booleans())).map(
            lambda t: _attr_compare(*t)
        ),
    )
    if depth <= 0:
        return leaves
    sub = bools(depth - 1)
    return st.one_of(
        leaves,
        st.tuples(st.sampled_from(["and", "or"]), sub, sub).map(lambda t: _logic(*t)),
        sub.map(lambda a: (f"(not {a[0]})", lambda c, a=a: None if a[1](c) is None else not a[1](c))),
    )


def contexts() -> st.SearchStrategy[FakeCtx]:
    number = st.one_of(st.none(), st.integers(-100, 100), st.floats(-1e4, 1e4, allow_nan=False))
    values = st.fixed_dictionaries(
        {
            **{f: number for f in NUMBER_FIELDS},
            **{f: st.one_of(st.none(), st.sampled_from(WORDS)) for f in STRING_FIELDS},
        }
    )
    attrs = st.dictionaries(
        st.sampled_from(["tier", "visits", "vip", "score"]),
        st.one_of(st.none(), st.integers(-3, 10), st.floats(-5, 5, allow_nan=False), st.sampled_from(["gold", "x"]), st.booleans()),
    )
    affinities = st.dictionaries(st.sampled_from(WORDS), st.floats(0, 1))
    opens = st.one_of(st.none(), st.floats(0, 1))
    consents = st.dictionaries(st.sampled_from(["email", "sms", "push"]), st.booleans())
    return st.builds(
        lambda v, a, af, o, cs: FakeCtx(base_values() | v, attrs=a, affinities=af, opens={None: o}, consents=cs),
        values,
        attrs,
        affinities,
        opens,
        consents,
    )


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return _kind(a) == _kind(b) and a == b


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bools(3), contexts())
def test_compiled_bool_expressions_match_reference(gen: Gen, ctx: FakeCtx) -> None:
    text, ref = gen
    expr = compile_expression(text, origin=ORIGIN)
    assert _same(expr.fn(ctx), ref(ctx)), text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(numbers(3), contexts())
def test_compiled_number_expressions_match_reference(gen: Gen, ctx: FakeCtx) -> None:
    text, ref = gen
    expr = compile_expression(text, origin=ORIGIN, expect_bool=False)
    assert _same(expr.fn(ctx), ref(ctx)), text


GRAMMARISH = st.lists(
    st.sampled_from(list("abcdefgnpstuorl_0123456789 ()[],.'\"+-*/<>=!\n") + ["and ", "or ", "not ", " in ", " is ", "null", "sessions_30d", "attr(", "affinity(", "true", "min("]),
    max_size=40,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=120), GRAMMARISH))
def test_garbage_never_raises_anything_but_rule_error(text: str) -> None:
    try:
        expr = compile_expression(text, origin=ORIGIN, expect_bool=False)
    except RuleError as exc:
        assert exc.problems and all(p.line >= 1 and p.col >= 1 for p in exc.problems)
        return
    expr.fn(FakeCtx(base_values()))
