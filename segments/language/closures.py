"""The closures a compiled expression is made of: constants, guards for ``any`` operands, and the
specialised shapes (field compared with a constant, three-operand and/or, two-operand
arithmetic). Each follows the null rules of CONTRACT §3 (a null operand gives null; division by
zero gives null) and cannot raise for values of the declared types.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from microseg.segments.fields import Kind

__all__ = ["Fn", "OPS", "FLIP", "RUNTIME_KIND", "const", "as_bool", "as_number", "field_vs_const", "logic2", "logic3", "binary_arith"]

Fn = Callable[[Any], Any]
"""A compiled expression: evaluation context (``DnaView``) -> value."""

RUNTIME_KIND = {bool: Kind.BOOL, int: Kind.NUMBER, float: Kind.NUMBER, str: Kind.STRING}
OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def const(value: Any) -> Fn:
    def constant(ctx: Any) -> Any:
        return value

    return constant


def as_bool(fn: Fn) -> Fn:
    """Guard an ``any`` operand of and/or/not: non-bool runtime values count as null."""

    def as_bool(ctx: Any) -> Any:
        v = fn(ctx)
        return v if v is True or v is False else None

    return as_bool


def as_number(fn: Fn) -> Fn:
    """Guard an ``any`` operand of arithmetic: non-numbers count as null."""

    def as_number(ctx: Any) -> Any:
        v = fn(ctx)
        return v if RUNTIME_KIND.get(type(v)) is Kind.NUMBER else None

    return as_number


def field_vs_const(name: str, op: str, c: Any) -> Fn:
    """``field OP constant`` without calls: the hottest shape in real rule sets."""
    if op == "==":
        def f(ctx: Any) -> Any:
            v = ctx[name]
            return None if v is None else v == c
    elif op == "!=":
        def f(ctx: Any) -> Any:
            v = ctx[name]
            return None if v is None else v != c
    elif op == "<":
        def f(ctx: Any) -> Any:
            v = ctx[name]
            return None if v is None else v < c
    elif op == "<=":
        def f(ctx: Any) -> Any:
            v = ctx[name]
            return None if v is None else v <= c
    elif op == ">":
        def f(ctx: Any) -> Any:
            v = ctx[name]
            return None if v is None else v > c
    else:
        def f(ctx: Any) -> Any:
            v = ctx[name]
            return None if v is None else v >= c
    return f


def logic2(stop: bool, fa: Fn, fb: Fn) -> Fn:
    """``a or b`` (``stop`` True) or ``a and b`` with three-valued logic: null unless decided."""
    if stop:
        def or2(ctx: Any) -> Any:
            a = fa(ctx)
            if a is True:
                return True
            b = fb(ctx)
            if b is True:
                return True
            return None if a is None or b is None else False

        return or2

    def and2(ctx: Any) -> Any:
        a = fa(ctx)
        if a is False:
            return False
        b = fb(ctx)
        if b is False:
            return False
        return None if a is None or b is None else True

    return and2


def logic3(stop: bool, fa: Fn, fb: Fn, fc: Fn) -> Fn:
    """Three operands unrolled: the loop costs about a third more."""
    if stop:
        def or3(ctx: Any) -> Any:
            a = fa(ctx)
            if a is True:
                return True
            b = fb(ctx)
            if b is True:
                return True
            c = fc(ctx)
            if c is True:
                return True
            return None if a is None or b is None or c is None else False

        return or3

    def and3(ctx: Any) -> Any:
        a = fa(ctx)
        if a is False:
            return False
        b = fb(ctx)
        if b is False:
            return False
        c = fc(ctx)
        if c is False:
            return False
        return None if a is None or b is None or c is None else True

    return and3


def binary_arith(op: str, fa: Fn, fb: Fn) -> Fn:
    if op == "/":
        def div(ctx: Any) -> Any:
            a = fa(ctx)
            if a is None:
                return None
            b = fb(ctx)
            if b is None or b == 0:
                return None
            try:
                return a / b
            except (ArithmeticError, ValueError):
                return None

        return div
    fn = {"+": operator.add, "-": operator.sub, "*": operator.mul}[op]

    def arith2(ctx: Any) -> Any:
        a = fa(ctx)
        if a is None:
            return None
        b = fb(ctx)
        if b is None:
            return None
        try:
            return fn(a, b)
        except (ArithmeticError, ValueError):
            return None

    return arith2
