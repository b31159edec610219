"""One rule file: its data with the position of every key and value, its compiled expressions, its problems.

A ``RuleFile`` is filled by ``load(bytes)`` and never raises for what is in the file: every
problem is collected in ``problems`` (``file:line:col`` with a message). ``load`` validates the
data against ``schemas.rulefile`` section by section (``validation.validate``); the rule
expressions (``when`` of segments, messages and dimension cases, ``of`` of dimensions) are
compiled afterwards by ``compile_expressions``, once the traits of every file are known.
"""

from __future__ import annotations

from typing import Any

import yaml

from microseg.schemas.rulefile import RuleFileModel
from microseg.segments.language import Problem, RuleError, compile_expression
from microseg.segments.rulefiles.marked_yaml import YamlProblem, compose, plain_scalar, position
from microseg.segments.rulefiles.positions import KeyPath, TextLines, scalar_locator
from microseg.segments.rulefiles.validation import validate
from microseg.segments.fields import Registry
from microseg.segments.ruleset import Expr, Origin

__all__ = ["MAX_FILE_BYTES", "RuleFile"]

MAX_FILE_BYTES = 1 << 20

_EXPRESSION_PATHS = {
    ("segments", "#", "when"),
    ("messages", "#", "when"),
    ("microsegments", "dimensions", "#", "of"),
    ("microsegments", "dimensions", "#", "cases", "#", "when"),
}


class RuleFile:
    """One file: its node tree, data, positions, compiled expressions and problems.

    ``value_marks``/``key_marks`` map a ``KeyPath`` to ``(line, col)``; ``exprs`` holds the
    compiled expressions by path; ``kept`` the indexes of the segments and messages that passed
    validation (``model.segments[k]`` is item ``kept["segments"][k]`` of the file), and
    ``loose_ids`` the ids of those that did not (so references to them are not reported twice).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[Problem] = []
        self.model: RuleFileModel | None = None
        self.value_marks: dict[KeyPath, tuple[int, int]] = {}
        self.key_marks: dict[KeyPath, tuple[int, int]] = {}
        self.exprs: dict[KeyPath, Expr] = {}
        self.scalars: dict[KeyPath, yaml.ScalarNode] = {}
        self.kept: dict[str, list[int]] = {"segments": [], "messages": [], "events": [], "traits": []}
        self.loose_ids: dict[str, set[str]] = {"segments": set(), "messages": set(), "events": set(), "traits": set()}
        self.loose_items: dict[str, list[tuple[int, str, dict[str, Any]]]] = {"segments": [], "messages": [], "events": [], "traits": []}
        """(index in the file, id, data) of the items that did not pass validation, in file order: their
        ids (and a message's segment references) are still checked across the files, so those
        problems are reported with the item's own."""
        self.lines = TextLines.of("")

    def problem(self, where: tuple[int, int], message: str) -> None:
        """Record a problem at ``(line, col)`` of this file."""
        self.problems.append(Problem(self.name, where[0], where[1], message))

    def at(self, path: KeyPath, *, key: bool = False) -> tuple[int, int]:
        """Position of ``path`` (its key if asked), else of its nearest known ancestor."""
        marks = self.key_marks if key else self.value_marks
        while path:
            if path in marks:
                return marks[path]
            if path in self.value_marks:
                return self.value_marks[path]
            path = path[:-1]
        return self.value_marks.get((), (1, 1))

    def load(self, data: bytes) -> None:
        """Read, compile and validate the file's bytes; ``model`` is set unless the file is not a YAML mapping."""
        if len(data) > MAX_FILE_BYTES:
            self.problem((1, 1), f"file is {len(data)} bytes; rule files are limited to {MAX_FILE_BYTES} bytes (1 MiB)")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            self.problem((line, 1), f"file is not UTF-8 text ({exc.reason} at byte {exc.start})")
            return
        self.lines = TextLines.of(text)
        try:
            root = compose(text, self.lines)
        except YamlProblem as exc:
            self.problem(exc.where, exc.message)
            return
        if not isinstance(root, yaml.MappingNode):
            self.problem(position(root.start_mark), "a rule file is a mapping that starts with 'version: 1'")
            return
        plain = self._data(root, ())
        self.model = validate(self, plain)

    def _data(self, node: yaml.Node, path: KeyPath) -> Any:
        self.value_marks[path] = position(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problem(position(key_node.start_mark), "keys must be plain names")
                    continue
                key = key_node.value
                if key in out:
                    first = self.key_marks[(*path, key)]
                    self.problem(position(key_node.start_mark), f"duplicate key '{key}' (first at line {first[0]})")
                    continue
                self.key_marks[(*path, key)] = position(key_node.start_mark)
                out[key] = self._data(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._data(item, (*path, i)) for i, item in enumerate(node.value)]
        self.scalars[path] = node
        if node.style in ("'", '"', "|", ">"):
            return node.value
        return plain_scalar(node.value)

    def compile_expressions(self, registry: Registry) -> None:
        """Compile the rule expressions (``when``, ``of``) against ``registry``: the built-in
        fields and the rule set's traits, which may be declared in another file."""
        for path in self.scalars:
            if _is_expression_path(path):
                expr = self.expression(path, registry, expect_bool=path[-1] == "when")
                if expr is not None:
                    self.exprs[path] = expr

    def expression(self, path: KeyPath, registry: Registry, *, expect_bool: bool) -> Expr | None:
        """The expression at ``path`` compiled against ``registry``; None (its problems recorded)
        when it does not compile or is not a non-empty text."""
        node = self.scalars.get(path)
        if node is None:
            return None
        value: Any = node.value if node.style else plain_scalar(node.value)
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, str) or not value.strip():
            return None
        locate = scalar_locator(self.lines, node, value)
        origin = Origin(self.name, *locate(0))
        try:
            return compile_expression(value, origin=origin, expect_bool=expect_bool, locate=locate, registry=registry)
        except RuleError as exc:
            self.problems.extend(exc.problems)
            return None


def _is_expression_path(path: KeyPath) -> bool:
    if not path or path[-1] not in ("when", "of"):
        return False
    return tuple("#" if isinstance(p, int) else p for p in path) in _EXPRESSION_PATHS
