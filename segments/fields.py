"""The registry of DNA names a rule can read: one source for the type checker, the evaluator and the docs.

Every field and function of CONTRACT §2 is declared here with its type. The language compiles a
field reference into ``ctx[name]`` on an evaluation context (a mapping that computes DNA fields on
first use, see ``segments.dna.DnaView``), and a function call into ``spec.impl(ctx, *args)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "Kind",
    "ValueType",
    "FieldSpec",
    "ParamSpec",
    "FunctionSpec",
    "NUMBER",
    "NUMBER_OR_NULL",
    "STRING",
    "STRING_OR_NULL",
    "BOOL",
    "ANY",
    "JOURNEY_STAGES",
    "FIELDS",
    "FUNCTIONS",
    "TIME_DEPENDENT",
]


class Kind(str, Enum):
    NUMBER = "number"
    STRING = "string"
    BOOL = "bool"
    LIST = "list"
    NULL = "null"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class ValueType:
    """A static type: a kind, whether null is possible, the item kind of lists, an enum of strings."""

    kind: Kind
    nullable: bool = False
    item: Kind | None = None
    values: frozenset[str] | None = None

    def __str__(self) -> str:
        base = f"list[{self.item.value}]" if self.kind is Kind.LIST and self.item else self.kind.value
        return f"{base}?" if self.nullable and self.kind is not Kind.NULL else base


NUMBER = ValueType(Kind.NUMBER)
NUMBER_OR_NULL = ValueType(Kind.NUMBER, nullable=True)
STRING = ValueType(Kind.STRING)
STRING_OR_NULL = ValueType(Kind.STRING, nullable=True)
BOOL = ValueType(Kind.BOOL)
ANY = ValueType(Kind.ANY, nullable=True)

JOURNEY_STAGES = frozenset({"prospect", "onboarding", "active", "at_risk", "lapsed", "advocate"})


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A DNA field. ``time_dependent`` fields change as time passes with no event."""

    name: str
    type: ValueType
    doc: str
    group: str
    time_dependent: bool = False


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: ValueType
    optional: bool = False


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function a rule may call.

    ``impl(ctx, *args)`` computes it; ``None`` marks the language builtins (min, max, abs,
    coalesce) that the compiler implements with its own null rules. ``variadic`` repeats the
    last parameter.
    """

    name: str
    params: tuple[ParamSpec, ...]
    returns: ValueType
    doc: str
    group: str
    impl: Callable[..., Any] | None = field(default=None, compare=False)
    variadic: bool = False
    time_dependent: bool = False


def _f(name: str, type_: ValueType, group: str, doc: str, *, time: bool = False) -> FieldSpec:
    return FieldSpec(name, type_, doc, group, time)


_FIELD_LIST: tuple[FieldSpec, ...] = (
    # lifecycle
    _f("tenure_days", NUMBER, "lifecycle", "Whole days since the customer was first seen.", time=True),
    _f("days_since_last_activity", NUMBER, "lifecycle", "Whole days since the newest event of any kind.", time=True),
    _f("days_since_last_purchase", NUMBER_OR_NULL, "lifecycle", "Whole days since the newest purchase; null if never.", time=True),
    _f("first_seen", STRING, "lifecycle", "RFC 3339 UTC instant of the first event, e.g. '2024-01-31T09:00:00Z' (compare as text)."),
    _f(
        "journey_stage",
        ValueType(Kind.STRING, values=JOURNEY_STAGES),
        "lifecycle",
        "prospect, onboarding (first 90 days), active, at_risk, lapsed or advocate (see docs/dna.md).",
        time=True,
    ),
    # activity
    _f("sessions_7d", NUMBER, "activity", "Sessions started in the last 7 days.", time=True),
    _f("sessions_30d", NUMBER, "activity", "Sessions started in the last 30 days.", time=True),
    _f("page_views_30d", NUMBER, "activity", "Page views in the last 30 days.", time=True),
    _f("app_sessions_30d", NUMBER, "activity", "Sessions on channel 'app' in the last 30 days.", time=True),
    _f("web_sessions_30d", NUMBER, "activity", "Sessions on channel 'web' in the last 30 days.", time=True),
    _f("bounces_30d", NUMBER, "activity", "Sessions with exactly one page view in the last 30 days.", time=True),
    # spending
    _f("purchases_total", NUMBER, "spending", "Purchases ever."),
    _f("purchases_30d", NUMBER, "spending", "Purchases in the last 30 days.", time=True),
    _f("purchases_90d", NUMBER, "spending", "Purchases in the last 90 days.", time=True),
    _f("spend_total", NUMBER, "spending", "Sum of purchase amounts ever, less refunds."),
    _f("spend_30d", NUMBER, "spending", "Sum of purchase amounts in the last 30 days.", time=True),
    _f("spend_90d", NUMBER, "spending", "Sum of purchase amounts in the last 90 days.", time=True),
    _f("avg_order_value", NUMBER_OR_NULL, "spending", "Mean purchase amount; null if no purchase."),
    _f("refunds_90d", NUMBER, "spending", "Refunds in the last 90 days.", time=True),
    # carts
    _f(
        "carts_abandoned_30d",
        NUMBER,
        "carts",
        "Carts or checkouts in the last 30 days not followed by a purchase within the abandonment window (1 hour).",
        time=True,
    ),
    _f("open_cart_value", NUMBER_OR_NULL, "carts", "Value of the cart not yet bought nor abandoned (within the hour); null if none.", time=True),
    # affinity
    _f("top_category", STRING_OR_NULL, "affinity", "Category with the highest affinity; null if none."),
    # channels
    _f("preferred_channel", STRING_OR_NULL, "channels", "Declared preferred channel, else the most used one."),
    _f("last_channel", STRING_OR_NULL, "channels", "Channel of the newest event that had one."),
    _f("channels_30d", NUMBER, "channels", "Distinct channels used in the last 30 days.", time=True),
    _f("channel_switches_30d", NUMBER, "channels", "Consecutive events on different channels, last 30 days.", time=True),
    # campaigns
    _f("messages_received_30d", NUMBER, "campaigns", "Campaign messages delivered in the last 30 days.", time=True),
    _f("conversions_90d", NUMBER, "campaigns", "Campaign conversions in the last 90 days.", time=True),
    _f("days_since_last_message", NUMBER_OR_NULL, "campaigns", "Whole days since the last delivered message; null if none.", time=True),
    # voice of customer
    _f("nps", NUMBER_OR_NULL, "voice", "Last NPS answer 0..10; null if none."),
    _f("csat", NUMBER_OR_NULL, "voice", "Last CSAT answer 1..5; null if none."),
    _f("ces", NUMBER_OR_NULL, "voice", "Last CES answer 1..7; null if none."),
    _f("open_support_contacts", NUMBER, "voice", "Support contacts opened and not yet resolved."),
    _f("support_contacts_30d", NUMBER, "voice", "Support contacts opened in the last 30 days.", time=True),
    _f("reviews_total", NUMBER, "voice", "Reviews posted ever."),
    _f("referrals_total", NUMBER, "voice", "Referrals made ever."),
    # predictive
    _f("p_alive", NUMBER_OR_NULL, "predictive", "BG/NBD probability the customer is still active; null without a model or before a first purchase.", time=True),
    _f("churn_risk", NUMBER_OR_NULL, "predictive", "1 - p_alive; null without a model.", time=True),
    _f("expected_purchases_90d", NUMBER_OR_NULL, "predictive", "BG/NBD expected purchase days in the next 90 days; null without a model or purchase.", time=True),
    _f("clv_12m", NUMBER_OR_NULL, "predictive", "Expected spend over the next 12 months (BG/NBD x Gamma-Gamma).", time=True),
    # profile
    _f("timezone", STRING_OR_NULL, "profile", "IANA time zone from the profile, e.g. 'Europe/Paris'; null if unknown."),
)

FIELDS: Mapping[str, FieldSpec] = {f.name: f for f in _FIELD_LIST}

TIME_DEPENDENT: frozenset[str] = frozenset(f.name for f in _FIELD_LIST if f.time_dependent)


def _channel_param(optional: bool = False) -> tuple[ParamSpec, ...]:
    return (ParamSpec("channel", STRING, optional=optional),)


def _impl(method: str) -> Callable[..., Any]:
    def call(ctx: Any, *args: Any) -> Any:
        return getattr(ctx, method)(*args)

    call.__name__ = method
    return call


_FUNCTION_LIST: tuple[FunctionSpec, ...] = (
    FunctionSpec("affinity", (ParamSpec("category", STRING),), NUMBER, "Decayed share 0..1 of interest in a category.", "affinity", _impl("affinity")),
    FunctionSpec("consented", _channel_param(), BOOL, "True if the customer granted consent for the channel.", "channels", _impl("consented")),
    FunctionSpec("open_rate", _channel_param(True), NUMBER_OR_NULL, "Opens / deliveries (of one channel, or all); null if none delivered.", "campaigns", _impl("open_rate")),
    FunctionSpec("click_rate", _channel_param(True), NUMBER_OR_NULL, "Clicks / deliveries (of one channel, or all); null if none delivered.", "campaigns", _impl("click_rate")),
    FunctionSpec("unsubscribed", _channel_param(), BOOL, "True if the customer unsubscribed from the channel.", "campaigns", _impl("unsubscribed")),
    FunctionSpec("attr", (ParamSpec("name", STRING),), ANY, "A profile attribute set by profile_updated; null if unset.", "profile", _impl("attr")),
    FunctionSpec("min", (ParamSpec("a", NUMBER), ParamSpec("b", NUMBER)), NUMBER, "Smallest argument; null if any is null.", "builtin", variadic=True),
    FunctionSpec("max", (ParamSpec("a", NUMBER), ParamSpec("b", NUMBER)), NUMBER, "Largest argument; null if any is null.", "builtin", variadic=True),
    FunctionSpec("abs", (ParamSpec("x", NUMBER),), NUMBER, "Absolute value; null if null.", "builtin"),
    FunctionSpec("coalesce", (ParamSpec("a", ANY), ParamSpec("b", ANY)), ANY, "First argument that is not null.", "builtin", variadic=True),
)

FUNCTIONS: Mapping[str, FunctionSpec] = {f.name: f for f in _FUNCTION_LIST}
