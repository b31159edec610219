"""The DNA record: the folded facts about one customer, as stored.

``Dna`` holds instants (epoch seconds), counters, money in integer cents and bounded tables;
everything time-relative (``days_since_*``, windows) is computed at read time from it by the
field declarations; ``traits`` holds the state of each computed trait by id (``segments.traits``) (``segments.builtin_fields``), so the record only changes when an event is
folded in (``segments.dna.fold``). Its bounds keep a customer's state small whatever the event
rate: ``MAX_CATEGORIES`` affinity scores, ``MAX_CHANNELS`` channels, ``MAX_ATTRIBUTES`` profile
attributes, the last ``RECENT_IDS`` event-id hashes.

The "last" values (consent, timezone, declared preferred channel, last channel, attributes) are
the newest *by event time*, whatever the order events are processed in: each keeps the instant
of the event that set it (``newer``), and an older event arriving late does not override it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

from microseg.segments import windows as w

__all__ = [
    "local_hour",
    "count_engaged_hour",
    "Dna",
    "to_cents",
    "cents_mean",
    "top_key",
    "most_used_channel",
    "bounded_put",
    "newest_put",
    "newer",
    "tie_key",
    "attribute_value",
    "instant",
    "LEGACY_T",
    "FIRST_SEEN",
    "LAST_ACTIVITY",
    "LAST_PURCHASE",
    "LAST_MESSAGE",
    "FIRST_PURCHASE",
    "ABANDON_AFTER_S",
    "AFFINITY_HALF_LIFE_DAYS",
    "MAX_CATEGORIES",
    "MAX_CHANNELS",
    "MAX_ATTRIBUTES",
    "RECENT_IDS",
]

ABANDON_AFTER_S = 3_600
"""A cart with no purchase this many seconds after its last cart event is abandoned."""
AFFINITY_HALF_LIFE_DAYS = 30.0
MAX_CATEGORIES = 12
MAX_CHANNELS = 16
MAX_ATTRIBUTES = 32
RECENT_IDS = 16

LEGACY_T = 1.0
"""The instant given to the "last" values of states stored before they kept one (format 1):
1970-01-01T00:00:01Z, older than any event can be (1990), so any later event overrides them,
as it did when they were stored."""

# Final: mypyc inlines them (a plain module global is a dict lookup on every comparison)
FIRST_SEEN: Final = 0
LAST_ACTIVITY: Final = 1
LAST_PURCHASE: Final = 2
LAST_MESSAGE: Final = 3
FIRST_PURCHASE: Final = 4
"""The record's instants a field can count days from (``instant``)."""


@dataclass(slots=True, init=False)
class Dna:
    """The folded facts about one customer: instants in epoch seconds, money in cents (see docs/dna.md)."""

    first_seen: float
    last_seen: float
    last_activity: float | None
    acquired: bool
    first_purchase: float | None
    last_purchase: float | None
    purchases_total: int
    purchase_days: int
    gross_cents: int
    first_day_cents: int
    refunded_cents: int
    windows: w.Windows
    session_start: float | None
    session_views: int
    cart_at: float | None
    cart_value: float
    affinity_at: float
    affinity: dict[str, float]
    channel_days: dict[str, int]
    channel_uses: dict[str, int]
    last_channel: str | None
    consent: dict[str, float]
    unsubscribed: dict[str, float]
    campaigns: dict[str, list[int]]
    last_message: float | None
    voice: dict[str, list[float]]
    open_support: int
    reviews: int
    referrals: int
    timezone: str | None
    preferred_channel: str | None
    attributes: dict[str, Any]
    recent_ids: list[int]
    last_channel_at: float | None
    timezone_at: float | None
    preferred_channel_at: float | None
    attributes_at: float | None
    traits: dict[str, list[Any]]
    engaged_hours: list[int]

    def __init__(
        self,
        first_seen: float = 0.0,
        last_seen: float = 0.0,
        last_activity: float | None = None,
        acquired: bool = False,
        first_purchase: float | None = None,
        last_purchase: float | None = None,
        purchases_total: int = 0,
        purchase_days: int = 0,
        gross_cents: int = 0,
        first_day_cents: int = 0,
        refunded_cents: int = 0,
        windows: w.Windows | None = None,
        session_start: float | None = None,
        session_views: int = 0,
        cart_at: float | None = None,
        cart_value: float = 0.0,
        affinity_at: float = 0.0,
        affinity: dict[str, float] | None = None,
        channel_days: dict[str, int] | None = None,
        channel_uses: dict[str, int] | None = None,
        last_channel: str | None = None,
        consent: dict[str, float] | None = None,
        unsubscribed: dict[str, float] | None = None,
        campaigns: dict[str, list[int]] | None = None,
        last_message: float | None = None,
        voice: dict[str, list[float]] | None = None,
        open_support: int = 0,
        reviews: int = 0,
        referrals: int = 0,
        timezone: str | None = None,
        preferred_channel: str | None = None,
        attributes: dict[str, Any] | None = None,
        recent_ids: list[int] | None = None,
        last_channel_at: float | None = None,
        timezone_at: float | None = None,
        preferred_channel_at: float | None = None,
        attributes_at: float | None = None,
        traits: dict[str, list[Any]] | None = None,
        engaged_hours: list[int] | None = None,
    ) -> None:
        """Written out rather than generated: a compiled ``__init__`` is several times faster."""
        self.first_seen = first_seen
        self.last_seen = last_seen
        self.last_activity = last_activity
        self.acquired = acquired
        self.first_purchase = first_purchase
        self.last_purchase = last_purchase
        self.purchases_total = purchases_total
        self.purchase_days = purchase_days
        self.gross_cents = gross_cents
        self.first_day_cents = first_day_cents
        self.refunded_cents = refunded_cents
        self.windows = w.Windows() if windows is None else windows
        self.session_start = session_start
        self.session_views = session_views
        self.cart_at = cart_at
        self.cart_value = cart_value
        self.affinity_at = affinity_at
        self.affinity = {} if affinity is None else affinity
        self.channel_days = {} if channel_days is None else channel_days
        self.channel_uses = {} if channel_uses is None else channel_uses
        self.last_channel = last_channel
        self.consent = {} if consent is None else consent
        self.unsubscribed = {} if unsubscribed is None else unsubscribed
        self.campaigns = {} if campaigns is None else campaigns
        self.last_message = last_message
        self.voice = {} if voice is None else voice
        self.open_support = open_support
        self.reviews = reviews
        self.referrals = referrals
        self.timezone = timezone
        self.preferred_channel = preferred_channel
        self.attributes = {} if attributes is None else attributes
        self.recent_ids = [] if recent_ids is None else recent_ids
        self.last_channel_at = last_channel_at
        self.timezone_at = timezone_at
        self.preferred_channel_at = preferred_channel_at
        self.attributes_at = attributes_at
        self.traits = {} if traits is None else traits
        self.engaged_hours = [] if engaged_hours is None else engaged_hours

    def shallow_copy(self) -> Dna:
        """Every field shared with ``self``: the fold then replaces what it writes."""
        return Dna(
            self.first_seen, self.last_seen, self.last_activity, self.acquired, self.first_purchase,
            self.last_purchase, self.purchases_total, self.purchase_days, self.gross_cents,
            self.first_day_cents, self.refunded_cents, self.windows, self.session_start, self.session_views,
            self.cart_at, self.cart_value, self.affinity_at, self.affinity, self.channel_days,
            self.channel_uses, self.last_channel, self.consent, self.unsubscribed, self.campaigns,
            self.last_message, self.voice, self.open_support, self.reviews, self.referrals, self.timezone,
            self.preferred_channel, self.attributes, self.recent_ids,
            self.last_channel_at, self.timezone_at, self.preferred_channel_at, self.attributes_at, self.traits,
            self.engaged_hours,
        )


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None


def local_hour(t: float, timezone: str | None) -> int:
    """The hour of day (0-23) of instant ``t`` in the IANA zone ``timezone`` (UTC when None or unknown)."""
    zone = _zone(timezone) if timezone else None
    if zone is None:
        return int(t // 3600) % 24
    return datetime.fromtimestamp(t, zone).hour


def count_engaged_hour(dna: Dna, t: float) -> None:
    """One more engagement (a session, an open, a click) in ``engaged_hours`` at the local hour of
    ``t`` in the customer's ``timezone`` as known then (UTC before one is known)."""
    hours = dna.engaged_hours
    if len(hours) != 24:
        hours = dna.engaged_hours = [0] * 24
    hours[local_hour(t, dna.timezone)] += 1


def instant(dna: Dna, anchor: int) -> float | None:
    """The instant ``anchor`` of the record (epoch seconds), None while there is none.
    ``LAST_ACTIVITY`` is ``first_seen`` until the first activity event."""
    if anchor == LAST_ACTIVITY:
        return dna.last_activity if dna.last_activity is not None else dna.first_seen
    if anchor == LAST_PURCHASE:
        return dna.last_purchase
    if anchor == FIRST_SEEN:
        return dna.first_seen
    if anchor == LAST_MESSAGE:
        return dna.last_message
    if anchor == FIRST_PURCHASE:
        return dna.first_purchase
    raise ValueError(f"unknown instant {anchor}")


def to_cents(amount: float) -> int:
    """An amount in currency units as whole cents, so sums are exact and survive a round trip.

    Rounded half-even to the cent on the amount as written (its shortest decimal text): 12.11 is
    1211, 1.015 is 102 and 0.125 is 12. ``amount * 100`` decides unless it is within float error of
    a half cent (only amounts with more than two decimals get there); then the decimal text does."""
    scaled = amount * 100.0
    cents = round(scaled)
    if abs(abs(scaled - cents) - 0.5) > abs(scaled) * 1e-15:
        return cents
    return int(Decimal(repr(amount)).scaleb(2).to_integral_value(ROUND_HALF_EVEN))


def cents_mean(total_cents: int, count: int) -> int:
    """``total_cents / count`` in whole cents, rounded half-even (``count`` > 0): integer
    arithmetic, so three purchases of 0.10 average exactly 10 cents."""
    quotient, rest = divmod(total_cents, count)
    twice = 2 * rest
    if twice > count or (twice == count and quotient % 2 == 1):
        quotient += 1
    return quotient


def top_key(table: dict[str, int] | dict[str, float]) -> str | None:
    """The key with the largest value, ties going to the alphabetically first; None when empty."""
    best: str | None = None
    best_value = 0.0
    for name, value in table.items():
        if best is None or value > best_value or (value == best_value and name < best):
            best, best_value = name, value
    return best


def most_used_channel(dna: Dna) -> str | None:
    """The channel used most (ties: alphabetically first); the fallback for ``preferred_channel``."""
    return top_key(dna.channel_uses)


def bounded_put(table: dict[str, Any], key: str, value: Any, limit: int) -> None:
    """Keep at most ``limit`` entries, forgetting the one with the smallest (numeric) value."""
    if key not in table and len(table) >= limit:
        del table[min(table, key=table.__getitem__)]
    table[key] = value


def newest_put(table: dict[str, Any], key: str, value: Any, limit: int) -> None:
    """Keep at most ``limit`` entries, forgetting the least recently set one (values of any type)."""
    table.pop(key, None)
    if len(table) >= limit:
        del table[next(iter(table))]
    table[key] = value


def tie_key(value: Any) -> tuple[Any, ...]:
    """The order that decides between two values set at the same event time (the smaller wins):
    null, false, true, numbers (by value; an integer before an equal float, -0.0 before 0.0),
    then text (alphabetically). A total order on everything a "last" value can hold, so the
    winner never depends on the order the events were processed in."""
    if value is None:
        return (0, 0, 0)
    if value is True or value is False:
        return (1, int(value), 0)
    if isinstance(value, int):
        return (2, value, 0)
    if isinstance(value, float):
        return (2, value, 1 if math.copysign(1.0, value) < 0 else 2)
    return (3, str(value), 0)


def newer(t: float, value: Any, kept_t: float | None, kept: Any) -> bool:
    """Whether a value set by an event at ``t`` replaces ``kept``, set at ``kept_t`` (None: nothing
    kept): the newer event time wins; at the same time, the smaller ``tie_key``."""
    if kept_t is None or t > kept_t:
        return True
    return t == kept_t and tie_key(value) < tie_key(kept)


def attribute_value(stored: Any) -> Any:
    """An attribute's value as stored: bare when set at ``attributes_at``, ``[value, t]`` when set
    by an older event (attribute values are scalars, so a list is never a value)."""
    return stored[0] if type(stored) is list else stored
