"""The built-in DNA fields and functions, each declared once: type, definition, compute, time, touches.

``BUILTINS`` is the registry every rule set reads today: the type checker, the view, the
timeline, incremental evaluation, the docs (docs/dna.md, docs/rule-language.md) and the JSON
Schema of a customer's DNA are derived from it. Values are computed from ``view.dna`` at
``view.now`` (epoch seconds). Money is integer cents throughout (sums, the average order value
rounded half-even to the cent) and becomes currency units once, at the end: ``cents / 100``, the
float nearest the exact amount, so ``spend_30d >= 50`` holds for 12.11 + 19.99 + 17.90.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from microseg.segments import windows as w
from microseg.segments.dna_record import (
    ABANDON_AFTER_S,
    FIRST_SEEN,
    LAST_ACTIVITY,
    LAST_MESSAGE,
    LAST_PURCHASE,
    cents_mean,
    instant,
    most_used_channel,
    to_cents,
    top_key,
)
from microseg.segments.event_types import (
    CHANNEL_CHANGED,
    CHANNEL_USED,
    FIRST_SEEN_EARLIER,
    NEW_CHANNEL_DAY,
    OPEN_CART,
    RECENCY,
)
from microseg.segments.fields import (
    ANY,
    BOOL,
    NUMBER,
    NUMBER_OR_NULL,
    STRING,
    STRING_OR_NULL,
    CartTimer,
    ChannelDays,
    Compute,
    DaysSince,
    FieldSpec,
    Follows,
    FunctionSpec,
    Kind,
    ParamSpec,
    Registry,
    TimeChange,
    ValueType,
    Windowed,
)
from microseg.segments.predictive_fields import PREDICTIVE_FIELDS, PREDICTIVE_HELPERS
from microseg.segments.view import DnaView, iso

__all__ = [
    "BUILTINS",
    "FIELDS",
    "FUNCTIONS",
    "TIME_DEPENDENT",
    "JOURNEY_STAGES",
    "journey_stage",
    "windowed",
    "days_since",
    "ONBOARDING_DAYS",
    "AT_RISK_DAYS",
    "LAPSED_DAYS",
    "ADVOCATE_NPS",
]

JOURNEY_STAGES = frozenset({"prospect", "onboarding", "active", "at_risk", "lapsed", "advocate"})
ONBOARDING_DAYS = 90
AT_RISK_DAYS = 30
LAPSED_DAYS = 90
ADVOCATE_NPS = 9


def journey_stage(acquired: bool, tenure: int, dsla: int, nps: float | None, advocacy: int) -> str:
    """Lapsed and at-risk first (recency wins), then the first 90 days, then advocates."""
    if not acquired:
        return "prospect"
    if dsla > LAPSED_DAYS:
        return "lapsed"
    if dsla > AT_RISK_DAYS:
        return "at_risk"
    if tenure <= ONBOARDING_DAYS:
        return "onboarding"
    if (nps is not None and nps >= ADVOCATE_NPS) or advocacy > 0:
        return "advocate"
    return "active"


def _field(
    name: str, type_: ValueType, group: str, doc: str, compute: Compute, touched_by: Iterable[str], time: tuple[TimeChange, ...] = ()
) -> FieldSpec:
    return FieldSpec(name, type_, doc, group, compute, time, frozenset(touched_by))


def windowed(name: str, metric: int, days: int, group: str, doc: str, touched_by: Iterable[str], *, cents: bool = False) -> FieldSpec:
    """A field counting one per-day metric over a ``days``-day window (``cents``: a money total,
    returned in currency units)."""

    def compute(view: DnaView) -> Any:
        return view.dna.windows.total(view.now, metric, days)

    def compute_money(view: DnaView) -> Any:
        return view.dna.windows.total(view.now, metric, days) / 100

    return _field(name, NUMBER, group, doc, compute_money if cents else compute, touched_by, (Windowed(metric, days),))


def days_since(name: str, since: int, group: str, doc: str, touched_by: Iterable[str], *, nullable: bool = True) -> FieldSpec:
    """Whole days (floor) since the record's instant ``since`` (``dna_record.instant``); null while there is none."""

    def compute(view: DnaView) -> Any:
        then = instant(view.dna, since)
        return None if then is None else int((view.now - then) // w.DAY)

    return _field(name, NUMBER_OR_NULL if nullable else NUMBER, group, doc, compute, touched_by, (DaysSince(since),))


def _stage(view: DnaView) -> Any:
    dna = view.dna
    return journey_stage(dna.acquired, view["tenure_days"], view["days_since_last_activity"], view["nps"], dna.reviews + dna.referrals)


def _abandoned_30d(view: DnaView) -> Any:
    dna = view.dna
    count = dna.windows.total(view.now, w.ABANDONED, 30)
    if dna.cart_at is not None:
        deadline = dna.cart_at + ABANDON_AFTER_S
        if deadline <= view.now and w.day_of(deadline) > w.day_of(view.now) - 30:
            count += 1
    return count


def _open_cart_value(view: DnaView) -> Any:
    dna = view.dna
    if dna.cart_at is None or view.now >= dna.cart_at + ABANDON_AFTER_S:
        return None
    return to_cents(dna.cart_value) / 100


def _channels(days: int) -> Compute:
    def compute(view: DnaView) -> Any:
        first = int(view.now // w.DAY) - days
        return sum(1 for day in view.dna.channel_days.values() if day > first)

    return compute


def _voice(kind: str) -> Compute:
    def compute(view: DnaView) -> Any:
        answer = view.dna.voice.get(kind)
        return None if answer is None else answer[0]

    return compute


def _engaged_hour(view: DnaView) -> Any:
    hours = view.dna.engaged_hours
    best = max(hours) if hours else 0
    return hours.index(best) if best > 0 else None


def _preferred(view: DnaView) -> Any:
    dna = view.dna
    return dna.preferred_channel if dna.preferred_channel is not None else most_used_channel(dna)


def _avg_order_value(view: DnaView) -> Any:
    dna = view.dna
    return cents_mean(dna.gross_cents, dna.purchases_total) / 100 if dna.purchases_total else None


_ADVOCACY = ("account_created", "purchase", "survey_answered", "review_posted", "referral_made")
_TASTE = ("page_view", "product_viewed", "cart_updated", "purchase")
_CAMPAIGN = ("campaign_delivered", "campaign_opened", "campaign_clicked", "campaign_converted", "campaign_unsubscribed")
_STAGE_INPUTS = (("days_since_last_activity", (float(AT_RISK_DAYS), float(LAPSED_DAYS))), ("tenure_days", (float(ONBOARDING_DAYS),)))

_FIELDS: tuple[FieldSpec, ...] = (
    # lifecycle
    days_since(
        "tenure_days", FIRST_SEEN, "lifecycle",
        "Whole days since `first_seen` (the customer's earliest event of any type, including `campaign_delivered`).",
        [FIRST_SEEN_EARLIER], nullable=False,
    ),
    days_since(
        "days_since_last_activity", LAST_ACTIVITY, "lifecycle",
        "Whole days since the newest *activity* event: any type except `campaign_delivered` and `erasure_requested`. "
        "Before the first activity event: days since `first_seen`. Never null.",
        [RECENCY, FIRST_SEEN_EARLIER], nullable=False,
    ),
    days_since(
        "days_since_last_purchase", LAST_PURCHASE, "lifecycle", "Whole days since the newest `purchase`; null if never bought.", ["purchase"]
    ),
    _field(
        "first_seen", STRING, "lifecycle",
        "RFC 3339 UTC text of the earliest event with milliseconds, e.g. `'2026-03-01T09:00:00.000Z'` (always three digits, as "
        "every output time); compare as text. Moves back if an earlier event arrives late.",
        lambda v: iso(v.dna.first_seen), [FIRST_SEEN_EARLIER],
    ),
    _field(
        "journey_stage", ValueType(Kind.STRING, values=JOURNEY_STAGES), "lifecycle",
        "One of `prospect`, `onboarding`, `active`, `at_risk`, `lapsed`, `advocate`, by the journey-stage rules (docs/dna.md).",
        _stage, [*_ADVOCACY, RECENCY, FIRST_SEEN_EARLIER], (Follows(_STAGE_INPUTS),),
    ),
    # activity
    windowed("sessions_7d", w.SESSIONS, 7, "activity", "`session_started` events in the 7d window.", ["session_started"]),
    windowed("sessions_30d", w.SESSIONS, 30, "activity", "`session_started` events in the 30d window.", ["session_started"]),
    windowed("page_views_30d", w.PAGE_VIEWS, 30, "activity", "`page_view` events in the 30d window.", ["page_view"]),
    windowed(
        "app_sessions_30d", w.APP_SESSIONS, 30, "activity", "`session_started` with `channel: app` in the 30d window.", ["session_started"]
    ),
    windowed(
        "web_sessions_30d", w.WEB_SESSIONS, 30, "activity", "`session_started` with `channel: web` in the 30d window.", ["session_started"]
    ),
    windowed("bounces_30d", w.BOUNCES, 30, "activity", "Sessions with exactly one page view, in the 30d window.", ["page_view"]),
    # spending
    _field(
        "purchases_total", NUMBER, "spending", "`purchase` events ever (each event counts, whatever its `order_id`).",
        lambda v: v.dna.purchases_total, ["purchase"],
    ),
    windowed("purchases_30d", w.PURCHASES, 30, "spending", "`purchase` events in the 30d window.", ["purchase"]),
    windowed("purchases_90d", w.PURCHASES, 90, "spending", "`purchase` events in the 90d window.", ["purchase"]),
    _field(
        "spend_total", NUMBER, "spending", "Sum of purchase `amount`s ever **less** refund `amount`s ever (net; may be negative).",
        lambda v: (v.dna.gross_cents - v.dna.refunded_cents) / 100, ["purchase", "refund"],
    ),
    windowed(
        "spend_30d", w.SPEND, 30, "spending", "Sum of purchase `amount`s in the 30d window (gross: refunds are not subtracted).",
        ["purchase"], cents=True,
    ),
    windowed("spend_90d", w.SPEND, 90, "spending", "Sum of purchase `amount`s in the 90d window (gross).", ["purchase"], cents=True),
    _field(
        "avg_order_value", NUMBER_OR_NULL, "spending",
        "Gross purchase amounts ever / `purchases_total`, rounded half-even to the cent; null if no purchase.",
        _avg_order_value, ["purchase"],
    ),
    windowed(
        "refunds_90d", w.REFUNDS, 90, "spending", "Number of `refund` events in the 90d window (a count, not an amount).", ["refund"]
    ),
    # carts
    _field(
        "carts_abandoned_30d", NUMBER, "carts", "Abandoned carts whose abandonment instant falls in the 30d window.",
        _abandoned_30d, [OPEN_CART], (Windowed(w.ABANDONED, 30), CartTimer()),
    ),
    _field(
        "open_cart_value", NUMBER_OR_NULL, "carts",
        "`cart_value` (to the cent) of the newest `cart_updated`/`checkout_started` not followed by a purchase, while the "
        "cart is open (less than an hour old); null if none or abandoned.",
        _open_cart_value, ["cart_updated", "checkout_started", "purchase", OPEN_CART], (CartTimer(),),
    ),
    # affinity
    _field(
        "top_category", STRING_OR_NULL, "affinity",
        "The category with the highest affinity (ties: alphabetically first); null if none yet.",
        lambda v: top_key(v.dna.affinity), _TASTE,
    ),
    # channels
    _field(
        "preferred_channel", STRING_OR_NULL, "channels",
        "The channel declared by `profile_updated.preferred_channel` (the newest declaration wins; it cannot be cleared); "
        "**fallback**: the channel of the most activity events ever (ties: alphabetically first); null if no activity event "
        "had a channel.",
        _preferred, ["profile_updated", CHANNEL_USED],
    ),
    _field(
        "last_channel", STRING_OR_NULL, "channels",
        "Channel of the newest activity event that had one (`campaign_delivered` does not count).",
        lambda v: v.dna.last_channel, [CHANNEL_CHANGED],
    ),
    _field(
        "channels_30d", NUMBER, "channels", "Distinct channels with an activity event in the 30d window.",
        _channels(30), [NEW_CHANNEL_DAY], (ChannelDays(30),),
    ),
    windowed("channel_switches_30d", w.SWITCHES, 30, "channels", "Channel switches in the 30d window.", [CHANNEL_CHANGED]),
    # campaigns
    windowed(
        "messages_received_30d", w.MESSAGES, 30, "campaigns", "`campaign_delivered` events in the 30d window.", ["campaign_delivered"]
    ),
    windowed("conversions_90d", w.CONVERSIONS, 90, "campaigns", "`campaign_converted` events in the 90d window.", ["campaign_converted"]),
    days_since(
        "days_since_last_message", LAST_MESSAGE, "campaigns", "Whole days since the newest `campaign_delivered`; null if none.",
        ["campaign_delivered"],
    ),
    _field(
        "engaged_hour", NUMBER_OR_NULL, "campaigns",
        "The local hour of day (0..23) with the most sessions, campaign opens and clicks over the customer's whole history "
        "(ties: the earlier hour), each counted at its hour in the customer's `timezone` as known then (UTC before one is "
        "known); null if none. `send_at: best_hour` messages go out in it.",
        _engaged_hour, ["session_started", "campaign_opened", "campaign_clicked"],
    ),
    # voice of customer
    _field(
        "nps", NUMBER_OR_NULL, "voice", "Score of the newest (by `ts`) `survey_answered` with `kind: nps`, 0..10; null if none.",
        _voice("nps"), ["survey_answered"],
    ),
    _field(
        "csat", NUMBER_OR_NULL, "voice", "Score of the newest (by `ts`) `survey_answered` with `kind: csat`, 1..5; null if none.",
        _voice("csat"), ["survey_answered"],
    ),
    _field(
        "ces", NUMBER_OR_NULL, "voice",
        "Score of the newest (by `ts`) `survey_answered` with `kind: ces`, 1..7 (higher = more effort); null if none.",
        _voice("ces"), ["survey_answered"],
    ),
    _field(
        "open_support_contacts", NUMBER, "voice", "`support_contact` `opened` minus `resolved`, never below 0.",
        lambda v: v.dna.open_support, ["support_contact"],
    ),
    windowed(
        "support_contacts_30d", w.SUPPORT, 30, "voice", "`support_contact` with `status: opened` in the 30d window.", ["support_contact"]
    ),
    _field("reviews_total", NUMBER, "voice", "`review_posted` events ever.", lambda v: v.dna.reviews, ["review_posted"]),
    _field("referrals_total", NUMBER, "voice", "`referral_made` events ever.", lambda v: v.dna.referrals, ["referral_made"]),
    *PREDICTIVE_FIELDS,
    # profile
    _field(
        "timezone", STRING_OR_NULL, "profile",
        "IANA zone from the newest `profile_updated.timezone` (validated), e.g. `'Europe/Paris'`; null if never set. Quiet "
        "hours use it, else the policy's `default_timezone`, else UTC.",
        lambda v: v.dna.timezone, ["profile_updated"],
    ),
)


def _method(name: str) -> Any:
    def call(ctx: Any, *args: Any) -> Any:
        return getattr(ctx, name)(*args)

    call.__name__ = name
    return call


def _channel(optional: bool = False) -> tuple[ParamSpec, ...]:
    return (ParamSpec("channel", STRING, optional=optional),)


_A, _B = ParamSpec("a", NUMBER), ParamSpec("b", NUMBER)

_FUNCTIONS: tuple[FunctionSpec, ...] = (
    FunctionSpec(
        "affinity", (ParamSpec("category", STRING),), NUMBER, "Decayed share 0..1 of interest in `category` (see affinity).",
        "affinity", _method("affinity"), touched_by=frozenset(_TASTE),
    ),
    FunctionSpec(
        "consented", _channel(), BOOL, "Opt-in consent for `channel`: false until granted; unsubscribing revokes it.",
        "channels", _method("consented"), touched_by=frozenset({"campaign_unsubscribed", "consent_changed"}),
    ),
    FunctionSpec(
        "open_rate", _channel(True), NUMBER_OR_NULL,
        "Opens / deliveries of `channel`, or of all channels without an argument; null if none delivered.",
        "campaigns", _method("open_rate"), touched_by=frozenset(_CAMPAIGN),
    ),
    FunctionSpec(
        "click_rate", _channel(True), NUMBER_OR_NULL,
        "Clicks / deliveries of `channel`, or of all channels without an argument; null if none delivered.",
        "campaigns", _method("click_rate"), touched_by=frozenset(_CAMPAIGN),
    ),
    FunctionSpec(
        "unsubscribed", _channel(), BOOL, "True after a `campaign_unsubscribed` on `channel`, until consent is granted again.",
        "campaigns", _method("unsubscribed"), touched_by=frozenset({"campaign_unsubscribed", "consent_changed"}),
    ),
    FunctionSpec(
        "attr", (ParamSpec("name", STRING),), ANY, "A profile attribute set by `profile_updated`; null if unset.",
        "profile", _method("attr"), touched_by=frozenset({"profile_updated"}),
    ),
    FunctionSpec("min", (_A, _B), NUMBER, "Smallest argument; null if any is null.", "builtin", variadic=True),
    FunctionSpec("max", (_A, _B), NUMBER, "Largest argument; null if any is null.", "builtin", variadic=True),
    FunctionSpec("abs", (ParamSpec("x", NUMBER),), NUMBER, "Absolute value; null if null.", "builtin"),
    FunctionSpec(
        "coalesce", (ParamSpec("a", ANY), ParamSpec("b", ANY)), ANY, "First argument that is not null.", "builtin", variadic=True
    ),
)

BUILTINS = Registry(_FIELDS, _FUNCTIONS, PREDICTIVE_HELPERS)
"""Every built-in DNA field and function."""

FIELDS = BUILTINS.fields
FUNCTIONS = BUILTINS.functions
TIME_DEPENDENT = BUILTINS.time_dependent
