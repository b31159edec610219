"""Merging two DNA records: an anonymous visitor's into the customer it was identified as (CONTRACT §8).

``merge(customer, anonymous, traits)`` returns a new record (neither input is changed). Every field
of ``Dna`` has exactly one rule, declared once in ``RULES`` with the fields it covers, whether it is
*exact* and its description; ``docs/dna.md`` (*Merging two profiles*) is generated from the
declarations (``render_rules``) and a test holds every ``Dna`` field to one rule.

*Exact* means: folding events ``A`` into one profile and ``B`` into another, then merging, gives
the same field as folding ``A`` and ``B`` (in any order) into one profile. Counts, sums and window
buckets add; ``first_*`` take the earlier and ``last_*`` the later instant; "last" values
(timezone, declared preferred channel, last channel) and consent are the newest by event time
(ties broken as the fold breaks them, ``dna_record.newer``). Those rules are deterministic,
associative (merge(merge(a, b), c) == merge(a, merge(b, c))) and commutative.

The other fields have a documented rule, not the one-profile answer, because the fold keeps less
than would be needed (a cap, or an order of events it does not remember): affinity scores (decayed
to the later instant and added; top ``MAX_CATEGORIES``), channels and campaign counters past
``MAX_CHANNELS``, remembered event ids, the open session and cart (the newer wins), the window
metrics that depend on the interleaving of events (bounces, channel switches, abandoned carts),
``purchase_days`` (days both bought on are known only while in both windows), open support
contacts (each profile's count, floored at zero, added), survey answers at the same instant, and
profile attributes, where the customer's values win (the contract's rule), the anonymous visitor's
filling only the names the customer has not set. Those stay deterministic and associative (left
wins where one side wins); the floating-point sums of affinity scores are associative to rounding,
and ``purchase_days`` only while the profiles' purchase days are within 90 days of each other.

Merging is not idempotent on counts (merge(a, a) doubles them): merging the same pair twice is
prevented one level up, by the alias table (``segments.identity``), as the contract asks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from microseg.segments import windows as w
from microseg.segments.dna_record import (
    ABANDON_AFTER_S,
    AFFINITY_HALF_LIFE_DAYS,
    MAX_ATTRIBUTES,
    MAX_CATEGORIES,
    MAX_CHANNELS,
    RECENT_IDS,
    Dna,
    attribute_value,
    newer,
    tie_key,
)
from microseg.segments.event_types import GRANT, REVOKE, UNSUBSCRIBE, _decide_consent  # the fold's own consent rule
from microseg.segments.traits import MAX_VALUES, Trait, _frequent_victim

__all__ = ["MergeRule", "RULES", "EXACT_METRICS", "merge", "merge_trait", "render_rules"]

_DECAY_PER_S = math.log(2) / (AFFINITY_HALF_LIFE_DAYS * w.DAY)

EXACT_METRICS: frozenset[int] = frozenset(
    {w.SESSIONS, w.PAGE_VIEWS, w.APP_SESSIONS, w.WEB_SESSIONS, w.PURCHASES, w.SPEND, w.REFUNDS, w.MESSAGES, w.CONVERSIONS, w.SUPPORT}
)
"""Window metrics whose per-day counts are the one-profile answer after a merge; bounces, channel
switches and abandoned carts depend on how the two profiles' events interleave."""

Merger = Callable[[Dna, Dna, Dna, Mapping[str, Trait]], None]
"""``rule(customer, anonymous, out, traits)`` sets the rule's fields on ``out`` (a fresh record)."""


@dataclass(frozen=True)
class MergeRule:
    """The merge of some ``Dna`` fields: ``exact`` as defined in the module docstring; ``doc`` in
    the docs' words (rendered into docs/dna.md)."""

    fields: tuple[str, ...]
    exact: bool
    doc: str
    apply: Merger


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _earlier(name: str) -> Merger:
    def apply(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
        setattr(out, name, _min(getattr(c, name), getattr(a, name)))

    return apply


def _later(name: str) -> Merger:
    def apply(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
        setattr(out, name, _max(getattr(c, name), getattr(a, name)))

    return apply


def _sum(name: str) -> Merger:
    def apply(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
        setattr(out, name, getattr(c, name) + getattr(a, name))

    return apply


def _first_seen(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    out.first_seen = min(c.first_seen, a.first_seen)


def _last_seen(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    out.last_seen = max(c.last_seen, a.last_seen)


def _acquired(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    out.acquired = c.acquired or a.acquired


def _first_day_cents(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    if c.first_purchase is None or a.first_purchase is None:
        out.first_day_cents = c.first_day_cents if a.first_purchase is None else a.first_day_cents
    elif w.day_of(c.first_purchase) == w.day_of(a.first_purchase):
        out.first_day_cents = c.first_day_cents + a.first_day_cents
    else:
        out.first_day_cents = c.first_day_cents if c.first_purchase < a.first_purchase else a.first_day_cents


def merge_windows(c: w.Windows, a: w.Windows) -> w.Windows:
    """Per-day rows added, days that left the 90-day retention of the newer side dropped, the
    running totals recomputed as of the newer side's day."""
    if a.day < 0:
        return c.copy()
    if c.day < 0:
        return a.copy()
    day = max(c.day, a.day)
    first = day - w.RETENTION_DAYS
    rows: dict[int, list[int]] = {}
    for source in (c.rows, a.rows):
        for d, row in source.items():
            if d <= first:
                continue
            kept = rows.get(d)
            rows[d] = row if kept is None else [x + y for x, y in zip(kept, row)]  # rows are never changed in place
    totals = [[0] * w.METRICS for _ in w.SPANS]
    for d, row in rows.items():
        for i, span in enumerate(w.SPANS):
            if d > day - span:
                totals[i] = [x + y for x, y in zip(totals[i], row)]
    return w.Windows(rows, totals, day)


def _windows(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    out.windows = merge_windows(c.windows, a.windows)


def _purchase_days(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    both = sum(1 for d, row in c.windows.rows.items() if row[w.PURCHASES] > 0 and (a.windows.rows.get(d) or (0,) * w.METRICS)[w.PURCHASES] > 0)
    out.purchase_days = c.purchase_days + a.purchase_days - both


def _session(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    if a.session_start is not None and (c.session_start is None or a.session_start > c.session_start):
        out.session_start, out.session_views = a.session_start, a.session_views
    else:
        out.session_start, out.session_views = c.session_start, c.session_views


def _cart(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    carts = sorted((d.cart_at, d.cart_value) for d in (c, a) if d.cart_at is not None)
    last_purchase = _max(c.last_purchase, a.last_purchase)
    windows = out.windows
    open_at: float | None = None
    value = 0.0
    for at, cart_value in carts:
        if open_at is not None and at >= open_at + ABANDON_AFTER_S:  # the fold settles an older cart first
            windows.add(open_at + ABANDON_AFTER_S, w.ABANDONED)
        open_at, value = at, cart_value
    if open_at is not None and last_purchase is not None and last_purchase >= open_at:
        if last_purchase >= open_at + ABANDON_AFTER_S:  # abandoned before that purchase came
            windows.add(open_at + ABANDON_AFTER_S, w.ABANDONED)
        open_at, value = None, 0.0
    out.cart_at, out.cart_value = open_at, value


def _affinity(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    at = max(c.affinity_at, a.affinity_at)
    scores: dict[str, float] = {}
    for d in (c, a):
        factor = math.exp(-_DECAY_PER_S * (at - d.affinity_at)) if d.affinity_at != at else 1.0
        for category, score in d.affinity.items():
            scores[category] = scores.get(category, 0.0) + score * factor
    if len(scores) > MAX_CATEGORIES:
        kept = sorted(scores, key=lambda k: (-scores[k], k))[:MAX_CATEGORIES]
        scores = {k: scores[k] for k in kept}
    out.affinity_at, out.affinity = at, scores


def _top(table: dict[str, Any], limit: int) -> dict[str, Any]:
    """At most ``limit`` entries: the largest values (ties: the alphabetically first names)."""
    if len(table) <= limit:
        return table
    kept = sorted(table, key=lambda k: (-table[k], k))[:limit]
    return {k: table[k] for k in kept}


def _channel_days(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    days = dict(c.channel_days)
    for channel, day in a.channel_days.items():
        days[channel] = max(day, days.get(channel, day))
    out.channel_days = _top(days, MAX_CHANNELS)


def _channel_uses(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    uses = dict(c.channel_uses)
    for channel, n in a.channel_uses.items():
        uses[channel] = uses.get(channel, 0) + n
    out.channel_uses = _top(uses, MAX_CHANNELS)


def _newest(value: str, at: str) -> Merger:
    def apply(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
        keep = a if getattr(a, value) is not None and newer(getattr(a, at), getattr(a, value), getattr(c, at), getattr(c, value)) else c
        setattr(out, value, getattr(keep, value))
        setattr(out, at, getattr(keep, at))

    return apply


def _consent(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    out.consent = dict(c.consent)
    out.unsubscribed = dict(c.unsubscribed)
    for channel, kept in sorted(a.consent.items()):
        unsub = a.unsubscribed.get(channel)
        same = unsub is not None and unsub > 0 and unsub == -kept  # the newest decision was that unsubscribe
        if kept > 0:
            _decide_consent(out, channel, kept, GRANT)
        else:
            _decide_consent(out, channel, -kept, UNSUBSCRIBE if same else REVOKE)
        if unsub is not None and not same:  # the newest unsubscribe or grant, when another decision
            _decide_consent(out, channel, abs(unsub), UNSUBSCRIBE if unsub > 0 else GRANT)


def _campaigns(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    merged = {channel: counts[:] for channel, counts in c.campaigns.items()}
    for channel in sorted(a.campaigns):
        counts = a.campaigns[channel]
        kept = merged.get(channel)
        if kept is not None:
            merged[channel] = [x + y for x, y in zip(kept, counts)]
        elif len(merged) < MAX_CHANNELS:
            merged[channel] = counts[:]
    out.campaigns = merged


def _voice(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    voice = dict(c.voice)
    for kind, answer in a.voice.items():
        kept = voice.get(kind)
        if kept is None or answer[1] > kept[1]:
            voice[kind] = answer
    out.voice = voice


def _open_support(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    out.open_support = c.open_support + a.open_support


def _attributes(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    at = c.attributes_at if c.attributes_at is not None else a.attributes_at
    table: dict[str, Any] = {}
    for source in (c, a):
        for name, stored in source.attributes.items():
            if name in table:
                continue  # the customer's value wins
            t = stored[1] if type(stored) is list else source.attributes_at
            value = attribute_value(stored)
            table[name] = value if t == at else [value, t]
    if len(table) > MAX_ATTRIBUTES:
        def set_at(name: str) -> tuple[float, int, str]:
            stored = table[name]
            return (stored[1] if type(stored) is list else at or 0.0), 0 if name in c.attributes else 1, name

        kept = sorted(table, key=lambda k: (-set_at(k)[0], set_at(k)[1], k))[:MAX_ATTRIBUTES]
        table = {k: table[k] for k in kept}
    out.attributes, out.attributes_at = table, at


def _recent_ids(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    ids = [h for h in a.recent_ids if h not in c.recent_ids] + list(c.recent_ids)
    out.recent_ids = ids[-RECENT_IDS:]


def _engaged_hours(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    if not a.engaged_hours or not c.engaged_hours:
        out.engaged_hours = list(c.engaged_hours or a.engaged_hours)
    else:
        out.engaged_hours = [x + y for x, y in zip(c.engaged_hours, a.engaged_hours)]


def _traits(c: Dna, a: Dna, out: Dna, traits: Mapping[str, Trait]) -> None:
    merged = dict(c.traits)
    for trait_id, stored in a.traits.items():
        kept = merged.get(trait_id)
        trait = traits.get(trait_id)
        if kept is None:
            if trait is None or stored[0] == trait.fingerprint:
                merged[trait_id] = stored
        elif trait is not None:
            state = merge_trait(kept, stored, trait)
            if state is not None:
                merged[trait_id] = state
    out.traits = merged


def merge_trait(kept: list[Any], other: list[Any], trait: Trait) -> list[Any] | None:
    """Two stored states of ``trait`` merged (``[fingerprint, data, oldest bucket]``): buckets of
    ``count``/``sum``/``avg`` add, ``min``/``max``/``first``/``last`` keep the winner per bucket
    (ties by ``tie_key``, as the fold), ``distinct_count`` keeps the newest bucket per value and then
    the ``MAX_VALUES`` newest values, ``most_frequent`` adds the counts per value and bucket and then
    evicts as the fold does (oldest newest bucket, fewest events) down to ``MAX_VALUES``; buckets
    the newer side pushed out of the window are dropped. A state of another definition of the
    trait reads as empty (the fold's rule). None when both are empty."""
    fingerprint = trait.fingerprint
    left: dict[Any, Any] = kept[1] if kept and kept[0] == fingerprint else {}
    right: dict[Any, Any] = other[1] if other and other[0] == fingerprint else {}
    if not right:
        return kept if left else None
    if not left:
        return other
    aggregate = trait.aggregate
    data: dict[Any, Any] = dict(left)
    if aggregate == "distinct_count":
        for key, b in right.items():
            data[key] = max(b, data.get(key, b))
        newest = max(data.values())
        if trait.span:
            data = {k: b for k, b in data.items() if b > newest - trait.span}
        if len(data) > MAX_VALUES:
            data = dict(sorted(data.items(), key=lambda kv: (kv[1], kv[0]))[-MAX_VALUES:])
        return [fingerprint, data, min(data.values())]
    if aggregate == "most_frequent":
        for value, counts in right.items():
            mine = data.get(value)
            if mine is None:
                data[value] = dict(counts)
            else:
                added = dict(mine)
                for b, n in counts.items():
                    added[b] = added.get(b, 0) + n
                data[value] = added
        if trait.span:
            newest = max(max(counts) for counts in data.values())
            pruned: dict[Any, Any] = {}
            for value, counts in data.items():
                inside = {b: n for b, n in counts.items() if b > newest - trait.span}
                if inside:
                    pruned[value] = inside
            data = pruned
        while len(data) > MAX_VALUES:
            del data[_frequent_victim(data)]
        return [fingerprint, data, min(min(counts) for counts in data.values())]
    for b, entry in right.items():
        mine = data.get(b)
        if mine is None:
            data[b] = entry
        elif aggregate in ("count", "sum"):
            data[b] = mine + entry
        elif aggregate == "avg":
            data[b] = [mine[0] + entry[0], mine[1] + entry[1]]
        elif aggregate == "min":
            if entry < mine or (entry == mine and tie_key(entry) < tie_key(mine)):
                data[b] = entry
        elif aggregate == "max":
            if entry > mine or (entry == mine and tie_key(entry) < tie_key(mine)):
                data[b] = entry
        elif aggregate == "first":
            if entry[0] < mine[0] or (entry[0] == mine[0] and tie_key(entry[1]) < tie_key(mine[1])):
                data[b] = entry
        elif aggregate == "last":
            if entry[0] > mine[0] or (entry[0] == mine[0] and tie_key(entry[1]) < tie_key(mine[1])):
                data[b] = entry
        else:
            raise ValueError(f"unknown aggregate {aggregate!r}")
    if trait.span:
        newest = max(data)
        data = {b: e for b, e in data.items() if b > newest - trait.span}
    return [fingerprint, data, min(data)]


RULES: tuple[MergeRule, ...] = (
    MergeRule(("first_seen",), True, "the earlier", _first_seen),
    MergeRule(("last_seen",), True, "the later", _last_seen),
    MergeRule(("last_activity",), True, "the later (null: none)", _later("last_activity")),
    MergeRule(("acquired",), True, "either", _acquired),
    MergeRule(("first_purchase",), True, "the earlier", _earlier("first_purchase")),
    MergeRule(("last_purchase",), True, "the later", _later("last_purchase")),
    MergeRule(("last_message",), True, "the later", _later("last_message")),
    MergeRule(("purchases_total",), True, "added", _sum("purchases_total")),
    MergeRule(("gross_cents",), True, "added", _sum("gross_cents")),
    MergeRule(("refunded_cents",), True, "added", _sum("refunded_cents")),
    MergeRule(("reviews",), True, "added", _sum("reviews")),
    MergeRule(("referrals",), True, "added", _sum("referrals")),
    MergeRule(("first_day_cents",), True, "the spend of the earlier first purchase day; added when both first bought on the same day", _first_day_cents),
    MergeRule(
        ("windows",),
        True,
        "per-day counters added, days past the newer side's 90-day retention dropped, totals recomputed; exact for sessions, "
        "page views, app/web sessions, purchases, spend, refunds, messages, conversions and support contacts; bounces, channel "
        "switches and abandoned carts are each profile's own, added (they depend on how the two profiles' events interleave)",
        _windows,
    ),
    MergeRule(
        ("purchase_days",), False, "added, less the days both bought on that are still in both windows (older common days count twice)", _purchase_days
    ),
    MergeRule(("session_start", "session_views"), False, "the newer open session with its page views (the other's views after it are not counted)", _session),
    MergeRule(
        ("cart_at", "cart_value"),
        False,
        "the newer open cart, closed if either profile bought at or after it; an older cart counts as abandoned when the newer "
        "cart or that purchase came an hour or more after it (as the fold settles it)",
        _cart,
    ),
    MergeRule(
        ("affinity_at", "affinity"),
        False,
        "each decayed to the later instant and added; the top 12 kept (ties: alphabetically first)",
        _affinity,
    ),
    MergeRule(("channel_days",), True, "the later day per channel (exact up to 16 channels; past that the 16 used latest)", _channel_days),
    MergeRule(("channel_uses",), True, "added per channel (exact up to 16 channels; past that the 16 used most)", _channel_uses),
    MergeRule(("last_channel", "last_channel_at"), True, "the newer by event time (ties: `tie_key`)", _newest("last_channel", "last_channel_at")),
    MergeRule(("timezone", "timezone_at"), True, "the newer by event time", _newest("timezone", "timezone_at")),
    MergeRule(("preferred_channel", "preferred_channel_at"), True, "the newer by event time", _newest("preferred_channel", "preferred_channel_at")),
    MergeRule(
        ("consent", "unsubscribed"),
        True,
        "the anonymous side's decisions folded into the customer's with the fold's own rule (newest by event time; at the same "
        "instant the most restrictive); exact up to 16 channels",
        _consent,
    ),
    MergeRule(("campaigns",), True, "counters added per channel (exact up to 16 channels; the customer's channels first)", _campaigns),
    MergeRule(("voice",), False, "the newer answer per kind (at the same instant: the customer's)", _voice),
    MergeRule(("open_support",), False, "added (each profile's count, floored at zero by its own resolutions)", _open_support),
    MergeRule(
        ("attributes", "attributes_at"),
        False,
        "the customer's win: the anonymous visitor's values fill only names the customer has not set (32 names at most: "
        "the most recently set, the customer's first)",
        _attributes,
    ),
    MergeRule(("recent_ids",), False, "the anonymous visitor's ids not already there, then the customer's; the last 16 kept", _recent_ids),
    MergeRule(
        ("traits",),
        True,
        "per trait by its aggregate (`merge_trait`): count, sum and avg buckets add; min, max, first, last keep the winner per "
        "bucket; exact but for distinct_count and most_frequent past 64 values (the newest values kept, as the fold keeps them)",
        _traits,
    ),
    MergeRule(("engaged_hours",), False, "added per local hour of day (each side's hours as counted in the time zone it knew then)", _engaged_hours),
)
"""One rule per ``Dna`` field (a test holds them to the class), in the order docs/dna.md shows them."""


def merge(customer: Dna, anonymous: Dna, traits: Mapping[str, Trait] | None = None) -> Dna:
    """``anonymous`` merged into ``customer``: a new record, by ``RULES``; ``traits`` are the rule
    set's trait definitions by id (a trait state without one keeps the customer's)."""
    out = Dna()
    defined = {} if traits is None else traits
    for rule in RULES:  # the windows before the cart: it may count an abandoned cart
        rule.apply(customer, anonymous, out, defined)
    return out


def render_rules() -> str:
    """The merge table of docs/dna.md."""
    lines = ["| record field | merge rule | exact |", "|---|---|---|"]
    for rule in RULES:
        names = ", ".join(f"`{name}`" for name in rule.fields)
        lines.append(f"| {names} | {rule.doc.replace('|', '/')} | {'yes' if rule.exact else 'rule'} |")
    return "\n".join(lines)
