"""Input events (CONTRACT §1): the envelope, one pydantic props model per built-in type, and
``Event``, a validated event as the core sees it.

The validator of raw records is ``schemas.event_catalog`` (for the built-in types and any custom
ones a rule set declares); ``schemas.events`` is the one place to import all of it from.
Unknown envelope fields are refused; unknown keys inside ``props`` are ignored so producers can
add context freely.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple, Union
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from microseg.errors import MicrosegError

__all__ = [
    "EVENT_TYPES",
    "PROPS_BY_TYPE",
    "Event",
    "EventModel",
    "InvalidEvent",
    "MAX_EVENT_BYTES",
    "MAX_DEPTH",
    "FUTURE_TOLERANCE_S",
    "MIN_TS",
    "MAX_TS",
    "INT_RANGE",
    "PropsModel",
    "ANONYMOUS_KEY",
    "IDENTIFY",
    "profile_key",
    "anonymous_of",
    "id_problem",
]

MAX_EVENT_BYTES = 64 * 1024
"""The largest record accepted, in bytes."""
MAX_DEPTH = 8
"""The deepest nesting of objects and lists accepted in a record."""
FUTURE_TOLERANCE_S = 86_400.0
"""How far (seconds) an event's ``ts`` may be after the processing clock."""
MIN_TS = datetime(1990, 1, 1, tzinfo=timezone.utc).timestamp()
MAX_TS = datetime(2100, 1, 1, tzinfo=timezone.utc).timestamp()
"""Event times are accepted in ``MIN_TS <= t < MAX_TS`` (epoch seconds, UTC)."""

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=512)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False, le=1e12)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]


class InvalidEvent(MicrosegError):
    """An input record that cannot be used; ``str()`` is the dead-letter reason."""


class PropsModel(BaseModel):
    """The base of every props model: unknown keys ignored, frozen, strict types, no inf/nan."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, allow_inf_nan=False)


class NoProps(PropsModel):
    pass


class AccountCreatedProps(PropsModel):
    signup_channel: Name | None = None


class SessionStartedProps(PropsModel):
    page: Text | None = None
    referrer: Text | None = None


class PageViewProps(PropsModel):
    page: Text
    category: Name | None = None
    duration_s: Annotated[float, Field(ge=0, le=86_400 * 7)] | None = None


class ProductViewedProps(PropsModel):
    product_id: Id
    category: Name
    price: Money | None = None


class CartUpdatedProps(PropsModel):
    product_id: Id
    category: Name
    quantity: Count
    cart_value: Money


class CheckoutStartedProps(PropsModel):
    cart_value: Money


class Item(PropsModel):
    product_id: Id
    category: Name
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    price: Money


class PurchaseProps(PropsModel):
    order_id: Id
    amount: Money
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)] | None = None
    items: Annotated[list[Item], Field(max_length=500)] | None = None


class RefundProps(PropsModel):
    order_id: Id
    amount: Money


class CampaignProps(PropsModel):
    message_id: Id
    campaign_id: Id | None = None


class ConvertedProps(CampaignProps):
    """A conversion credited to a message; ``variant`` (optional) names the message variant that
    was sent, so Thompson sampling (``segments.bandit``) can credit the right arm."""

    variant: Id | None = None


class SurveyProps(PropsModel):
    kind: Literal["nps", "csat", "ces"]
    score: int

    @model_validator(mode="after")
    def _in_range(self) -> "SurveyProps":
        low, high = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}[self.kind]
        if not low <= self.score <= high:
            raise ValueError(f"{self.kind} score must be {low}..{high}, got {self.score}")
        return self


class SupportContactProps(PropsModel):
    status: Literal["opened", "resolved"]
    topic: Name | None = None


class ReviewProps(PropsModel):
    rating: Annotated[int, Field(ge=1, le=5)]
    product_id: Id | None = None


class ReferralProps(PropsModel):
    referred_customer_id: Id | None = None


class ConsentProps(PropsModel):
    channel: Name
    granted: bool


Scalar = Union[Annotated[str, StringConstraints(max_length=256)], bool, int, float, None]
INT_RANGE = (-(2**63), 2**63 - 1)
"""The integers the customer state can hold (msgpack: signed 64 bits)."""


class ProfileProps(PropsModel):
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    preferred_channel: Name | None = None
    attributes: Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], Scalar], Field(max_length=64)] | None = None

    @field_validator("attributes", mode="before")
    @classmethod
    def _storable(cls, attributes: Any) -> Any:
        if isinstance(attributes, dict):
            for name, value in attributes.items():
                if type(value) is int and not INT_RANGE[0] <= value <= INT_RANGE[1]:
                    raise ValueError(f"attributes.{str(name)[:64]}: integer {value} does not fit in 64 bits; send it as a string")
        return attributes

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, tz: str | None) -> str | None:
        if tz is not None and _zone(tz) is None:
            raise ValueError(f"unknown time zone {tz!r} (use an IANA name such as 'Europe/Paris')")
        return tz


@lru_cache(maxsize=512)
def _zone(name: str) -> Any:
    """Cached: ``ZoneInfo`` keeps only 8 zones alive, and re-reading one from disk costs ~30 µs."""
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None


PROPS_BY_TYPE: dict[str, type[PropsModel]] = {
    "account_created": AccountCreatedProps,
    "session_started": SessionStartedProps,
    "page_view": PageViewProps,
    "product_viewed": ProductViewedProps,
    "cart_updated": CartUpdatedProps,
    "checkout_started": CheckoutStartedProps,
    "purchase": PurchaseProps,
    "refund": RefundProps,
    "campaign_delivered": CampaignProps,
    "campaign_opened": CampaignProps,
    "campaign_clicked": CampaignProps,
    "campaign_converted": ConvertedProps,
    "campaign_unsubscribed": CampaignProps,
    "survey_answered": SurveyProps,
    "support_contact": SupportContactProps,
    "review_posted": ReviewProps,
    "referral_made": ReferralProps,
    "consent_changed": ConsentProps,
    "profile_updated": ProfileProps,
    "identify": NoProps,
    "erasure_requested": NoProps,
}

EVENT_TYPES: tuple[str, ...] = tuple(PROPS_BY_TYPE)


IDENTIFY = "identify"
"""The built-in type that links an anonymous visitor to a customer (CONTRACT §8): both ids given."""

ANONYMOUS_KEY = "\x01"
"""The first character of an anonymous visitor's *profile key*: ``"\x01" + anonymous_id``. A
customer's profile key is its ``customer_id`` as given, and ids beginning with a control character
(U+0000..U+001F) are refused at decoding, so a customer ``x`` (key ``x``) and an anonymous visitor
``x`` (key ``\x01x``) never share a key. Keys beginning with NUL stay the hosts' own (erased marks,
bookkeeping), skipped when they list customers; ``\x01`` keys are listed like customers'."""


def profile_key(customer_id: str | None, anonymous_id: str | None) -> str:
    """The profile an event counts for before alias resolution: the customer when its id is given,
    else the anonymous visitor (``ANONYMOUS_KEY + anonymous_id``)."""
    if customer_id is not None:
        return customer_id
    return ANONYMOUS_KEY + anonymous_id  # type: ignore[operator]


def anonymous_of(key: str) -> str | None:
    """The anonymous id of an anonymous visitor's profile key; None for a customer's key."""
    return key[1:] if key[:1] == ANONYMOUS_KEY else None


def id_problem(customer_id: str | None, anonymous_id: str | None, kind: str) -> str | None:
    """What is wrong with an envelope's ids (the dead-letter reason), None when they are usable:
    at least one id; both for ``identify``; no id beginning with a control character."""
    if customer_id is None and anonymous_id is None:
        return "customer_id or anonymous_id is required (at least one of them)"
    if kind == IDENTIFY and (customer_id is None or anonymous_id is None):
        return "identify needs both customer_id and anonymous_id"
    for name, value in (("customer_id", customer_id), ("anonymous_id", anonymous_id)):
        if value is not None and value[0] < " ":
            return f"{name} {value[:40]!r} begins with a control character; ids must begin with a printable character"
    return None


class EventModel(BaseModel):
    """The envelope as producers write it; used for JSON Schema export and validation. At least
    one of ``customer_id`` and ``anonymous_id`` (identity: docs/dna.md, "Merging two profiles"); ``identify`` carries both."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    event_id: Id
    customer_id: Id | None = None
    anonymous_id: Id | None = None
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    ts: AwareDatetime
    channel: Name | None = None
    device: Name | None = None
    props: dict[str, Any] = Field(default_factory=dict)


class Event(NamedTuple):
    """A validated event as the core sees it: time as epoch seconds, props typed (immutable).

    ``customer_id`` is the *profile key* the event counts for (``profile_key``): the customer's id,
    or ``ANONYMOUS_KEY + anonymous_id`` for an event of an anonymous visitor (alias resolution may
    re-key it to the customer the visitor was identified as). ``anonymous_id``: as sent, or None."""

    event_id: str
    customer_id: str
    type: str
    t: float
    channel: str | None
    device: str | None
    props: Any
    anonymous_id: str | None = None

