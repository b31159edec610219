"""One section entry of a validated rule file -> its compiled form: dimensions, messages, the contact policy.

Each builder gets the ``RuleFile`` (for positions and compiled expressions), the entry's
``KeyPath`` and a ``report(where, message)`` callback for problems; it returns ``None`` when the
entry cannot be built (its problems reported). Durations become seconds, clock times minutes
after midnight.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable

from microseg.schemas.rulefile import DimensionModel, MessageModel, RuleFileModel
from microseg.segments.fields import Kind
from microseg.segments.rulefiles.positions import KeyPath
from microseg.segments.rulefiles.rule_file import RuleFile
from microseg.segments.ruleset import (
    CasesDimension,
    CategoryDimension,
    ContactPolicy,
    CutsDimension,
    Dimension,
    Expr,
    Message,
    Origin,
)

__all__ = ["Report", "build_dimension", "build_message", "build_policy"]

Report = Callable[[tuple[int, int], str], None]
"""Records a problem at ``(line, col)`` of the file being built."""

_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60}


def build_dimension(part: RuleFile, path: KeyPath, dim: DimensionModel, add: Report) -> Dimension | None:
    """A micro-segment dimension: ``cases`` (first matching label), a category (``of``) or numeric
    bands (``of`` with strictly increasing ``cuts`` and one more ``labels``)."""
    origin = Origin(part.name, *part.at(path))
    if dim.cases is not None:
        if dim.of is not None or dim.cuts is not None or dim.labels is not None:
            add(part.at((*path, "cases"), key=True), f"dimension '{dim.name}': use either 'cases' or 'of' (with 'cuts' and 'labels'), not both")
            return None
        labels: set[str] = set()
        cases: list[tuple[str, Expr]] = []
        for j, case in enumerate(dim.cases):
            if not _label_ok(part, (*path, "cases", j, "label"), case.label, labels, add):
                continue
            expr = part.exprs.get((*path, "cases", j, "when"))
            if expr is not None:
                cases.append((case.label, expr))
        return CasesDimension(dim.name, tuple(cases), origin) if len(cases) == len(dim.cases) else None
    if dim.of is None:
        add(part.at(path), f"dimension '{dim.name}' needs 'cases', or 'of' (with 'cuts' and 'labels' for numeric bands)")
        return None
    of = part.exprs.get((*path, "of"))
    if dim.cuts is None and dim.labels is None:
        if of is not None and of.type.kind is Kind.LIST:  # pragma: no cover - lists cannot be values
            return None
        return CategoryDimension(dim.name, of, origin) if of is not None else None
    if dim.cuts is None or dim.labels is None:
        missing = "cuts" if dim.cuts is None else "labels"
        add(part.at(path), f"dimension '{dim.name}': numeric bands need both 'cuts' and 'labels' (missing '{missing}')")
        return None
    ok = True
    if len(dim.labels) != len(dim.cuts) + 1:
        add(part.at((*path, "labels")), f"dimension '{dim.name}': {len(dim.cuts)} cuts make {len(dim.cuts) + 1} bands, so give {len(dim.cuts) + 1} labels (got {len(dim.labels)})")
        ok = False
    for j in range(1, len(dim.cuts)):
        if dim.cuts[j] <= dim.cuts[j - 1]:
            add(part.at((*path, "cuts", j)), f"dimension '{dim.name}': cuts must be strictly increasing ({dim.cuts[j]:g} after {dim.cuts[j - 1]:g})")
            ok = False
    labels = set()
    for j, label in enumerate(dim.labels):
        ok = _label_ok(part, (*path, "labels", j), label, labels, add) and ok
    if of is not None and of.type.kind not in (Kind.NUMBER, Kind.ANY):
        add(part.at((*path, "of")), f"dimension '{dim.name}': 'of' with cuts must be a number, got {of.type.kind.value}")
        ok = False
    if not ok or of is None:
        return None
    return CutsDimension(dim.name, of, tuple(float(c) for c in dim.cuts), tuple(dim.labels), origin)


def _label_ok(part: RuleFile, path: KeyPath, label: str, seen: set[str], add: Report) -> bool:
    if label == "na":
        add(part.at(path), "'na' is reserved for 'no case matched'; choose another label")
        return False
    if label in seen:
        add(part.at(path), f"label '{label}' is used twice in this dimension")
        return False
    seen.add(label)
    return True


def build_message(part: RuleFile, path: KeyPath, msg: MessageModel, add: Report) -> Message | None:
    """A message, with its cooldown in seconds; segment references are checked across files by the caller."""
    when = part.exprs.get((*path, "when"))
    if msg.segments is None and msg.when is None:
        add(part.at(path), f"message '{msg.id}' needs 'segments' (a list of segment ids) or 'when' (an expression)")
        return None
    if msg.when is not None and when is None:
        return None
    amount, unit = int(msg.cooldown[:-1]), msg.cooldown[-1]
    return Message(
        id=msg.id,
        segments=tuple(msg.segments or ()),
        when=when,
        channel=msg.channel,
        priority=msg.priority,
        cooldown_s=amount * _UNIT_SECONDS[unit],
        holdout=float(msg.holdout),
        description=msg.description,
        origin=Origin(part.name, *part.at(path)),
    )


def build_policy(part: RuleFile, model: RuleFileModel, add: Report) -> ContactPolicy | None:
    """The contact policy of ``model`` (which has one): caps, quiet hours in minutes after local midnight, time zone."""
    cp = model.contact_policy
    assert cp is not None
    tz = cp.default_timezone or "UTC"
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        add(part.at(("contact_policy", "default_timezone")), f"unknown time zone '{tz}'; use an IANA name such as 'Europe/Paris'")
        return None
    start = end = None
    if cp.quiet_hours is not None:
        start = _minutes(cp.quiet_hours.start)
        end = _minutes(cp.quiet_hours.end)
        if start == end:
            add(part.at(("contact_policy", "quiet_hours")), "quiet hours start and end are the same; remove quiet_hours for none")
            return None
    caps = cp.caps
    return ContactPolicy(
        per_day=caps.per_day if caps else None,
        per_week=caps.per_week if caps else None,
        quiet_start_min=start,
        quiet_end_min=end,
        default_timezone=tz,
        quiet_action=cp.quiet_hours.action if cp.quiet_hours is not None else "defer",
    )


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)
