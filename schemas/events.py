"""Input events (CONTRACT §1): one pydantic model per type, validated from raw bytes.

``decode_event`` is the single entry point for untrusted input: it returns an ``Event`` or
raises ``InvalidEvent`` whose message is the dead-letter reason. Unknown envelope fields are
refused; unknown keys inside ``props`` are ignored so producers can add context freely.
"""

from __future__ import annotations

import json

from datetime import datetime, timezone
from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple, Union
from zoneinfo import ZoneInfo

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    create_model,
    ValidationError,
    field_validator,
    model_validator,
)

from microseg.errors import MicrosegError

__all__ = [
    "EVENT_TYPES",
    "Event",
    "InvalidEvent",
    "EventModel",
    "decode_event",
    "MAX_EVENT_BYTES",
    "FUTURE_TOLERANCE_S",
]

MAX_EVENT_BYTES = 64 * 1024
MAX_DEPTH = 8
FUTURE_TOLERANCE_S = 86_400.0
_MIN_TS = datetime(1990, 1, 1, tzinfo=timezone.utc).timestamp()
_MAX_TS = datetime(2100, 1, 1, tzinfo=timezone.utc).timestamp()

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=512)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False, le=1e12)]
Count = Annotated[int, Field(ge=0, le=1_000_000)]


class InvalidEvent(MicrosegError):
    """An input record that cannot be used; ``str()`` is the dead-letter reason."""


class _Props(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, allow_inf_nan=False)


class NoProps(_Props):
    pass


class AccountCreatedProps(_Props):
    signup_channel: Name | None = None


class SessionStartedProps(_Props):
    page: Text | None = None
    referrer: Text | None = None


class PageViewProps(_Props):
    page: Text
    category: Name | None = None
    duration_s: Annotated[float, Field(ge=0, le=86_400 * 7)] | None = None


class ProductViewedProps(_Props):
    product_id: Id
    category: Name
    price: Money | None = None


class CartUpdatedProps(_Props):
    product_id: Id
    category: Name
    quantity: Count
    cart_value: Money


class CheckoutStartedProps(_Props):
    cart_value: Money


class Item(_Props):
    product_id: Id
    category: Name
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    price: Money


class PurchaseProps(_Props):
    order_id: Id
    amount: Money
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)] | None = None
    items: Annotated[list[Item], Field(max_length=500)] | None = None


class RefundProps(_Props):
    order_id: Id
    amount: Money


class CampaignProps(_Props):
    message_id: Id
    campaign_id: Id | None = None


class SurveyProps(_Props):
    kind: Literal["nps", "csat", "ces"]
    score: int

    @model_validator(mode="after")
    def _in_range(self) -> "SurveyProps":
        low, high = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}[self.kind]
        if not low <= self.score <= high:
            raise ValueError(f"{self.kind} score must be {low}..{high}, got {self.score}")
        return self


class SupportContactProps(_Props):
    status: Literal["opened", "resolved"]
    topic: Name | None = None


class ReviewProps(_Props):
    rating: Annotated[int, Field(ge=1, le=5)]
    product_id: Id | None = None


class ReferralProps(_Props):
    referred_customer_id: Id | None = None


class ConsentProps(_Props):
    channel: Name
    granted: bool


Scalar = Union[Annotated[str, StringConstraints(max_length=256)], bool, int, float, None]
INT_RANGE = (-(2**63), 2**63 - 1)
"""The integers the customer state can hold (msgpack: signed 64 bits)."""


class ProfileProps(_Props):
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


PROPS_BY_TYPE: dict[str, type[_Props]] = {
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
    "campaign_converted": CampaignProps,
    "campaign_unsubscribed": CampaignProps,
    "survey_answered": SurveyProps,
    "support_contact": SupportContactProps,
    "review_posted": ReviewProps,
    "referral_made": ReferralProps,
    "consent_changed": ConsentProps,
    "profile_updated": ProfileProps,
    "erasure_requested": NoProps,
}

EVENT_TYPES: tuple[str, ...] = tuple(PROPS_BY_TYPE)


class EventModel(BaseModel):
    """The envelope as producers write it; used for JSON Schema export and validation."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    event_id: Id
    customer_id: Id
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    ts: AwareDatetime
    channel: Name | None = None
    device: Name | None = None
    props: dict[str, Any] = Field(default_factory=dict)


_ENVELOPE = TypeAdapter(EventModel)
_PROPS_ADAPTERS = {name: TypeAdapter(model) for name, model in PROPS_BY_TYPE.items()}


def _typed_model(kind: str, props: type[_Props]) -> type[BaseModel]:
    required = any(f.is_required() for f in props.model_fields.values())
    props_field: Any = (props, ...) if required else (props, Field(default_factory=props))
    return create_model(
        f"{props.__name__.removesuffix('Props')}Event_{kind}",
        __config__=ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False),
        event_id=(Id, ...),
        customer_id=(Id, ...),
        type=(Literal[kind], ...),  # type: ignore[valid-type]
        ts=(AwareDatetime, ...),
        channel=(Name | None, None),
        device=(Name | None, None),
        props=props_field,
    )


_TYPED: TypeAdapter[Any] = TypeAdapter(
    Annotated[Union[tuple(_typed_model(k, m) for k, m in PROPS_BY_TYPE.items())], Field(discriminator="type")]  # type: ignore[misc]
)
"""All event types in one validator, straight from JSON bytes: the fast path for good input.
Bad input is re-examined by the step-by-step path, which words the dead-letter reason."""
_VALIDATE_JSON = _TYPED.validator.validate_json


class Event(NamedTuple):
    """A validated event as the core sees it: time as epoch seconds, props typed (immutable)."""

    event_id: str
    customer_id: str
    type: str
    t: float
    channel: str | None
    device: str | None
    props: Any


_new_event = tuple.__new__
"""``Event`` built without its Python-level ``__new__`` (a frame per event on the hot path)."""


def _too_deep(value: Any, depth: int = 1) -> bool:
    if depth > MAX_DEPTH:
        return True
    if type(value) is dict:
        return any(type(v) in (dict, list) and _too_deep(v, depth + 1) for v in value.values())
    if type(value) is list:
        return any(type(v) in (dict, list) and _too_deep(v, depth + 1) for v in value)
    return False


def _describe(error: ValidationError, prefix: str = "") -> str:
    parts = []
    for item in error.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in item["loc"])
        where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "event"
        msg = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def decode_event(raw: bytes, *, reference_t: float | None = None, key: bytes | None = None) -> Event:
    """Validate one raw record; events more than a day after ``reference_t`` are refused.

    ``reference_t`` is the processing clock: the later of the wall clock and the newest good event
    seen. The newest event alone would not do: a quiet day in a partition would then make every
    later event look like it came from the future, for ever.

    ``key``, when given, must equal the customer_id (the Kafka message key).
    """
    if len(raw) <= MAX_EVENT_BYTES and raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH:
        try:
            model = _VALIDATE_JSON(raw)
        except ValidationError:
            pass
        else:
            t = model.ts.timestamp()
            if (
                _MIN_TS <= t < _MAX_TS
                and (reference_t is None or t <= reference_t + FUTURE_TOLERANCE_S)
                and (key is None or key == model.customer_id.encode())
            ):
                return _new_event(Event, (model.event_id, model.customer_id, model.type, t, model.channel, model.device, model.props))
            return _checked(model.event_id, model.customer_id, model.type, model.ts, model.channel, model.device, model.props, reference_t, key)
    return _decode_slowly(raw, reference_t=reference_t, key=key)


def _checked(
    event_id: str, customer_id: str, kind: str, ts: datetime, channel: str | None, device: str | None, props: Any,
    reference_t: float | None, key: bytes | None,
) -> Event:
    t = ts.timestamp()
    if not (_MIN_TS <= t < _MAX_TS):
        raise InvalidEvent(f"ts {ts.isoformat()!r} is outside 1990..2100")
    if reference_t is not None and t > reference_t + FUTURE_TOLERANCE_S:
        raise InvalidEvent(
            f"ts {ts.isoformat()!r} is more than 1 day in the future "
            f"(processing clock {datetime.fromtimestamp(reference_t, timezone.utc).isoformat()})"
        )
    if key is not None and key != customer_id.encode():
        raise InvalidEvent(f"message key {key[:130]!r} does not match customer_id {customer_id!r}")
    return Event(event_id, customer_id, kind, t, channel, device, props)


def _decode_slowly(raw: bytes, *, reference_t: float | None, key: bytes | None) -> Event:
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"record is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid JSON (or not UTF-8): {exc}") from None
    data = json.loads(raw)  # exact integers: orjson reads those beyond 64 bits as floats
    if not isinstance(data, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(data).__name__}")
    props = data.get("props")
    if props and _too_deep(props):
        raise InvalidEvent(f"nested deeper than {MAX_DEPTH} levels")
    kind = data.get("type")
    if isinstance(kind, str) and kind not in PROPS_BY_TYPE:
        raise InvalidEvent(f"unknown event type {kind[:64]!r}; expected one of: {', '.join(EVENT_TYPES)}")
    try:
        envelope = _ENVELOPE.validate_python(data)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc)) from None
    try:
        typed_props = _PROPS_ADAPTERS[envelope.type].validate_python(envelope.props)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc, "props.")) from None
    except ValueError as exc:
        raise InvalidEvent(f"props: {exc}") from None
    return _checked(
        envelope.event_id, envelope.customer_id, envelope.type, envelope.ts, envelope.channel, envelope.device, typed_props, reference_t, key
    )
