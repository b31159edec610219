"""Syntax tree -> plain Python closures, built once per expression.

No ``eval``/``exec``: each node becomes a small closure, with the common shapes (field compared
with a constant, two-operand and/or) specialised so a typical condition costs a fraction of a
microsecond. Every closure follows the null rules of CONTRACT §3 and cannot raise for values of
the declared types (nor for any scalar where the type is ``any``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from microseg.segments.builtin_fields import BUILTINS
from microseg.segments.fields import FunctionSpec, Kind, Registry, ValueType
from microseg.segments.language.checker import check
from microseg.segments.language.closures import (
    FLIP,
    OPS,
    RUNTIME_KIND,
    Fn,
    as_bool,
    as_number,
    binary_arith,
    const,
    field_vs_const,
    logic2,
    logic3,
)
from microseg.segments.language.errors import Problem, RuleError
from microseg.segments.language.parser import (
    Arith,
    Call,
    Compare,
    In,
    IsNull,
    ListLit,
    Lit,
    Logic,
    Name,
    Neg,
    Node,
    Not,
    ParseFailure,
    parse,
)
from microseg.segments.ruleset import Expr, Origin

__all__ = ["Locator", "compile_expression"]

Locator = Callable[[int], tuple[int, int]]
"""Maps a character offset in the expression to a 1-based (line, col) in the rule file."""

def compile_expression(
    text: str, *, origin: Origin, expect_bool: bool = True, locate: Locator | None = None, registry: Registry | None = None
) -> Expr:
    """Parse, type-check and compile ``text``; raises ``RuleError`` listing every problem.

    Problem positions are ``origin`` plus the offset inside ``text``; a rule-file loader whose
    expression sits in a quoted or block YAML scalar passes ``locate`` to map offsets exactly.
    Names are those of ``registry``, the built-in fields and functions by default.
    """
    reg = BUILTINS if registry is None else registry
    where = locate or _default_locator(text, origin)
    try:
        tree = parse(text)
    except ParseFailure as failure:
        raise RuleError([Problem(origin.file, *where(i.pos), i.message) for i in failure.issues]) from None
    checked = check(tree, expect_bool=expect_bool, registry=reg)
    if checked.issues:
        raise RuleError([Problem(origin.file, *where(i.pos), i.message) for i in checked.issues])
    fn = _Builder(checked.types, reg.functions).build(tree)
    meta = _Meta()
    meta.walk(tree)
    return Expr(
        source=text,
        origin=origin,
        fn=fn,
        type=checked.type,
        fields=frozenset(meta.fields),
        functions=frozenset(meta.functions),
        thresholds={k: frozenset(v) for k, v in sorted(meta.thresholds.items())},
        comparisons={k: frozenset(v) for k, v in sorted(meta.comparisons.items())},
        opaque=frozenset(meta.opaque),
    )


def _default_locator(text: str, origin: Origin) -> Locator:
    def locate(offset: int) -> tuple[int, int]:
        offset = max(0, min(offset, len(text)))
        newlines = text.count("\n", 0, offset)
        if newlines == 0:
            return origin.line, origin.col + offset
        return origin.line + newlines, offset - text.rfind("\n", 0, offset)

    return locate


def _is_number_lit(node: Node) -> bool:
    return isinstance(node, Lit) and type(node.value) in (int, float)


def _number(node: Node) -> float:
    assert isinstance(node, Lit) and isinstance(node.value, (int, float))
    return float(node.value)


class _Meta:
    """Fields, functions, numeric thresholds and opaque uses, for the timeline."""

    def __init__(self) -> None:
        self.fields: set[str] = set()
        self.functions: set[str] = set()
        self.thresholds: dict[str, set[float]] = {}
        self.comparisons: dict[str, set[tuple[str, float]]] = {}
        self.opaque: set[str] = set()

    def threshold(self, name: str, values: list[float], op: str = "==") -> None:
        """``name op value`` for each value (the field on the left)."""
        self.fields.add(name)
        self.thresholds.setdefault(name, set()).update(float(v) for v in values)
        self.comparisons.setdefault(name, set()).update((op, float(v)) for v in values)

    def compared(self, node: Node) -> str | None:
        """The field whose value ``node`` is wherever it is not null: a name, or ``coalesce(name,
        numbers...)`` (the fallback is constant, so only the field's own crossings can flip it)."""
        if isinstance(node, Name):
            return node.name
        if (
            isinstance(node, Call)
            and node.name == "coalesce"
            and len(node.args) >= 2
            and isinstance(node.args[0], Name)
            and all(_is_number_lit(a) for a in node.args[1:])
        ):
            self.functions.add(node.name)
            return node.args[0].name
        return None

    def walk(self, node: Node) -> None:
        if isinstance(node, Name):
            self.fields.add(node.name)
            self.opaque.add(node.name)
        elif isinstance(node, Compare) and _is_number_lit(node.right) and (name := self.compared(node.left)) is not None:
            self.threshold(name, [_number(node.right)], node.op)
        elif isinstance(node, Compare) and _is_number_lit(node.left) and (name := self.compared(node.right)) is not None:
            self.threshold(name, [_number(node.left)], FLIP[node.op])
        elif (
            isinstance(node, In)
            and isinstance(node.left, Name)
            and isinstance(node.right, ListLit)
            and node.right.items
            and all(_is_number_lit(i) for i in node.right.items)
        ):
            self.threshold(node.left.name, [_number(i) for i in node.right.items])
        else:
            if isinstance(node, Call):
                self.functions.add(node.name)
            for child in _children(node):
                self.walk(child)


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, (Not, Neg)):
        return (node.operand,)
    if isinstance(node, IsNull):
        return (node.operand,)
    if isinstance(node, Logic):
        return node.operands
    if isinstance(node, Arith):
        return (node.first, *(o for _, _, o in node.rest))
    if isinstance(node, (Compare, In)):
        return (node.left, node.right)
    if isinstance(node, (Call, ListLit)):
        return tuple(node.args if isinstance(node, Call) else node.items)
    return ()


def _constant(node: Node) -> bool:
    """True when no field or function is read: the value is known at compile time."""
    if isinstance(node, (Name, Call)):
        return False
    return all(_constant(c) for c in _children(node))


class _Builder:
    def __init__(self, types: Mapping[int, ValueType], functions: Mapping[str, FunctionSpec]) -> None:
        self.types = types
        self.functions = functions

    def kind(self, node: Node) -> Kind:
        return self.types[id(node)].kind

    def build(self, node: Node) -> Fn:
        fn = getattr(self, f"_{type(node).__name__.lower()}")(node)
        if not isinstance(node, Lit) and _constant(node):
            return const(fn(None))
        return fn

    def guarded_bool(self, node: Node) -> Fn:
        fn = self.build(node)
        return as_bool(fn) if self.kind(node) is Kind.ANY else fn

    def guarded_number(self, node: Node) -> Fn:
        fn = self.build(node)
        return as_number(fn) if self.kind(node) is Kind.ANY else fn

    def _lit(self, node: Lit) -> Fn:
        return const(node.value)

    def _name(self, node: Name) -> Fn:
        return operator.itemgetter(node.name)

    def _not(self, node: Not) -> Fn:
        fn = self.guarded_bool(node.operand)

        def not_(ctx: Any) -> Any:
            v = fn(ctx)
            return None if v is None else not v

        return not_

    def _neg(self, node: Neg) -> Fn:
        fn = self.guarded_number(node.operand)

        def neg(ctx: Any) -> Any:
            v = fn(ctx)
            return None if v is None else -v

        return neg

    def _isnull(self, node: IsNull) -> Fn:
        if isinstance(node.operand, Name):
            name = node.operand.name
            if node.negated:
                return lambda ctx: ctx[name] is not None
            return lambda ctx: ctx[name] is None
        fn = self.build(node.operand)
        if node.negated:
            return lambda ctx: fn(ctx) is not None
        return lambda ctx: fn(ctx) is None

    def _logic(self, node: Logic) -> Fn:
        fns = tuple(self.guarded_bool(o) for o in node.operands)
        stop = node.op == "or"
        if len(fns) == 2:
            return logic2(stop, *fns)
        if len(fns) == 3:
            return logic3(stop, *fns)

        def chain(ctx: Any) -> Any:
            unknown = False
            for fn in fns:
                v = fn(ctx)
                if v is stop:
                    return stop
                if v is None:
                    unknown = True
            return None if unknown else not stop

        return chain

    def _arith(self, node: Arith) -> Fn:
        first = self.guarded_number(node.first)
        steps = tuple((op, self.guarded_number(o)) for op, _, o in node.rest)
        if len(steps) == 1:
            op, second = steps[0]
            return binary_arith(op, first, second)

        def arith(ctx: Any) -> Any:
            acc = first(ctx)
            if acc is None:
                return None
            for op, fn in steps:
                v = fn(ctx)
                if v is None:
                    return None
                try:
                    if op == "+":
                        acc = acc + v
                    elif op == "-":
                        acc = acc - v
                    elif op == "*":
                        acc = acc * v
                    else:
                        acc = acc / v
                except (ArithmeticError, ValueError):
                    return None
            return acc

        return arith

    def _compare(self, node: Compare) -> Fn:
        loose = Kind.ANY in (self.kind(node.left), self.kind(node.right))
        if not loose and isinstance(node.left, Name) and isinstance(node.right, Lit):
            return field_vs_const(node.left.name, node.op, node.right.value)
        if not loose and isinstance(node.right, Name) and isinstance(node.left, Lit):
            return field_vs_const(node.right.name, FLIP[node.op], node.left.value)
        fl, fr, op = self.build(node.left), self.build(node.right), OPS[node.op]
        if not loose:
            def compare(ctx: Any) -> Any:
                a = fl(ctx)
                if a is None:
                    return None
                b = fr(ctx)
                return None if b is None else op(a, b)

            return compare
        ordering = node.op not in ("==", "!=")

        def compare_any(ctx: Any) -> Any:
            a = fl(ctx)
            if a is None:
                return None
            b = fr(ctx)
            if b is None:
                return None
            kind = RUNTIME_KIND.get(type(a))
            if kind is None or kind is not RUNTIME_KIND.get(type(b)) or ordering and kind is Kind.BOOL:
                return None
            return op(a, b)

        return compare_any

    def _in(self, node: In) -> Fn:
        assert isinstance(node.right, ListLit)
        items = frozenset(i.value for i in node.right.items)  # type: ignore[union-attr]
        item_kind = self.types[id(node.right)].item
        fl = self.build(node.left)
        negated = node.negated
        if self.kind(node.left) is Kind.ANY:
            def in_any(ctx: Any) -> Any:
                v = fl(ctx)
                if v is None:
                    return None
                kind = RUNTIME_KIND.get(type(v))
                if kind is None or item_kind is not None and kind is not item_kind:
                    return None
                return (v in items) is not negated

            return in_any
        if isinstance(node.left, Name):
            name = node.left.name
            if negated:
                def not_in_field(ctx: Any) -> Any:
                    v = ctx[name]
                    return None if v is None else v not in items

                return not_in_field

            def in_field(ctx: Any) -> Any:
                v = ctx[name]
                return None if v is None else v in items

            return in_field

        def in_(ctx: Any) -> Any:
            v = fl(ctx)
            return None if v is None else (v in items) is not negated

        return in_

    def _call(self, node: Call) -> Fn:
        spec = self.functions[node.name]
        if spec.impl is None:
            return self._builtin(node)
        impl = spec.impl
        if not node.args:
            return lambda ctx: impl(ctx)
        if all(isinstance(a, Lit) for a in node.args):
            consts = tuple(a.value for a in node.args)  # type: ignore[union-attr]
            if None in consts:
                return const(None)
            if len(consts) == 1:
                (c,) = consts
                return lambda ctx: impl(ctx, c)
            return lambda ctx: impl(ctx, *consts)
        fns = tuple(self.build(a) for a in node.args)

        def call(ctx: Any) -> Any:
            args = [fn(ctx) for fn in fns]
            if None in args:
                return None
            return impl(ctx, *args)

        return call

    def _builtin(self, node: Call) -> Fn:
        name = node.name
        if name == "coalesce":
            fns = tuple(self.build(a) for a in node.args)

            def coalesce(ctx: Any) -> Any:
                for fn in fns:
                    v = fn(ctx)
                    if v is not None:
                        return v
                return None

            return coalesce
        fns = tuple(self.guarded_number(a) for a in node.args)
        if name == "abs":
            (fn,) = fns
            return lambda ctx: None if (v := fn(ctx)) is None else abs(v)
        pick = min if name == "min" else max

        def extreme(ctx: Any) -> Any:
            values = [fn(ctx) for fn in fns]
            if None in values:
                return None
            return pick(values)

        return extreme


