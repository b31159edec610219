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
from dataclasses import dataclass
from typing import Any

from microseg.schemas.events import Event
from microseg.segments import windows as w

__all__ = [
    "Dna",
    "fold",
    "to_cents",
    "is_duplicate",
    "touched",
    "most_used_channel",
    "top_key",
    "TOUCHES",
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

_TASTE = frozenset({"top_category", "affinity"})
_SPEND = frozenset({"purchases_total", "purchases_30d", "purchases_90d", "spend_total", "spend_30d", "spend_90d", "avg_order_value"})
_PREDICTIVE = frozenset({"p_alive", "churn_risk", "expected_purchases_90d", "clv_12m"})
TOUCHES: dict[str, frozenset[str]] = {
    "account_created": frozenset({"journey_stage"}),
    "session_started": frozenset({"sessions_7d", "sessions_30d", "app_sessions_30d", "web_sessions_30d"}),
    "page_view": frozenset({"page_views_30d", "bounces_30d"}) | _TASTE,
    "product_viewed": _TASTE,
    "cart_updated": frozenset({"open_cart_value"}) | _TASTE,
    "checkout_started": frozenset({"open_cart_value"}),
    "purchase": _SPEND | _TASTE | _PREDICTIVE | {"days_since_last_purchase", "journey_stage", "open_cart_value"},
    "refund": frozenset({"refunds_90d", "spend_total"}),
    "campaign_delivered": frozenset({"messages_received_30d", "days_since_last_message", "open_rate", "click_rate"}),
    "campaign_opened": frozenset({"open_rate", "click_rate"}),
    "campaign_clicked": frozenset({"open_rate", "click_rate"}),
    "campaign_converted": frozenset({"conversions_90d", "open_rate", "click_rate"}),
    "campaign_unsubscribed": frozenset({"unsubscribed", "consented", "open_rate", "click_rate"}),
    "survey_answered": frozenset({"nps", "csat", "ces", "journey_stage"}),
    "support_contact": frozenset({"open_support_contacts", "support_contacts_30d"}),
    "review_posted": frozenset({"reviews_total", "journey_stage"}),
    "referral_made": frozenset({"referrals_total", "journey_stage"}),
    "consent_changed": frozenset({"consented", "unsubscribed"}),
    "profile_updated": frozenset({"timezone", "preferred_channel", "attr"}),
}
"""DNA field and function names an event of each type can change, besides the activity and
channel effects ``touched`` works out. The core re-evaluates only the rules that read one of
them; a test checks this against full evaluation on simulated journeys."""
_RECENCY = frozenset({"days_since_last_activity", "journey_stage"})
_FIRST_SEEN = frozenset({"tenure_days", "first_seen", "days_since_last_activity", "journey_stage"})
_CART = frozenset({"carts_abandoned_30d", "open_cart_value"})


_AFFINITY_WEIGHT = {"page_view": 0.5, "product_viewed": 1.0, "cart_updated": 2.0, "purchase": 4.0}


@dataclass(slots=True, init=False)
class Dna:
    """The folded facts about one customer; see docs/dna.md for each field's meaning."""

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
    consent: dict[str, bool]
    unsubscribed: list[str]
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
        consent: dict[str, bool] | None = None,
        unsubscribed: list[str] | None = None,
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
        self.unsubscribed = [] if unsubscribed is None else unsubscribed
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

    def shallow_copy(self) -> Dna:
        """Every field shared with ``self``: the fold then replaces what it writes."""
        return Dna(
            self.first_seen, self.last_seen, self.last_activity, self.acquired, self.first_purchase,
            self.last_purchase, self.purchases_total, self.purchase_days, self.gross_cents,
            self.first_day_cents, self.refunded_cents, self.windows, self.session_start, self.session_views,
            self.cart_at, self.cart_value, self.affinity_at, self.affinity, self.channel_days,
            self.channel_uses, self.last_channel, self.consent, self.unsubscribed, self.campaigns,
            self.last_message, self.voice, self.open_support, self.reviews, self.referrals, self.timezone,
            self.preferred_channel, self.attributes, self.recent_ids
        )




def to_cents(amount: float) -> int:
    """Money is kept in whole cents so sums are exact and identical after a round trip."""
    return round(amount * 100)


def _id_hash(event_id: str) -> int:
    return zlib.crc32(event_id.encode())


def is_duplicate(dna: Dna | None, event: Event) -> bool:
    return dna is not None and _id_hash(event.event_id) in dna.recent_ids


def _fresh(event: Event) -> Dna:
    return Dna(first_seen=event.t, last_seen=event.t, affinity_at=event.t)


_COPIES: dict[str, tuple[str, ...]] = {
    "page_view": ("affinity",),
    "product_viewed": ("affinity",),
    "cart_updated": ("affinity",),
    "purchase": ("affinity",),
    "campaign_delivered": ("campaigns",),
    "campaign_opened": ("campaigns",),
    "campaign_clicked": ("campaigns",),
    "campaign_converted": ("campaigns",),
    "campaign_unsubscribed": ("campaigns", "unsubscribed"),
    "survey_answered": ("voice",),
    "consent_changed": ("consent", "unsubscribed"),
    "profile_updated": ("attributes",),
}
"""The containers an event type's fold writes into, besides windows, channels and recent ids.
``_clone`` copies only those, so the state passed in is never changed (a property test holds
the fold to that for every event type)."""


def _clone(dna: Dna, event: Event) -> Dna:
    new = dna.shallow_copy()
    new.windows = dna.windows.copy()
    if event.channel is not None and event.type not in NOT_ACTIVITY:
        new.channel_days = dict(dna.channel_days)
        new.channel_uses = dict(dna.channel_uses)
    for name in _COPIES.get(event.type, ()):
        if name == "campaigns":
            new.campaigns = {k: v[:] for k, v in dna.campaigns.items()}
        elif name == "unsubscribed":
            new.unsubscribed = list(dna.unsubscribed)
        else:
            setattr(new, name, dict(getattr(dna, name)))
    new.recent_ids = list(dna.recent_ids)
    return new


def _bounded_put(table: dict[str, Any], key: str, value: Any, limit: int) -> None:
    """Keep at most ``limit`` entries, forgetting the one with the smallest (numeric) value."""
    if key not in table and len(table) >= limit:
        del table[min(table, key=table.__getitem__)]
    table[key] = value


def _newest_put(table: dict[str, Any], key: str, value: Any, limit: int) -> None:
    """Keep at most ``limit`` entries, forgetting the least recently set one (values of any type)."""
    table.pop(key, None)
    if len(table) >= limit:
        del table[next(iter(table))]
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
        dna.windows.add(dna.cart_at + ABANDON_AFTER_S, w.ABANDONED)
        dna.cart_at = None
        dna.cart_value = 0.0


def _use_channel(dna: Dna, event: Event) -> None:
    channel = event.channel
    if channel is None:
        return
    if dna.last_channel is not None and channel != dna.last_channel and event.t >= dna.last_seen:
        dna.windows.add(event.t, w.SWITCHES)
    if event.t >= dna.last_seen:
        dna.last_channel = channel
    day = w.day_of(event.t)
    if dna.channel_days.get(channel, -1) < day:
        _bounded_put(dna.channel_days, channel, day, MAX_CHANNELS)
    _bounded_put(dna.channel_uses, channel, dna.channel_uses.get(channel, 0) + 1, MAX_CHANNELS)


def _purchase(dna: Dna, event: Event) -> None:
    props = event.props
    t = event.t
    cents = to_cents(props.amount)
    day = w.day_of(t)
    row = dna.windows.rows.get(day)
    new_day = (row is None or not row[w.PURCHASES]) and (
        dna.last_purchase is None or w.day_of(dna.last_purchase) != day
    )
    dna.windows.add(t, w.PURCHASES)
    dna.windows.add(t, w.SPEND, cents)
    dna.purchases_total += 1
    dna.gross_cents += cents
    if new_day:
        dna.purchase_days += 1
    if dna.first_purchase is None or t < dna.first_purchase:
        if dna.first_purchase is None or w.day_of(dna.first_purchase) != day:
            dna.first_day_cents = 0
        dna.first_purchase = t
    if w.day_of(dna.first_purchase) == day:
        dna.first_day_cents += cents
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
    if event.type == "campaign_unsubscribed" and channel not in dna.unsubscribed:
        dna.unsubscribed.append(channel)
    counts = dna.campaigns.get(channel)
    if counts is None:
        if len(dna.campaigns) >= MAX_CHANNELS:
            return
        counts = dna.campaigns[channel] = [0, 0, 0]
    kind = event.type
    if kind == "campaign_delivered":
        counts[0] += 1
        dna.windows.add(event.t, w.MESSAGES)
        if dna.last_message is None or event.t > dna.last_message:
            dna.last_message = event.t
    elif kind == "campaign_opened":
        counts[1] += 1
    elif kind == "campaign_clicked":
        counts[2] += 1
    elif kind == "campaign_converted":
        dna.windows.add(event.t, w.CONVERSIONS)


def _apply(dna: Dna, event: Event) -> None:
    kind = event.type
    props = event.props
    t = event.t
    if kind == "session_started":
        dna.windows.add(t, w.SESSIONS)
        if event.channel == "app":
            dna.windows.add(t, w.APP_SESSIONS)
        elif event.channel == "web":
            dna.windows.add(t, w.WEB_SESSIONS)
        if dna.session_start is None or t >= dna.session_start:
            dna.session_start = t
            dna.session_views = 0
    elif kind == "page_view":
        dna.windows.add(t, w.PAGE_VIEWS)
        if dna.session_start is not None and t >= dna.session_start:
            dna.session_views += 1
            if dna.session_views == 1:
                dna.windows.add(dna.session_start, w.BOUNCES)
            elif dna.session_views == 2:
                dna.windows.add(dna.session_start, w.BOUNCES, -1)
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
        dna.windows.add(t, w.REFUNDS)
        dna.refunded_cents += to_cents(props.amount)
    elif kind.startswith("campaign_"):
        _campaign(dna, event)
    elif kind == "survey_answered":
        last = dna.voice.get(props.kind)
        if last is None or t >= last[1]:
            dna.voice[props.kind] = [props.score, t]
    elif kind == "support_contact":
        if props.status == "opened":
            dna.open_support += 1
            dna.windows.add(t, w.SUPPORT)
        elif dna.open_support > 0:
            dna.open_support -= 1
    elif kind == "review_posted":
        dna.reviews += 1
    elif kind == "referral_made":
        dna.referrals += 1
    elif kind == "account_created":
        dna.acquired = True
    elif kind == "consent_changed":
        _newest_put(dna.consent, props.channel, props.granted, MAX_CHANNELS)
        if props.granted and props.channel in dna.unsubscribed:
            dna.unsubscribed.remove(props.channel)
    elif kind == "profile_updated":
        if props.timezone is not None:
            dna.timezone = props.timezone
        if props.preferred_channel is not None:
            dna.preferred_channel = props.preferred_channel
        for key, value in (props.attributes or {}).items():
            _newest_put(dna.attributes, key, value, MAX_ATTRIBUTES)


def touched(before: Dna, event: Event, evaluated_at: float) -> frozenset[str]:
    """Names whose value folding ``event`` into ``before`` can change, time standing still at
    ``evaluated_at`` (the caller makes sure no time-driven change is pending)."""
    names = TOUCHES.get(event.type)
    if names is None:
        return frozenset({"*"})
    extra: set[str] = set()
    t = event.t
    if event.type not in NOT_ACTIVITY:
        since = before.last_activity if before.last_activity is not None else before.first_seen
        if (evaluated_at - since) // w.DAY != 0 or t < since:
            extra |= _RECENCY
        channel = event.channel
        if channel is not None:
            if channel != before.last_channel:
                extra |= {"last_channel", "channel_switches_30d"}
            if before.channel_days.get(channel) != w.day_of(t):
                extra.add("channels_30d")
            if before.preferred_channel is None and channel != most_used_channel(before):
                extra.add("preferred_channel")
    if t < before.first_seen:
        extra |= _FIRST_SEEN
    if before.cart_at is not None:
        extra |= _CART
    return names | extra if extra else names


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


def fold(dna: Dna | None, event: Event) -> Dna:
    """Apply one validated event; ``dna`` is None for a customer never seen before."""
    new = _fresh(event) if dna is None else _clone(dna, event)
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
    new.recent_ids.append(_id_hash(event.event_id))
    if len(new.recent_ids) > RECENT_IDS:
        del new.recent_ids[0]
    return new
