"""Behavioral DNA: the per-customer state and the fold that keeps it current.

``fold(dna, event)`` is a pure step: it copies the state, applies one event, returns the copy;
the input is never changed. Everything time-relative (``days_since_*``, windows) is computed at
read time by ``segments.view.DnaView`` from the instants stored here, so the state only changes
when an event arrives. Duplicate event ids are recognised over the last ``RECENT_IDS`` events of
a customer (stable 32-bit hashes), which covers redelivery after a crash.
"""

from __future__ import annotations

import math
import zlib
from copy import copy
from dataclasses import dataclass, field
from typing import Any

from microseg.schemas.events import Event
from microseg.segments import windows as w

__all__ = [
    "Dna",
    "fold",
    "is_duplicate",
    "ABANDON_AFTER_S",
    "AFFINITY_HALF_LIFE_DAYS",
    "RECENT_IDS",
    "NOT_ACTIVITY",
]

ABANDON_AFTER_S = 3_600
AFFINITY_HALF_LIFE_DAYS = 30.0
MAX_CATEGORIES = 12
MAX_CHANNELS = 16
MAX_ATTRIBUTES = 32
RECENT_IDS = 16
_DECAY_PER_S = math.log(2) / (AFFINITY_HALF_LIFE_DAYS * w.DAY)

NOT_ACTIVITY = frozenset({"campaign_delivered", "erasure_requested"})
"""Event types that are not the customer's own doing, so they do not refresh recency."""

_AFFINITY_WEIGHT = {"page_view": 0.5, "product_viewed": 1.0, "cart_updated": 2.0, "purchase": 4.0}


@dataclass(slots=True)
class Dna:
    """The folded facts about one customer; see docs/dna.md for each field's meaning."""

    first_seen: float = 0.0
    last_seen: float = 0.0
    last_activity: float | None = None
    acquired: bool = False
    first_purchase: float | None = None
    last_purchase: float | None = None
    purchases_total: int = 0
    purchase_days: int = 0
    gross_spend: float = 0.0
    first_day_spend: float = 0.0
    refunded: float = 0.0
    buckets: w.Buckets = field(default_factory=dict)
    session_start: float | None = None
    session_views: int = 0
    cart_at: float | None = None
    cart_value: float = 0.0
    affinity_at: float = 0.0
    affinity: dict[str, float] = field(default_factory=dict)
    channel_days: dict[str, int] = field(default_factory=dict)
    channel_uses: dict[str, int] = field(default_factory=dict)
    last_channel: str | None = None
    consent: dict[str, bool] = field(default_factory=dict)
    unsubscribed: list[str] = field(default_factory=list)
    campaigns: dict[str, list[int]] = field(default_factory=dict)
    last_message: float | None = None
    voice: dict[str, list[float]] = field(default_factory=dict)
    open_support: int = 0
    reviews: int = 0
    referrals: int = 0
    timezone: str | None = None
    preferred_channel: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    recent_ids: list[int] = field(default_factory=list)


def _id_hash(event_id: str) -> int:
    return zlib.crc32(event_id.encode())


def is_duplicate(dna: Dna | None, event: Event) -> bool:
    return dna is not None and _id_hash(event.event_id) in dna.recent_ids


def _fresh(event: Event) -> Dna:
    return Dna(first_seen=event.t, last_seen=event.t, affinity_at=event.t)


def _clone(dna: Dna) -> Dna:
    new = copy(dna)
    new.buckets = {day: row[:] for day, row in dna.buckets.items()}
    new.affinity = dict(dna.affinity)
    new.channel_days = dict(dna.channel_days)
    new.channel_uses = dict(dna.channel_uses)
    new.consent = dict(dna.consent)
    new.unsubscribed = list(dna.unsubscribed)
    new.campaigns = {k: v[:] for k, v in dna.campaigns.items()}
    new.voice = {k: v[:] for k, v in dna.voice.items()}
    new.attributes = dict(dna.attributes)
    new.recent_ids = list(dna.recent_ids)
    return new


def _bounded_put(table: dict[str, Any], key: str, value: Any, limit: int) -> None:
    if key not in table and len(table) >= limit:
        del table[min(table, key=table.__getitem__)]
    table[key] = value


def _touch_affinity(dna: Dna, t: float, category: str, weight: float) -> None:
    if t >= dna.affinity_at:
        factor = math.exp(-_DECAY_PER_S * (t - dna.affinity_at))
        if factor != 1.0:
            for key in dna.affinity:
                dna.affinity[key] *= factor
        dna.affinity_at = t
        gain = weight
    else:
        gain = weight * math.exp(-_DECAY_PER_S * (dna.affinity_at - t))
    if category not in dna.affinity and len(dna.affinity) >= MAX_CATEGORIES:
        weakest = min(dna.affinity, key=dna.affinity.__getitem__)
        if dna.affinity[weakest] > gain:
            return
        del dna.affinity[weakest]
    dna.affinity[category] = dna.affinity.get(category, 0.0) + gain


def _settle_cart(dna: Dna, t: float) -> None:
    """Count an open cart as abandoned once its window has passed by ``t``."""
    if dna.cart_at is not None and t >= dna.cart_at + ABANDON_AFTER_S:
        w.add(dna.buckets, dna.cart_at + ABANDON_AFTER_S, w.ABANDONED)
        dna.cart_at = None
        dna.cart_value = 0.0


def _use_channel(dna: Dna, event: Event) -> None:
    channel = event.channel
    if channel is None:
        return
    if dna.last_channel is not None and channel != dna.last_channel and event.t >= dna.last_seen:
        w.add(dna.buckets, event.t, w.SWITCHES)
    if event.t >= dna.last_seen:
        dna.last_channel = channel
    day = w.day_of(event.t)
    if dna.channel_days.get(channel, -1) < day:
        _bounded_put(dna.channel_days, channel, day, MAX_CHANNELS)
    _bounded_put(dna.channel_uses, channel, dna.channel_uses.get(channel, 0) + 1, MAX_CHANNELS)


def _purchase(dna: Dna, event: Event) -> None:
    props = event.props
    t = event.t
    day = w.day_of(t)
    row = dna.buckets.get(day)
    new_day = (row is None or not row[w.PURCHASES]) and (
        dna.last_purchase is None or w.day_of(dna.last_purchase) != day
    )
    w.add(dna.buckets, t, w.PURCHASES)
    w.add(dna.buckets, t, w.SPEND, props.amount)
    dna.purchases_total += 1
    dna.gross_spend += props.amount
    if new_day:
        dna.purchase_days += 1
    if dna.first_purchase is None or t < dna.first_purchase:
        if dna.first_purchase is None or w.day_of(dna.first_purchase) != day:
            dna.first_day_spend = 0.0
        dna.first_purchase = t
    if w.day_of(dna.first_purchase) == day:
        dna.first_day_spend += props.amount
    if dna.last_purchase is None or t > dna.last_purchase:
        dna.last_purchase = t
    dna.acquired = True
    if dna.cart_at is not None and t >= dna.cart_at:
        dna.cart_at = None
        dna.cart_value = 0.0
    for item in props.items or ():
        _touch_affinity(dna, t, item.category, _AFFINITY_WEIGHT["purchase"] * min(item.quantity, 10))


def _campaign(dna: Dna, event: Event) -> None:
    channel = event.channel or "unknown"
    counts = dna.campaigns.get(channel)
    if counts is None:
        if len(dna.campaigns) >= MAX_CHANNELS:
            return
        counts = dna.campaigns[channel] = [0, 0, 0]
    kind = event.type
    if kind == "campaign_delivered":
        counts[0] += 1
        w.add(dna.buckets, event.t, w.MESSAGES)
        if dna.last_message is None or event.t > dna.last_message:
            dna.last_message = event.t
    elif kind == "campaign_opened":
        counts[1] += 1
    elif kind == "campaign_clicked":
        counts[2] += 1
    elif kind == "campaign_converted":
        w.add(dna.buckets, event.t, w.CONVERSIONS)
    elif kind == "campaign_unsubscribed" and channel not in dna.unsubscribed:
        dna.unsubscribed.append(channel)


def _apply(dna: Dna, event: Event) -> None:
    kind = event.type
    props = event.props
    t = event.t
    if kind == "session_started":
        w.add(dna.buckets, t, w.SESSIONS)
        if event.channel == "app":
            w.add(dna.buckets, t, w.APP_SESSIONS)
        elif event.channel == "web":
            w.add(dna.buckets, t, w.WEB_SESSIONS)
        if dna.session_start is None or t >= dna.session_start:
            dna.session_start = t
            dna.session_views = 0
    elif kind == "page_view":
        w.add(dna.buckets, t, w.PAGE_VIEWS)
        if dna.session_start is not None and t >= dna.session_start:
            dna.session_views += 1
            if dna.session_views == 1:
                w.add(dna.buckets, dna.session_start, w.BOUNCES)
            elif dna.session_views == 2:
                w.add(dna.buckets, dna.session_start, w.BOUNCES, -1)
        if props.category:
            _touch_affinity(dna, t, props.category, _AFFINITY_WEIGHT["page_view"])
    elif kind == "product_viewed":
        _touch_affinity(dna, t, props.category, _AFFINITY_WEIGHT["product_viewed"])
    elif kind in ("cart_updated", "checkout_started"):
        if dna.cart_at is None or t >= dna.cart_at:
            dna.cart_at = t
            dna.cart_value = props.cart_value
        if kind == "cart_updated":
            _touch_affinity(dna, t, props.category, _AFFINITY_WEIGHT["cart_updated"])
    elif kind == "purchase":
        _purchase(dna, event)
    elif kind == "refund":
        w.add(dna.buckets, t, w.REFUNDS)
        dna.refunded += props.amount
    elif kind.startswith("campaign_"):
        _campaign(dna, event)
    elif kind == "survey_answered":
        last = dna.voice.get(props.kind)
        if last is None or t >= last[1]:
            dna.voice[props.kind] = [props.score, t]
    elif kind == "support_contact":
        if props.status == "opened":
            dna.open_support += 1
            w.add(dna.buckets, t, w.SUPPORT)
        elif dna.open_support > 0:
            dna.open_support -= 1
    elif kind == "review_posted":
        dna.reviews += 1
    elif kind == "referral_made":
        dna.referrals += 1
    elif kind == "account_created":
        dna.acquired = True
    elif kind == "consent_changed":
        _bounded_put(dna.consent, props.channel, props.granted, MAX_CHANNELS)
        if props.granted and props.channel in dna.unsubscribed:
            dna.unsubscribed.remove(props.channel)
    elif kind == "profile_updated":
        if props.timezone is not None:
            dna.timezone = props.timezone
        if props.preferred_channel is not None:
            dna.preferred_channel = props.preferred_channel
        for key, value in (props.attributes or {}).items():
            _bounded_put(dna.attributes, key, value, MAX_ATTRIBUTES)


def fold(dna: Dna | None, event: Event) -> Dna:
    """Apply one validated event; ``dna`` is None for a customer never seen before."""
    new = _fresh(event) if dna is None else _clone(dna)
    t = event.t
    _settle_cart(new, t)
    if event.type not in NOT_ACTIVITY:
        _use_channel(new, event)
        if new.last_activity is None or t > new.last_activity:
            new.last_activity = t
    _apply(new, event)
    if t < new.first_seen:
        new.first_seen = t
    if t > new.last_seen:
        new.last_seen = t
    w.prune(new.buckets, new.last_seen)
    new.recent_ids.append(_id_hash(event.event_id))
    if len(new.recent_ids) > RECENT_IDS:
        del new.recent_ids[0]
    return new
