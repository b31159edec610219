"""Input event types as the fold sees them: each declared once, with what folding it does.

An ``EventType`` names a type of ``schemas.events`` (where its props model, the wire contract, is
declared), the function that applies one event of it to a private copy of the DNA record, the
record's containers that function writes (copied first, so the fold stays pure), whether it is
the customer's own doing (an *activity* event: refreshes recency and channel use), and what it
changes in the docs' words. Which DNA names an event type can change is declared by the fields
(``FieldSpec.touched_by``), so it is written once, where the field is.

Besides its type's own effects, folding any event has shared effects; a field's ``touched_by``
names them like event types: ``RECENCY``, ``FIRST_SEEN_EARLIER``, ``OPEN_CART``,
``CHANNEL_CHANGED``, ``NEW_CHANNEL_DAY``, ``CHANNEL_USED`` (``segments.dna.touched`` decides
when each applies).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from microseg.schemas.events import EVENT_TYPES as WIRE_TYPES
from microseg.schemas.events import PROPS_BY_TYPE, Event
from microseg.segments import windows as w
from microseg.segments.dna_record import (
    ABANDON_AFTER_S,
    AFFINITY_HALF_LIFE_DAYS,
    MAX_ATTRIBUTES,
    MAX_CATEGORIES,
    MAX_CHANNELS,
    Dna,
    attribute_value,
    bounded_put,
    count_engaged_hour,
    newer,
    to_cents,
)

__all__ = [
    "EventType",
    "EVENTS",
    "NOT_ACTIVITY",
    "RECENCY",
    "FIRST_SEEN_EARLIER",
    "OPEN_CART",
    "CHANNEL_CHANGED",
    "NEW_CHANNEL_DAY",
    "CHANNEL_USED",
    "settle_cart",
    "use_channel",
]

RECENCY = "@recency"
"""An activity event on a later day than the last activity (or older than it)."""
FIRST_SEEN_EARLIER = "@first_seen_earlier"
"""An event older than the customer's first seen instant."""
OPEN_CART = "@open_cart"
"""Any event while a cart is open (it may settle the cart as abandoned)."""
CHANNEL_CHANGED = "@channel_changed"
"""An activity event on another channel than the last one."""
NEW_CHANNEL_DAY = "@new_channel_day"
"""An activity event on a channel not yet used on that UTC day."""
CHANNEL_USED = "@channel_used"
"""An activity event with a channel that may change the most used one (no declared preference)."""

_DECAY_PER_S = math.log(2) / (AFFINITY_HALF_LIFE_DAYS * w.DAY)
PAGE_VIEW_WEIGHT = 0.5
PRODUCT_VIEW_WEIGHT = 1.0
CART_WEIGHT = 2.0
PURCHASE_ITEM_WEIGHT = 4.0
"""Affinity weights of the interest signals (a purchase: per item, times min(quantity, 10))."""


@dataclass(frozen=True, slots=True)
class EventType:
    """One input event type: ``apply(dna, event)`` changes the copy ``dna`` in place (None: no
    effect of its own); ``writes`` names the ``Dna`` containers it changes besides windows,
    channels and recent ids."""

    name: str
    doc: str
    apply: Callable[[Dna, Event], None] | None = field(default=None, compare=False, repr=False)
    writes: tuple[str, ...] = ()
    activity: bool = True

    @property
    def props(self) -> type:
        """The pydantic model of this type's ``props`` (``schemas.events``)."""
        return PROPS_BY_TYPE[self.name]


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


def settle_cart(dna: Dna, t: float) -> None:
    """Count an open cart as abandoned once its window has passed by ``t`` (every event)."""
    if dna.cart_at is not None and t >= dna.cart_at + ABANDON_AFTER_S:
        dna.windows.add(dna.cart_at + ABANDON_AFTER_S, w.ABANDONED)
        dna.cart_at = None
        dna.cart_value = 0.0


def use_channel(dna: Dna, event: Event) -> None:
    """Last channel, switches, days and uses per channel (every activity event with a channel)."""
    channel = event.channel
    if channel is None:
        return
    if dna.last_channel is not None and channel != dna.last_channel and event.t >= dna.last_seen:
        dna.windows.add(event.t, w.SWITCHES)
    if newer(event.t, channel, dna.last_channel_at, dna.last_channel):
        dna.last_channel = channel
        dna.last_channel_at = event.t
    day = w.day_of(event.t)
    if dna.channel_days.get(channel, -1) < day:
        bounded_put(dna.channel_days, channel, day, MAX_CHANNELS)
    bounded_put(dna.channel_uses, channel, dna.channel_uses.get(channel, 0) + 1, MAX_CHANNELS)


def _account_created(dna: Dna, event: Event) -> None:
    dna.acquired = True


def _session_started(dna: Dna, event: Event) -> None:
    t = event.t
    dna.windows.add(t, w.SESSIONS)
    if event.channel == "app":
        dna.windows.add(t, w.APP_SESSIONS)
    elif event.channel == "web":
        dna.windows.add(t, w.WEB_SESSIONS)
    if dna.session_start is None or t >= dna.session_start:
        dna.session_start = t
        dna.session_views = 0
    count_engaged_hour(dna, t)


def _page_view(dna: Dna, event: Event) -> None:
    t = event.t
    dna.windows.add(t, w.PAGE_VIEWS)
    if dna.session_start is not None and t >= dna.session_start:
        dna.session_views += 1
        if dna.session_views == 1:
            dna.windows.add(dna.session_start, w.BOUNCES)
        elif dna.session_views == 2:
            dna.windows.add(dna.session_start, w.BOUNCES, -1)
    category = event.props.category
    if category:
        _touch_affinity(dna, t, category, PAGE_VIEW_WEIGHT)


def _product_viewed(dna: Dna, event: Event) -> None:
    _touch_affinity(dna, event.t, event.props.category, PRODUCT_VIEW_WEIGHT)


def _open_cart(dna: Dna, event: Event) -> None:
    if dna.cart_at is None or event.t >= dna.cart_at:
        dna.cart_at = event.t
        dna.cart_value = event.props.cart_value


def _cart_updated(dna: Dna, event: Event) -> None:
    _open_cart(dna, event)
    _touch_affinity(dna, event.t, event.props.category, CART_WEIGHT)


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
        _touch_affinity(dna, t, item.category, PURCHASE_ITEM_WEIGHT * min(item.quantity, 10))


def _refund(dna: Dna, event: Event) -> None:
    dna.windows.add(event.t, w.REFUNDS)
    dna.refunded_cents += to_cents(event.props.amount)


def _campaign_counts(dna: Dna, event: Event) -> list[int] | None:
    """The [delivered, opened, clicked] counters of the event's channel, None past MAX_CHANNELS."""
    channel = event.channel or "unknown"
    counts = dna.campaigns.get(channel)
    if counts is None:
        if len(dna.campaigns) >= MAX_CHANNELS:
            return None
        counts = dna.campaigns[channel] = [0, 0, 0]
    return counts


def _campaign_delivered(dna: Dna, event: Event) -> None:
    counts = _campaign_counts(dna, event)
    if counts is not None:
        counts[0] += 1
        dna.windows.add(event.t, w.MESSAGES)
        if dna.last_message is None or event.t > dna.last_message:
            dna.last_message = event.t


def _campaign_opened(dna: Dna, event: Event) -> None:
    counts = _campaign_counts(dna, event)
    if counts is not None:
        counts[1] += 1
    count_engaged_hour(dna, event.t)


def _campaign_clicked(dna: Dna, event: Event) -> None:
    counts = _campaign_counts(dna, event)
    if counts is not None:
        counts[2] += 1
    count_engaged_hour(dna, event.t)


def _campaign_converted(dna: Dna, event: Event) -> None:
    if _campaign_counts(dna, event) is not None:
        dna.windows.add(event.t, w.CONVERSIONS)


def _campaign_unsubscribed(dna: Dna, event: Event) -> None:
    _decide_consent(dna, event.channel or "unknown", event.t, UNSUBSCRIBE)
    _campaign_counts(dna, event)


def _survey_answered(dna: Dna, event: Event) -> None:
    props = event.props
    last = dna.voice.get(props.kind)
    if last is None or event.t >= last[1]:
        dna.voice[props.kind] = [props.score, event.t]


def _support_contact(dna: Dna, event: Event) -> None:
    if event.props.status == "opened":
        dna.open_support += 1
        dna.windows.add(event.t, w.SUPPORT)
    elif dna.open_support > 0:
        dna.open_support -= 1


def _review_posted(dna: Dna, event: Event) -> None:
    dna.reviews += 1


def _referral_made(dna: Dna, event: Event) -> None:
    dna.referrals += 1


def _consent_changed(dna: Dna, event: Event) -> None:
    props = event.props
    _decide_consent(dna, props.channel, event.t, GRANT if props.granted else REVOKE)


GRANT, REVOKE, UNSUBSCRIBE = 0, 1, 2
"""Consent decisions on a channel; at the same event time the later in this order wins (the
most restrictive: an unsubscribe or a revocation beats a grant)."""


def _decide_consent(dna: Dna, channel: str, t: float, kind: int) -> None:
    """Fold one consent decision by event time, in any processing order.

    ``consent[c]`` is the newest decision of any kind as a signed instant: ``+t`` granted at
    ``t``, ``-t`` revoked or unsubscribed at ``t``, so ``consented(c)`` is ``consent[c] > 0``.
    ``unsubscribed[c]`` is the newest unsubscribe (``+t``) or grant (``-t``), so
    ``unsubscribed(c)`` is ``unsubscribed[c] > 0``; it is kept only while ``consent[c]`` is not a
    grant (a newest grant is also the newest of those two, so nothing is lost). At most
    ``MAX_CHANNELS`` channels: past that, the one decided longest ago is forgotten.
    """
    consent = dna.consent
    kept = consent.get(channel)
    if kept is None:
        if len(consent) >= MAX_CHANNELS:
            oldest = min(consent, key=lambda c: (abs(consent[c]), c))
            if (abs(consent[oldest]), oldest) > (t, channel):
                return
            del consent[oldest]
            dna.unsubscribed.pop(oldest, None)
        unsub: float | None = None
    elif kept > 0:
        unsub = -kept
    else:
        unsub = dna.unsubscribed.get(channel)
    if kept is None or t > abs(kept) or (t == abs(kept) and kind != GRANT):
        kept = t if kind == GRANT else -t
        consent[channel] = kept
    if kind != REVOKE and (unsub is None or t > abs(unsub) or (t == abs(unsub) and kind == UNSUBSCRIBE)):
        unsub = t if kind == UNSUBSCRIBE else -t
    if kept > 0 or unsub is None:
        dna.unsubscribed.pop(channel, None)
    else:
        dna.unsubscribed[channel] = unsub


def _set_attributes(dna: Dna, t: float, values: dict[str, Any]) -> None:
    """Fold one event's attributes by event time: a name keeps the value of its newest event.
    Values set at ``attributes_at`` (the newest profile event with attributes) are stored bare,
    older ones as ``[value, t]``, so a customer whose attributes came in one event pays one
    instant for all of them."""
    table = dna.attributes
    at = dna.attributes_at
    if at is None or t > at:
        if at is not None:
            for key in [k for k, v in table.items() if type(v) is not list and k not in values]:
                table[key] = [table[key], at]
        for key, value in values.items():
            table.pop(key, None)
            _put_attribute(table, key, value, t, t)
        dna.attributes_at = t
        return
    for key, value in values.items():
        if key in table:
            stored = table[key]
            kept_t = stored[1] if type(stored) is list else at
            if not newer(t, value, kept_t, attribute_value(stored)):
                continue
            del table[key]
        _put_attribute(table, key, value if t == at else [value, t], t, at)


def _put_attribute(table: dict[str, Any], key: str, stored: Any, t: float, at: float) -> None:
    """Keep at most ``MAX_ATTRIBUTES`` names: past that, the one set longest ago (by event time,
    then name) is forgotten, or the new one if it is older still."""
    if len(table) >= MAX_ATTRIBUTES:
        oldest = min(table, key=lambda k: (table[k][1] if type(table[k]) is list else at, k))
        oldest_stored = table[oldest]
        if ((oldest_stored[1] if type(oldest_stored) is list else at), oldest) > (t, key):
            return
        del table[oldest]
    table[key] = stored


def _profile_updated(dna: Dna, event: Event) -> None:
    props = event.props
    t = event.t
    if props.timezone is not None and newer(t, props.timezone, dna.timezone_at, dna.timezone):
        dna.timezone = props.timezone
        dna.timezone_at = t
    if props.preferred_channel is not None and newer(t, props.preferred_channel, dna.preferred_channel_at, dna.preferred_channel):
        dna.preferred_channel = props.preferred_channel
        dna.preferred_channel_at = t
    if props.attributes:
        _set_attributes(dna, t, props.attributes)


_DECLARED: tuple[EventType, ...] = (
    EventType("account_created", "acquired: `journey_stage` leaves `prospect`", _account_created),
    EventType(
        "session_started",
        "`sessions_7d`, `sessions_30d`, `app_sessions_30d` / `web_sessions_30d` by channel; starts a session for `bounces_30d`; "
        "`engaged_hour`",
        _session_started,
        ("engaged_hours",),
    ),
    EventType("page_view", "`page_views_30d`, `bounces_30d`; affinity 0.5 to `category` if given", _page_view, ("affinity",)),
    EventType("product_viewed", "affinity 1 to `category`", _product_viewed, ("affinity",)),
    EventType(
        "cart_updated", "opens/refreshes the cart (`open_cart_value`, abandonment timer); affinity 2 to `category`", _cart_updated, ("affinity",)
    ),
    EventType("checkout_started", "opens/refreshes the cart, like `cart_updated`, no affinity", _open_cart),
    EventType(
        "purchase",
        "`purchases_*`, `spend_*`, `avg_order_value`, `days_since_last_purchase`, predictive inputs; acquired; closes the open "
        "cart; affinity 4 × min(quantity, 10) per item",
        _purchase,
        ("affinity",),
    ),
    EventType("refund", "`refunds_90d` +1, `spend_total` − amount (not `spend_30d`/`spend_90d`/`avg_order_value`)", _refund),
    EventType(
        "campaign_delivered",
        "`messages_received_30d`, `days_since_last_message`, the deliveries of `open_rate`/`click_rate` (not activity)",
        _campaign_delivered,
        ("campaigns",),
        activity=False,
    ),
    EventType("campaign_opened", "opens of `open_rate`; `engaged_hour`", _campaign_opened, ("campaigns", "engaged_hours")),
    EventType("campaign_clicked", "clicks of `click_rate`; `engaged_hour`", _campaign_clicked, ("campaigns", "engaged_hours")),
    EventType("campaign_converted", "`conversions_90d`", _campaign_converted, ("campaigns",)),
    EventType(
        "campaign_unsubscribed",
        "`unsubscribed(channel)` true, `consented(channel)` false",
        _campaign_unsubscribed,
        ("campaigns", "consent", "unsubscribed"),
    ),
    EventType(
        "survey_answered", "`nps`, `csat` or `ces` (the newest answer by `ts`); `journey_stage` (advocate)", _survey_answered, ("voice",)
    ),
    EventType(
        "support_contact",
        "`opened`: `open_support_contacts` +1, `support_contacts_30d`; `resolved`: `open_support_contacts` −1",
        _support_contact,
    ),
    EventType("review_posted", "`reviews_total`; `journey_stage` (advocate)", _review_posted),
    EventType("referral_made", "`referrals_total`; `journey_stage` (advocate)", _referral_made),
    EventType(
        "consent_changed",
        "`consented(channel)`; `granted: true` also clears `unsubscribed(channel)`",
        _consent_changed,
        ("consent", "unsubscribed"),
    ),
    EventType("profile_updated", "`timezone`, declared `preferred_channel`, `attr(name)`", _profile_updated, ("attributes",)),
    EventType(
        "identify",
        "links the anonymous visitor `anonymous_id` to the customer `customer_id` (both given): the visitor's DNA is merged into "
        "the customer's (docs/dna.md, *Merging two profiles*), the visitor exits every segment and the customer is evaluated on "
        "the merged DNA, both with `cause` = this event's id; later events with only that `anonymous_id` count for the customer "
        "(not activity)",
        activity=False,
    ),
    EventType(
        "erasure_requested",
        "GDPR: the customer exits every segment (records with `cause` = this event's id and a `micro` move to `null`) and the "
        "DNA is deleted; only a bare *erased* mark stays under the customer id, so later events for that id (in flight, "
        "replayed or new) are dropped (`microseg_events_after_erasure_total`) and no message is ever decided for them again",
        activity=False,
    ),
)

EVENTS: Mapping[str, EventType] = {e.name: e for e in _DECLARED}
"""Every event type, in the order of ``schemas.events.EVENT_TYPES``."""

if tuple(EVENTS) != WIRE_TYPES or set(EVENTS) != set(PROPS_BY_TYPE):
    raise ImportError(f"event types declared here {tuple(EVENTS)} differ from the wire schema's {WIRE_TYPES}")

NOT_ACTIVITY: frozenset[str] = frozenset(e.name for e in _DECLARED if not e.activity)
"""Event types that are not the customer's own doing, so they do not refresh recency."""
