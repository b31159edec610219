"""Rule evaluation: which segments a DNA matches, and its micro-segment code.

A ``when`` that evaluates to null (or anything but ``True``) does not enter the segment
(CONTRACT §3). The DNA code is one label per dimension, joined by ``|`` in dimension order.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from typing import Any

from microseg.segments.ruleset import CasesDimension, CutsDimension, Dimension, RuleSet

__all__ = ["evaluate_segments", "dna_code", "dimension_label", "NA", "CODE_SEPARATOR"]

NA = "na"
CODE_SEPARATOR = "|"


def evaluate_segments(ruleset: RuleSet, ctx: Mapping[str, Any]) -> tuple[str, ...]:
    """Ids of the segments whose rule is true, in rule-file order."""
    return tuple(segment.id for segment in ruleset.segments if segment.when.fn(ctx) is True)


def _label(value: Any) -> str:
    if value is None:
        return NA
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).replace(CODE_SEPARATOR, "_")[:64] or NA


def dimension_label(dimension: Dimension, ctx: Mapping[str, Any]) -> str:
    if isinstance(dimension, CasesDimension):
        for label, expr in dimension.cases:
            if expr.fn(ctx) is True:
                return label
        return NA
    value = dimension.of.fn(ctx)
    if isinstance(dimension, CutsDimension):
        if value is None or isinstance(value, (bool, str)):
            return NA
        return dimension.labels[bisect_right(dimension.cuts, value)]
    return _label(value)


def dna_code(ruleset: RuleSet, ctx: Mapping[str, Any]) -> str | None:
    """The micro-segment cell of a DNA, or None when the rule set defines no dimensions."""
    if not ruleset.dimensions:
        return None
    return CODE_SEPARATOR.join(dimension_label(d, ctx) for d in ruleset.dimensions)
