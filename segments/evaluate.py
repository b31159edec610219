"""Rule evaluation: which segments a DNA matches, and its micro-segment code.

A ``when`` that evaluates to null (or anything but ``True``) does not enter the segment
(CONTRACT §3). The DNA code is one label per dimension, joined by ``|`` in dimension order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from typing import Any

from microseg.segments.ruleset import CasesDimension, CutsDimension, Dimension, Expr, RuleSet

__all__ = ["evaluate_segments", "dna_code", "dimension_label", "expr_reads", "dimension_reads", "ReaderIndex", "NA", "CODE_SEPARATOR"]

NA = "na"
CODE_SEPARATOR = "|"


def expr_reads(expr: Expr) -> frozenset[str]:
    """The DNA field and function names an expression reads."""
    return expr.fields | expr.functions


def dimension_reads(dimension: Dimension) -> frozenset[str]:
    if isinstance(dimension, CasesDimension):
        return frozenset().union(*(expr_reads(expr) for _, expr in dimension.cases))
    return expr_reads(dimension.of)


class ReaderIndex:
    """Which rules read which DNA names, with the answer per set of changed names remembered
    (events of one type change the same few sets of names over and over)."""

    __slots__ = ("_readers", "_cache")

    def __init__(self, reads: tuple[frozenset[str], ...]) -> None:
        index: dict[str, list[int]] = {}
        for position, names in enumerate(reads):
            for name in names:
                index.setdefault(name, []).append(position)
        self._readers = {name: tuple(positions) for name, positions in index.items()}
        self._cache: dict[frozenset[str], tuple[int, ...]] = {}

    def stale(self, dirty: frozenset[str]) -> tuple[int, ...]:
        """Positions of the rules reading any of ``dirty``, in order."""
        found = self._cache.get(dirty)
        if found is None:
            positions: set[int] = set()
            for name in dirty:
                positions.update(self._readers.get(name, ()))
            found = tuple(sorted(positions))
            if len(self._cache) < 4096:
                self._cache[dirty] = found
        return found


def evaluate_segments(
    ruleset: RuleSet,
    ctx: Mapping[str, Any],
    *,
    previous: tuple[str, ...] = (),
    dirty: frozenset[str] | None = None,
    readers: ReaderIndex | None = None,
) -> tuple[str, ...]:
    """Ids of the segments whose rule is true, in rule-file order.

    With ``dirty`` (the DNA names that may have changed since ``previous`` was computed) and the
    ``readers`` index, only the segments reading one of those names are evaluated again.
    """
    segments = ruleset.segments
    if dirty is None or readers is None:
        return tuple(segment.id for segment in segments if segment.when.fn(ctx) is True)
    stale = readers.stale(dirty)
    if not stale:
        return previous
    members = set(previous)
    changed = False
    for position in stale:
        segment = segments[position]
        inside = segment.when.fn(ctx) is True
        if inside != (segment.id in members):
            changed = True
            if inside:
                members.add(segment.id)
            else:
                members.discard(segment.id)
    if not changed:
        return previous
    return tuple(segment.id for segment in segments if segment.id in members)


def _label(value: Any) -> str:
    if value is None:
        return NA
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).replace(CODE_SEPARATOR, "_")[:64] or NA


def _case_label(label: str) -> str:
    return label.replace(CODE_SEPARATOR, "_")


def dimension_label(dimension: Dimension, ctx: Mapping[str, Any]) -> str:
    if isinstance(dimension, CasesDimension):
        for label, expr in dimension.cases:
            if expr.fn(ctx) is True:
                return _case_label(label)
        return NA
    value = dimension.of.fn(ctx)
    if isinstance(dimension, CutsDimension):
        if value is None or isinstance(value, (bool, str)):
            return NA
        return _case_label(dimension.labels[bisect_right(dimension.cuts, value)])
    return _label(value)


def dna_code(
    ruleset: RuleSet,
    ctx: Mapping[str, Any],
    *,
    previous: str | None = None,
    dirty: frozenset[str] | None = None,
    readers: ReaderIndex | None = None,
) -> str | None:
    """The micro-segment cell of a DNA, or None when the rule set defines no dimensions."""
    dimensions = ruleset.dimensions
    if not dimensions:
        return None
    labels = previous.split(CODE_SEPARATOR) if dirty is not None and readers is not None and previous is not None else None
    if labels is None or len(labels) != len(dimensions):
        return CODE_SEPARATOR.join(dimension_label(d, ctx) for d in dimensions)
    stale = readers.stale(dirty) if dirty is not None and readers is not None else ()
    if not stale:
        return previous
    for position in stale:
        labels[position] = dimension_label(dimensions[position], ctx)
    return CODE_SEPARATOR.join(labels)
