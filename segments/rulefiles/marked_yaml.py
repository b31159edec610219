"""YAML read as a node tree that keeps every value's position, with nothing that can construct objects.

PyYAML's safe composer, minus tags, anchors and aliases (refused outright, so nothing in a rule
file can construct objects or expand exponentially) and minus nesting deeper than
``MAX_YAML_DEPTH``. Plain scalars follow the YAML 1.2 core schema (``no``, ``on``, ``21:00`` stay
text), see ``plain_scalar``.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from microseg.segments.rulefiles.positions import TextLines

__all__ = ["MAX_YAML_DEPTH", "YamlProblem", "compose", "plain_scalar", "position"]

MAX_YAML_DEPTH = 20


class YamlProblem(Exception):
    """The text is not a rule file's YAML: ``where`` is ``(line, col)`` from 1, ``message`` says why."""

    def __init__(self, where: tuple[int, int], message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


class _Refused(Exception):
    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _SafeComposer(yaml.SafeLoader):
    """SafeLoader's node composer minus tags, anchors, aliases and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 - PyYAML hook
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(event.start_mark, f"aliases (*{event.anchor}) are not allowed in rule files; write the value out")
        if event.anchor is not None:
            raise _Refused(event.start_mark, f"anchors (&{event.anchor}) are not allowed in rule files; write values out")
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise _Refused(event.start_mark, f"YAML tags ({tag}) are not allowed in rule files")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(event.start_mark, f"rule file nests more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def position(mark: Any) -> tuple[int, int]:
    """A PyYAML mark (0-based) as ``(line, col)`` from 1."""
    return mark.line + 1, mark.column + 1


def compose(text: str, lines: TextLines) -> yaml.Node:
    """The root node of ``text``, a single YAML document; raises ``YamlProblem`` for a refused
    construct, a YAML syntax error or an empty document."""
    loader = _SafeComposer(text)
    try:
        root = loader.get_single_node()
    except _Refused as exc:
        raise YamlProblem(position(exc.mark), exc.message) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = position(mark) if mark is not None else (1, 1)
        message = f"YAML: {exc.problem or exc.context}"
        if exc.problem is not None and ("got '?'" in exc.problem or "got '['" in exc.problem or "got ']'" in exc.problem):
            message += "; inside {...} or [...] quote values with ? [ or ], e.g. {seats: 'number?', tags: 'list[string]'}"
        raise YamlProblem(where, message) from None
    except yaml.reader.ReaderError as exc:
        raise YamlProblem(lines.at(exc.position), f"YAML: {exc.reason} (character {exc.character!r})") from None
    except yaml.YAMLError as exc:
        raise YamlProblem((1, 1), f"YAML: {exc}") from None
    finally:
        loader.dispose()
    if root is None:
        raise YamlProblem((1, 1), "empty rule file; start it with 'version: 1'")
    return root


_NULL = re.compile(r"^(~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]{1,18}$")
_FLOAT = re.compile(r"^[-+]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]{1,3})?$")


def plain_scalar(value: str) -> Any:
    """YAML 1.2 core schema for plain scalars: only true/false/null/numbers are not text."""
    if _NULL.match(value):
        return None
    if value in _BOOL:
        return _BOOL[value]
    if _INT.match(value):
        return int(value)
    if len(value) < 40 and _FLOAT.match(value):
        return float(value)
    return value
