"""Static types for parsed expressions, checked against the DNA registry.

Every rule is checked before it runs, so a misspelt field or a string compared with a number is
caught at ``rules check`` time with its position, not discovered as silent nulls in production.
``attr(name)`` is typed ``any``: it passes the checker and is guarded at runtime instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from microseg.segments.builtin_fields import BUILTINS
from microseg.segments.fields import ANY, BOOL, NUMBER, STRING, FunctionSpec, Kind, Registry, ValueType
from microseg.segments.language.parser import (
    Arith,
    Call,
    Compare,
    In,
    Issue,
    IsNull,
    ListLit,
    Lit,
    Logic,
    Name,
    Neg,
    Node,
    Not,
)

__all__ = ["Checked", "check", "literal_type"]

NULL_TYPE = ValueType(Kind.NULL, nullable=True)
_ERR = ValueType(Kind.ANY, nullable=True)
_LOOSE = (Kind.ANY, Kind.NULL)
_KEYWORD_CASE = {"True": "true", "False": "false", "None": "null", "NULL": "null", "Null": "null", "AND": "and", "OR": "or", "NOT": "not", "IN": "in", "IS": "is"}


class Checked:
    """The result of checking: the expression's type, each node's type, and the issues found."""

    __slots__ = ("type", "types", "issues")

    def __init__(self, type_: ValueType, types: dict[int, ValueType], issues: list[Issue]) -> None:
        self.type = type_
        self.types = types
        self.issues = issues


def literal_type(value: object) -> ValueType:
    if value is None:
        return NULL_TYPE
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, (int, float)):
        return NUMBER
    return STRING


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _nullable(kind: Kind, *parts: ValueType) -> ValueType:
    return ValueType(kind, nullable=any(p.nullable or p.kind in _LOOSE for p in parts))


def check(node: Node, *, expect_bool: bool, registry: Registry | None = None) -> Checked:
    """Type ``node`` against the fields and functions of ``registry`` (the built-in ones by
    default); issues are collected, never raised, so all of them can be reported."""
    checker = _Checker(BUILTINS if registry is None else registry)
    result = checker.visit(node)
    if expect_bool and result is not _ERR and result.kind is not Kind.BOOL:
        if result.kind is Kind.ANY:
            hint = "compare it, e.g. attr('vip') == true"
        elif result.kind is Kind.NUMBER:
            hint = "compare it, e.g. '... > 0'"
        else:
            hint = "write a condition that is true or false"
        checker.issues.append(Issue(node.pos, f"a condition must be true or false, but this is {result.kind.value}; {hint}"))
    return Checked(result, checker.types, sorted(checker.issues, key=lambda i: i.pos))


class _Checker:
    def __init__(self, registry: Registry) -> None:
        self.fields = registry.fields
        self.functions = registry.functions
        self.types: dict[int, ValueType] = {}
        self.issues: list[Issue] = []

    def error(self, pos: int, message: str) -> ValueType:
        self.issues.append(Issue(pos, message))
        return _ERR

    def visit(self, node: Node) -> ValueType:
        result = getattr(self, f"_{type(node).__name__.lower()}")(node)
        self.types[id(node)] = result
        return result

    def _lit(self, node: Lit) -> ValueType:
        return literal_type(node.value)

    def _listlit(self, node: ListLit) -> ValueType:
        for item in node.items:
            self.visit(item)
        return self.error(node.pos, "a list can only follow 'in' or 'not in'")

    def _name(self, node: Name) -> ValueType:
        spec = self.fields.get(node.name)
        if spec is not None:
            return spec.type
        if node.name in self.functions:
            fn = self.functions[node.name]
            shown = ", ".join(p.name for p in fn.params)
            return self.error(node.pos, f"'{node.name}' is a function; call it as {node.name}({shown})")
        if node.name in _KEYWORD_CASE:
            return self.error(node.pos, f"unknown name '{node.name}'; keywords are lower case: write '{_KEYWORD_CASE[node.name]}'")
        if node.name in BUILTINS.fields and node.name not in self.fields:
            shown = ", ".join(sorted(self.fields))
            return self.error(node.pos, f"'{node.name}' is a DNA field; here only the event can be read: prop(name), {shown}")
        return self.error(node.pos, f"unknown field '{node.name}'{_suggest(node.name, self.fields)}")

    def _call(self, node: Call) -> ValueType:
        arg_types = [self.visit(a) for a in node.args]
        spec = self.functions.get(node.name)
        if spec is None:
            if node.name in self.fields:
                return self.error(node.pos, f"'{node.name}' is a field, not a function; drop the parentheses")
            return self.error(node.pos, f"unknown function '{node.name}'{_suggest(node.name, self.functions)}")
        if not self._arity(node, spec):
            return _ERR
        if spec.keyed is not None:
            return self._keyed(node, spec, spec.keyed)
        for i, (arg, t) in enumerate(zip(node.args, arg_types)):
            param = spec.params[min(i, len(spec.params) - 1)]
            if t.kind in _LOOSE or param.type.kind is Kind.ANY or t.kind is param.type.kind:
                continue
            self.error(arg.pos, f"argument {i + 1} of {node.name}() ({param.name}) must be {param.type.kind.value}, got {t.kind.value}")
        if any(t is _ERR for t in arg_types):
            return _ERR
        if node.name in ("min", "max", "abs"):
            return _nullable(Kind.NUMBER, *arg_types)
        if node.name == "coalesce":
            return self._coalesce(node, arg_types)
        returns = spec.returns
        if any(t.nullable or t.kind in _LOOSE for t in arg_types) and not returns.nullable:
            return ValueType(returns.kind, nullable=True, item=returns.item, values=returns.values)
        return returns

    def _keyed(self, node: Call, spec: FunctionSpec, keys: Mapping[str, ValueType | str]) -> ValueType:
        first = node.args[0]
        if not isinstance(first, Lit) or not isinstance(first.value, str):
            return self.error(first.pos, f"{node.name}() takes a name in quotes, e.g. {node.name}('{next(iter(keys), 'name')}')")
        found = keys.get(first.value)
        if found is None:
            known = ", ".join(sorted(keys)) or "none"
            return self.error(first.pos, f"unknown {spec.params[0].name} '{first.value}'{_suggest(first.value, keys)} (declared: {known})")
        if isinstance(found, str):
            return self.error(first.pos, found)
        return found

    def _arity(self, node: Call, spec: FunctionSpec) -> bool:
        required = sum(1 for p in spec.params if not p.optional)
        most = None if spec.variadic else len(spec.params)
        given = len(node.args)
        if given >= required and (most is None or given <= most):
            return True
        if most is None:
            expected = f"at least {required}"
        elif required == most:
            expected = f"exactly {required}"
        else:
            expected = f"{required} to {most}"
        plural = "" if expected in ("exactly 1", "at least 1") else "s"
        self.error(node.pos, f"{node.name}() takes {expected} argument{plural} ({given} given)")
        return False

    def _coalesce(self, node: Call, arg_types: list[ValueType]) -> ValueType:
        kinds = {t.kind for t in arg_types if t.kind not in _LOOSE}
        if len(kinds) > 1:
            shown = " and ".join(sorted(k.value for k in kinds))
            return self.error(node.pos, f"coalesce() arguments must all be of one kind, got {shown}")
        nullable = all(t.nullable or t.kind in _LOOSE for t in arg_types)
        if any(t.kind is Kind.ANY for t in arg_types) or not kinds:
            return ANY
        return ValueType(kinds.pop(), nullable=nullable)

    def _not(self, node: Not) -> ValueType:
        t = self.visit(node.operand)
        if t.kind not in _LOOSE and t.kind is not Kind.BOOL:
            return self.error(node.operand.pos, f"'not' needs true or false, got {t.kind.value}")
        return _nullable(Kind.BOOL, t)

    def _neg(self, node: Neg) -> ValueType:
        t = self.visit(node.operand)
        if t.kind not in _LOOSE and t.kind is not Kind.NUMBER:
            return self.error(node.pos, f"unary '-' needs a number, got {t.kind.value}")
        return _nullable(Kind.NUMBER, t)

    def _logic(self, node: Logic) -> ValueType:
        types = [self.visit(o) for o in node.operands]
        bad = False
        for operand, t in zip(node.operands, types):
            if t.kind not in _LOOSE and t.kind is not Kind.BOOL:
                bad = True
                self.error(operand.pos, f"'{node.op}' needs true or false on both sides, got {t.kind.value}; compare it, e.g. '... > 0'")
        return _ERR if bad else _nullable(Kind.BOOL, *types)

    def _arith(self, node: Arith) -> ValueType:
        operands = [("", node.first.pos, node.first), *node.rest]
        types = [self.visit(o) for _, _, o in operands]
        bad = False
        for i, ((op, op_pos, operand), t) in enumerate(zip(operands, types)):
            if t.kind not in _LOOSE and t.kind is not Kind.NUMBER:
                bad = True
                shown = op or operands[1][0]
                self.error(operand.pos, f"'{shown}' needs numbers, got {t.kind.value}")
        if bad:
            return _ERR
        result = _nullable(Kind.NUMBER, *types)
        if any(op == "/" for op, _, _ in node.rest):
            return ValueType(Kind.NUMBER, nullable=True)
        return result

    def _enum(self, typed: ValueType, other: Node, field: Node) -> None:
        if typed.values is None or not isinstance(other, Lit) or not isinstance(other.value, str):
            return
        if other.value not in typed.values:
            if isinstance(field, Name):
                name = field.name
            elif isinstance(field, Call) and field.args and isinstance(field.args[0], Lit):
                name = f"{field.name}('{field.args[0].value}')"
            else:
                name = "value here"
            shown = ", ".join(sorted(typed.values))
            self.error(other.pos, f"'{other.value}' is not a possible {name}{_suggest(other.value, typed.values)} (one of: {shown})")

    def _compare(self, node: Compare) -> ValueType:
        left = self.visit(node.left)
        right = self.visit(node.right)
        if left is _ERR or right is _ERR:
            return _ERR
        if left.kind is Kind.NULL or right.kind is Kind.NULL:
            fix = "is null" if node.op == "==" else "is not null"
            return self.error(node.op_pos, f"comparing with null always gives null; write '{fix}'")
        if Kind.ANY not in (left.kind, right.kind):
            if left.kind is not right.kind:
                return self.error(node.op_pos, f"cannot compare {left.kind.value} with {right.kind.value} using '{node.op}'")
            if left.kind is Kind.BOOL and node.op not in ("==", "!="):
                return self.error(node.op_pos, f"true/false cannot be ordered with '{node.op}'; use == or !=")
        self._enum(left, node.right, node.left)
        self._enum(right, node.left, node.right)
        return _nullable(Kind.BOOL, left, right)

    def _in(self, node: In) -> ValueType:
        word = "not in" if node.negated else "in"
        left = self.visit(node.left)
        if not isinstance(node.right, ListLit):
            right = self.visit(node.right)
            if right is not _ERR:
                self.error(node.right.pos, f"'{word}' needs a list such as [1, 2] or ['a', 'b'], got {right.kind.value}")
            return _ERR
        self.types[id(node.right)] = ValueType(Kind.LIST)
        item_kind = self._items(node.right)
        if left is _ERR or item_kind is None and node.right.items:
            return _ERR
        if left.kind is Kind.NULL:
            return self.error(node.op_pos, "looking for null in a list always gives null; write 'is null'")
        if item_kind is not None and left.kind is not Kind.ANY and left.kind is not item_kind:
            return self.error(node.op_pos, f"cannot look for a {left.kind.value} in a list of {item_kind.value}s")
        for item in node.right.items:
            self._enum(left, item, node.left)
        self.types[id(node.right)] = ValueType(Kind.LIST, item=item_kind)
        return _nullable(Kind.BOOL, left)

    def _items(self, node: ListLit) -> Kind | None:
        kinds: set[Kind] = set()
        ok = True
        for item in node.items:
            if not isinstance(item, Lit):
                self.visit(item)
                self.error(item.pos, "list items must be literal numbers, strings or true/false")
                ok = False
            elif item.value is None:
                self.error(item.pos, "a list cannot hold null; test with 'is null' instead")
                ok = False
            else:
                self.types[id(item)] = literal_type(item.value)
                kinds.add(literal_type(item.value).kind)
        if len(kinds) > 1:
            shown = " and ".join(sorted(k.value for k in kinds))
            self.error(node.pos, f"list mixes {shown} items; use one kind")
            return None
        return kinds.pop() if ok and kinds else None

    def _isnull(self, node: IsNull) -> ValueType:
        self.visit(node.operand)
        return BOOL
