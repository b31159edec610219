"""One section entry of a validated rule file -> its compiled form: dimensions, messages, the contact policy.

Each builder gets the ``RuleFile`` (for positions and compiled expressions), the entry's
``KeyPath`` and a ``report(where, message)`` callback for problems; it returns ``None`` when the
entry cannot be built (its problems reported). Durations become seconds, clock times minutes
after midnight.
"""

from __future__ import annotations

import difflib
import zoneinfo
from collections.abc import Callable

from microseg.schemas.rulefile import DimensionModel, MessageModel, RuleFileModel
from microseg.segments.fields import Kind
from microseg.segments.rulefiles.positions import KeyPath
from microseg.segments.rulefiles.rule_file import RuleFile
from microseg.segments.ruleset import (
    CasesDimension,
    CategoryDimension,
    MESSAGING_CHANNELS,
    ContactPolicy,
    CutsDimension,
    Dimension,
    Expr,
    Message,
    Origin,
)

__all__ = ["Report", "build_dimension", "build_message", "build_policy", "check_channels"]

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
    channels = tuple(msg.channel) if isinstance(msg.channel, list) else (msg.channel,)
    if len(set(channels)) != len(channels):
        add(part.at((*path, "channel")), f"message '{msg.id}': a channel is listed twice in {list(channels)}")
        return None
    if "preferred" in channels and len(channels) > 1:
        add(part.at((*path, "channel")), f"message '{msg.id}': 'preferred' already tries every messaging channel; use it alone")
        return None
    variants = tuple(v.id for v in msg.variants or ())
    if len(set(variants)) != len(variants):
        add(part.at((*path, "variants")), f"message '{msg.id}': variant ids must be unique, got {list(variants)}")
        return None
    valid_for = _seconds(msg.valid_for)
    if valid_for <= 0:
        add(part.at((*path, "valid_for")), f"message '{msg.id}': valid_for must be longer than 0 (e.g. 1d)")
        return None
    return Message(
        id=msg.id,
        segments=tuple(msg.segments or ()),
        when=when,
        channel=channels[0],
        priority=msg.priority,
        cooldown_s=_seconds(msg.cooldown),
        holdout=float(msg.holdout),
        description=msg.description,
        origin=Origin(part.name, *part.at(path)),
        channels=channels,
        valid_for_s=valid_for,
        on_cap=msg.on_cap,
        on_quiet=msg.on_quiet,
        send_at=msg.send_at,
        variants=variants,
        converts_on=msg.converts_on or "purchase",
        attribution_s=_seconds(msg.attribution),
    )


def _seconds(duration: str) -> int:
    """``<n>d``, ``<n>h`` or ``<n>m`` (``DURATION_PATTERN``) in seconds."""
    return int(duration[:-1]) * _UNIT_SECONDS[duration[-1]]


def check_channels(part: RuleFile, path: KeyPath, channels: tuple[str, ...], known: tuple[str, ...], add: Report, *, what: str) -> bool:
    """Every channel of a message (``path``: its ``channel``) is ``preferred`` or a messaging
    channel of the policy; a misspelt one is reported at its position with the closest name."""
    ok = True
    for j, name in enumerate(channels):
        if name == "preferred" or name in known:
            continue
        where = part.at((*path, j)) if len(channels) > 1 or (*path, 0) in part.value_marks else part.at(path)
        add(where, f"{what}: '{name}' is not a messaging channel{_hint(name, (*known, 'preferred'))}; messaging channels: {', '.join(known)} (contact_policy.channels)")
        ok = False
    return ok


def _hint(name: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


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
    channels = tuple(cp.channels) if cp.channels is not None else MESSAGING_CHANNELS
    ok = True
    if len(set(channels)) != len(channels):
        add(part.at(("contact_policy", "channels")), f"a channel is listed twice in contact_policy.channels: {list(channels)}")
        ok = False
    if "preferred" in channels:
        add(part.at(("contact_policy", "channels")), "'preferred' is not a channel name (messages use it for the most-engaged channel)")
        ok = False
    caps = cp.caps
    channel_caps: list[tuple[str, int | None, int | None]] = []
    for name, limits in sorted((caps.model_extra or {}).items() if caps else ()):
        if name not in channels:
            add(part.at(("contact_policy", "caps", name), key=True), f"caps: '{name}' is not a messaging channel{_hint(name, channels)}; messaging channels: {', '.join(channels)}")
            ok = False
            continue
        channel_caps.append((name, limits.per_day, limits.per_week))
    by_channel: list[tuple[str, str]] = []
    if isinstance(cp.consent, dict):
        for name, mode in sorted(cp.consent.items()):
            if name not in channels:
                add(part.at(("contact_policy", "consent", name), key=True), f"consent: '{name}' is not a messaging channel{_hint(name, channels)}; messaging channels: {', '.join(channels)}")
                ok = False
            by_channel.append((name, mode))
    if not ok:
        return None
    return ContactPolicy(
        per_day=caps.per_day if caps else None,
        per_week=caps.per_week if caps else None,
        quiet_start_min=start,
        quiet_end_min=end,
        default_timezone=tz,
        quiet_action=cp.quiet_hours.action if cp.quiet_hours is not None else "defer",
        channel_caps=tuple(channel_caps),
        consent=cp.consent if isinstance(cp.consent, str) else "opt_in",
        consent_by_channel=tuple(by_channel),
        channels=channels,
        global_holdout=float(cp.global_holdout),
    )


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)
