"""Text -> syntax tree for the rule expression language, with every limit enforced before work.

The lark grammar lives in ``grammar.lark``; this module turns lark's tree into small frozen
nodes that carry the character offset they start at, and turns lark's exceptions into
``Issue`` values an analyst can act on. Nothing here evaluates user text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Union

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

__all__ = [
    "MAX_EXPRESSION_CHARS",
    "MAX_STRING_CHARS",
    "MAX_LIST_ITEMS",
    "MAX_DEPTH",
    "MAX_NUMBER_CHARS",
    "Issue",
    "ParseFailure",
    "Lit",
    "ListLit",
    "Name",
    "Call",
    "Not",
    "Neg",
    "Logic",
    "Arith",
    "Compare",
    "In",
    "IsNull",
    "Node",
    "parse",
]

MAX_EXPRESSION_CHARS = 10_000
MAX_STRING_CHARS = 1_000
MAX_LIST_ITEMS = 1_000
MAX_DEPTH = 64
MAX_NUMBER_CHARS = 40

Scalar = Union[int, float, str, bool, None]


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem at a character offset of the expression text."""

    pos: int
    message: str


class ParseFailure(Exception):
    """Internal: the issues that stopped parsing or checking (converted to Problems by the compiler)."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(i.message for i in issues))
        self.issues = issues


@dataclass(frozen=True, slots=True)
class Lit:
    pos: int
    value: Scalar


@dataclass(frozen=True, slots=True)
class ListLit:
    pos: int
    items: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Name:
    pos: int
    name: str


@dataclass(frozen=True, slots=True)
class Call:
    pos: int
    name: str
    args: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Not:
    pos: int
    operand: "Node"


@dataclass(frozen=True, slots=True)
class Neg:
    pos: int
    operand: "Node"


@dataclass(frozen=True, slots=True)
class Logic:
    """``and`` / ``or`` over two or more operands, kept flat so long chains stay shallow."""

    pos: int
    op: str
    operands: tuple["Node", ...]


@dataclass(frozen=True, slots=True)
class Arith:
    """``first (op operand)*`` for one precedence level (``+ -`` or ``* /``), left to right."""

    pos: int
    first: "Node"
    rest: tuple[tuple[str, int, "Node"], ...]


@dataclass(frozen=True, slots=True)
class Compare:
    pos: int
    op: str
    op_pos: int
    left: "Node"
    right: "Node"


@dataclass(frozen=True, slots=True)
class In:
    pos: int
    negated: bool
    op_pos: int
    left: "Node"
    right: "Node"


@dataclass(frozen=True, slots=True)
class IsNull:
    pos: int
    negated: bool
    operand: "Node"


Node = Union[Lit, ListLit, Name, Call, Not, Neg, Logic, Arith, Compare, In, IsNull]


@cache
def _lark() -> Lark:
    grammar = resources.files(__package__).joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse(text: str) -> Node:
    """Parse one expression; raises ``ParseFailure`` with positioned issues."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ParseFailure([Issue(0, f"expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_CHARS}")])
    if not text.strip():
        raise ParseFailure([Issue(0, "empty expression; write a condition such as 'sessions_30d > 0'")])
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise ParseFailure([_syntax_issue(text, exc)]) from None
    _check_depth(tree)
    issues: list[Issue] = []
    node = _Converter(text, issues).convert(tree)
    if issues:
        raise ParseFailure(issues)
    return node


def _check_depth(tree: Tree | Token) -> None:
    stack: list[tuple[Tree | Token, int]] = [(tree, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, Tree):
            continue
        if depth > MAX_DEPTH:
            raise ParseFailure([Issue(_start(item), f"expression nests more than {MAX_DEPTH} levels deep; split it into simpler rules")])
        stack.extend((child, depth + 1) for child in item.children if isinstance(child, Tree))


def _start(item: Tree | Token) -> int:
    if isinstance(item, Token):
        return item.start_pos or 0
    return getattr(item.meta, "start_pos", 0) or 0


_TERMINALS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "TRUE": "true",
    "FALSE": "false",
    "NULL": "null",
    "NOT": "'not'",
    "IN": "'in'",
    "IS": "'is'",
    "_OR": "'or'",
    "_AND": "'and'",
    "OR": "'or'",
    "AND": "'and'",
    "COMP_OP": "a comparison",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "$END": "the end",
}
_ATOMS = {"NAME", "NUMBER", "STRING", "TRUE", "FALSE", "NULL", "LSQB", "LPAR", "MINUS", "NOT"}
_CHAR_HINTS = {
    "=": "use '==' to compare",
    "!": "use 'not' to negate, '!=' to compare",
    "&": "use 'and'",
    "|": "use 'or'",
    ":": "':' is not part of the rule language (no lambdas, slices or dicts)",
    "{": "'{' is not part of the rule language; lists use [ ]",
    "}": "'}' is not part of the rule language; lists use [ ]",
    "%": "there is no '%' operator",
    "@": "'@' is not part of the rule language",
    "#": "comments are not allowed inside an expression; use the rule's description",
    ";": "one expression per rule; combine conditions with 'and' / 'or'",
}
_LAST_WORD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*$")
_FOREIGN_WORDS = {"lambda", "for", "if", "else", "import", "from", "def", "class", "return", "yield", "with", "as", "async", "await", "del", "global"}


def _expected(names: set[str] | frozenset[str]) -> str:
    if "NUMBER" in names or "NAME" in names and "LPAR" in names:
        rest = sorted(_TERMINALS.get(n, n) for n in names if n not in _ATOMS)
        return " or ".join(["an expression", *rest])
    described = sorted({_TERMINALS.get(n, n.lower()) for n in names})
    return ", ".join(described[:-1]) + (" or " if len(described) > 1 else "") + described[-1] if described else "something else"


def _token_pos(child: Token | Tree) -> int:
    return (child.start_pos or 0) if isinstance(child, Token) else 0


def _syntax_issue(text: str, exc: UnexpectedInput) -> Issue:
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        char = text[pos]
        if char in "'\"":
            return Issue(pos, "unterminated string; close it with the same quote on the same line")
        if char == ".":
            if pos + 1 < len(text) and text[pos + 1].isdigit():
                return Issue(pos, "write numbers with a leading digit, e.g. 0.5")
            return Issue(pos, "attribute access ('.') is not allowed; use a DNA field or function")
        if char == "*" and pos > 0 and text[pos - 1] == "*":
            return Issue(pos - 1, "'**' is not supported: there is no power operator")
        hint = _CHAR_HINTS.get(char)
        return Issue(pos, hint or f"unexpected character {char!r}")
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        kind = token.type
        expected = set(exc.expected or ())
        if kind == "$END":
            return Issue(len(text.rstrip()), f"unexpected end of expression; expected {_expected(expected)}")
        pos = token.start_pos or 0
        if kind == "STAR" and pos > 0 and text[pos - 1] == "*":
            return Issue(pos - 1, "'**' is not supported: there is no power operator")
        if kind == "LSQB" and "LSQB" not in expected:
            return Issue(pos, "indexing ('[') is not allowed; use a DNA field or function")
        if kind == "LPAR" and "LPAR" not in expected:
            return Issue(pos, "only registry functions can be called, by name, e.g. affinity('shoes')")
        if kind == "COMP_OP" and "NAME" not in expected:
            return Issue(pos, "comparisons do not chain; write 'a < b and b < c'")
        if kind == "NAME" and str(token) in _FOREIGN_WORDS:
            return Issue(pos, f"'{token}' is not part of the rule language")
        before = _LAST_WORD.search(text, 0, pos)
        if before and before.group(1) in _FOREIGN_WORDS:
            return Issue(before.start(1), f"'{before.group(1)}' is not part of the rule language")
        what = "name" if kind == "NAME" else "number" if kind == "NUMBER" else "string" if kind == "STRING" else None
        shown = f"{what} {str(token)[:40]!r}" if what else repr(str(token))
        return Issue(pos, f"unexpected {shown}; expected {_expected(expected)}")
    return Issue(getattr(exc, "pos_in_stream", 0) or 0, "syntax error")


_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


class _Converter:
    """Lark tree -> nodes. Depth is already bounded, so plain recursion is safe."""

    def __init__(self, text: str, issues: list[Issue]) -> None:
        self.text = text
        self.issues = issues

    def convert(self, tree: Tree | Token) -> Node:
        if isinstance(tree, Token):  # pragma: no cover - every atom is wrapped in a rule
            raise ParseFailure([Issue(tree.start_pos or 0, "unexpected token")])
        rule = str(tree.data)
        method = getattr(self, f"_{rule.rstrip('_')}")
        return method(tree, _start(tree))

    def _kids(self, tree: Tree) -> list[Node]:
        return [self.convert(c) for c in tree.children if isinstance(c, Tree)]

    def _paren(self, tree: Tree, pos: int) -> Node:
        return self.convert(tree.children[1])

    def _number(self, tree: Tree, pos: int) -> Node:
        raw = str(tree.children[0])
        if len(raw) > MAX_NUMBER_CHARS:
            self.issues.append(Issue(pos, f"number literal is {len(raw)} characters long; the limit is {MAX_NUMBER_CHARS}"))
            return Lit(pos, 0)
        if any(c in raw for c in ".eE"):
            value = float(raw)
            if not math.isfinite(value):
                self.issues.append(Issue(pos, f"number {raw} is out of range"))
                return Lit(pos, 0)
            return Lit(pos, value)
        return Lit(pos, int(raw))

    def _string(self, tree: Tree, pos: int) -> Node:
        raw = str(tree.children[0])[1:-1]
        out: list[str] = []
        i = 0
        while i < len(raw):
            c = raw[i]
            if c == "\\":
                nxt = raw[i + 1]
                if nxt not in _ESCAPES:
                    self.issues.append(Issue(pos + 1 + i, f"unknown escape '\\{nxt}' in string; use '\\\\' for a backslash"))
                out.append(_ESCAPES.get(nxt, nxt))
                i += 2
            else:
                out.append(c)
                i += 1
        value = "".join(out)
        if len(value) > MAX_STRING_CHARS:
            self.issues.append(Issue(pos, f"string literal is {len(value)} characters long; the limit is {MAX_STRING_CHARS}"))
        return Lit(pos, value)

    def _true(self, tree: Tree, pos: int) -> Node:
        return Lit(pos, True)

    def _false(self, tree: Tree, pos: int) -> Node:
        return Lit(pos, False)

    def _null(self, tree: Tree, pos: int) -> Node:
        return Lit(pos, None)

    def _name(self, tree: Tree, pos: int) -> Node:
        return Name(pos, str(tree.children[0]))

    def _args(self, args: Tree | None) -> tuple[Node, ...]:
        if args is None:
            return ()
        return tuple(self._kids(args))

    def _call(self, tree: Tree, pos: int) -> Node:
        return Call(pos, str(tree.children[0]), self._args(tree.children[2]))

    def _list(self, tree: Tree, pos: int) -> Node:
        args = tree.children[1]
        count = 0 if args is None else sum(1 for c in args.children if isinstance(c, Tree))
        if count > MAX_LIST_ITEMS:
            self.issues.append(Issue(pos, f"list has {count} items; the limit is {MAX_LIST_ITEMS}"))
            return ListLit(pos, ())
        return ListLit(pos, self._args(args))

    def _not(self, tree: Tree, pos: int) -> Node:
        return Not(pos, self.convert(tree.children[1]))

    def _neg(self, tree: Tree, pos: int) -> Node:
        operand = self.convert(tree.children[1])
        if isinstance(operand, Lit) and type(operand.value) in (int, float):
            return Lit(pos, -operand.value)  # type: ignore[operator]
        return Neg(pos, operand)

    def _or_expr(self, tree: Tree, pos: int) -> Node:
        return Logic(pos, "or", tuple(self._kids(tree)))

    def _and_expr(self, tree: Tree, pos: int) -> Node:
        return Logic(pos, "and", tuple(self._kids(tree)))

    def _arith(self, tree: Tree, pos: int) -> Node:
        children = tree.children
        first = self.convert(children[0])
        rest = tuple(
            (str(children[i]), _token_pos(children[i]), self.convert(children[i + 1]))
            for i in range(1, len(children), 2)
        )
        return Arith(pos, first, rest)

    _sum = _arith
    _product = _arith

    def _compare(self, tree: Tree, pos: int) -> Node:
        left, op, right = tree.children
        return Compare(pos, str(op), _token_pos(op), self.convert(left), self.convert(right))

    def _in(self, tree: Tree, pos: int) -> Node:
        left, op, right = tree.children
        return In(pos, False, _token_pos(op), self.convert(left), self.convert(right))

    def _not_in(self, tree: Tree, pos: int) -> Node:
        left, op, _, right = tree.children
        return In(pos, True, _token_pos(op), self.convert(left), self.convert(right))

    def _is_null(self, tree: Tree, pos: int) -> Node:
        return IsNull(pos, False, self.convert(tree.children[0]))

    def _is_not_null(self, tree: Tree, pos: int) -> Node:
        return IsNull(pos, True, self.convert(tree.children[0]))
