"""Input events (CONTRACT §1): one pydantic model per type, validated from raw bytes.

``decode_event`` is the single entry point for untrusted input: it returns an ``Event`` or
raises ``InvalidEvent`` whose message is the dead-letter reason. Unknown envelope fields are
refused; unknown keys inside ``props`` are ignored so producers can add context freely.

``ts`` is an RFC 3339 date-time with a UTC offset (``Z`` or ``±hh:mm``), read as pydantic reads
it: ``t``/``z`` in lower case and a space for ``T`` are accepted (RFC 3339 allows both),
fractional seconds of any length are cut to microseconds. A leap second (``23:59:60Z``, or the
same instant with an offset) is clamped to ``23:59:59.999999Z`` of that UTC day, so it stays on
its day and before the next one's midnight; ``:60`` anywhere else is refused. A refused ``ts``
gets a reason that names its problem (``_ts_problem``), not the parser's first complaint.
"""

from __future__ import annotations

import calendar
import json
import re

from datetime import datetime, timedelta, timezone
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


_TS_EXAMPLE = "an RFC 3339 time such as '2026-03-01T09:00:00Z' or '2026-03-01T10:00:00+01:00'"
_LEAP = re.compile(r"(\d{4}-\d{2}-\d{2}[Tt _]\d{2}:\d{2}):60(?:\.\d+)?([Zz]|[+-]\d{2}:?\d{2})")
_DATE = re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)")
_TIME = re.compile(r"([0-9]+):([0-9]+)(?::([0-9]+))?")
_OFFSET = re.compile(r"[+-]([0-9]{2}):?([0-9]{2})")


def _leap_second(text: str) -> str | None:
    """``text`` with a leap second (second 60) in the last minute of a UTC day, as the last
    microsecond of that day in UTC; None for anything else (decoded, or refused, as it is)."""
    match = _LEAP.fullmatch(text)
    if match is None:
        return None
    try:
        minute = datetime.fromisoformat(f"{match.group(1)}:00{match.group(2).upper()}")
    except ValueError:
        return None
    utc = minute.astimezone(timezone.utc)
    if (utc.hour, utc.minute) != (23, 59):
        return None
    return (utc + timedelta(seconds=59, microseconds=999_999)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ts_problem(text: str) -> str | None:
    """What is wrong with a ``ts`` text pydantic refused, in words; None if nothing is found here
    (the parser's own message is used then). Checked part by part, in reading order."""
    if not text.strip():
        return f"is empty; expected {_TS_EXAMPLE}"
    if text != text.strip():
        return "has spaces before or after it"
    date = _DATE.match(text)
    if date is None:
        if text.lstrip("+-").replace(".", "", 1).isdigit():
            return f"is a number in a string; expected {_TS_EXAMPLE}"
        return f"does not start with a date YYYY-MM-DD; expected {_TS_EXAMPLE}"
    year_text, month_text, day_text = date.groups()
    if len(year_text) != 4:
        return f"year {year_text} must have 4 digits (YYYY-MM-DD)"
    if len(month_text) != 2 or len(day_text) != 2:
        return "month and day must have 2 digits each (YYYY-MM-DD)"
    year, month, day = int(year_text), int(month_text), int(day_text)
    if not 1 <= month <= 12:
        return f"month {month_text} is not 01..12"
    days = calendar.monthrange(max(year, 1), month)[1]
    if not 1 <= day <= days:
        return f"day {day_text} does not exist: {year_text}-{month_text} has {days} days"
    if not 1990 <= year < 2100:
        return f"year {year_text} is outside 1990..2100"
    rest = text[date.end():]
    if not rest:
        return "is a date without a time of day and UTC offset; expected e.g. '2026-03-01T09:00:00Z'"
    if rest[0] not in "Tt _":
        return f"expected 'T' between the date and the time, found {rest[0]!r}"
    clock = _TIME.match(rest, 1)
    if clock is None:
        return "the time of day must be hh:mm:ss after the 'T'"
    hour, minute, second = clock.groups()
    if len(hour) != 2 or len(minute) != 2 or (second is not None and len(second) != 2):
        return "hours, minutes and seconds must have 2 digits each (hh:mm:ss)"
    if int(hour) > 23:
        return f"hour {hour} is not 00..23" + ("; the end of a day is 00:00:00 of the next" if hour == "24" else "")
    if int(minute) > 59:
        return f"minute {minute} is not 00..59"
    if second == "60":
        return "second 60 (a leap second) is accepted only in the last minute of a UTC day (23:59:60Z, or that instant with an offset)"
    if second is not None and int(second) > 59:
        return f"second {second} is not 00..59"
    rest = rest[clock.end():]
    if rest[:1] == ".":
        digits = len(rest) - len(rest[1:].lstrip("0123456789")) - 1
        if digits == 0:
            return "has a '.' with no digits after it (fractional seconds)"
        rest = rest[1 + digits:]
    if not rest:
        return "has no UTC offset; end it with 'Z' (UTC) or an offset such as '+01:00'"
    if rest in ("Z", "z"):
        return None
    offset = _OFFSET.match(rest)
    if offset is None:
        if rest[0] in "+-":
            return f"UTC offset {rest!r} must be ±hh:mm"
        if rest[0] in "Zz":
            return f"unexpected text {rest[1:]!r} after the UTC offset"
        return f"expected the UTC offset ('Z' or ±hh:mm) after the time, found {rest!r}"
    if int(offset.group(1)) > 23 or int(offset.group(2)) > 59:
        return f"UTC offset {offset.group(0)} is out of range (-23:59..+23:59)"
    if offset.end() != len(rest):
        return f"unexpected text {rest[offset.end():]!r} after the UTC offset"
    return None


def _describe(error: ValidationError, prefix: str = "", ts: Any = None) -> str:
    parts = []
    for item in error.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in item["loc"])
        where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "event"
        msg = str(item["msg"]).removeprefix("Value error, ")
        if loc == "ts" and not prefix and isinstance(ts, str):
            problem = _ts_problem(ts)
            msg = f"{ts[:48]!r} {problem}" if problem else f"{ts[:48]!r}: {msg}"
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
            props = model.props
            keys = len(model.__pydantic_fields_set__) + len(props.__pydantic_fields_set__)
            nested = _NESTED_KEYS.get(type(props))
            if nested is not None:
                keys += nested(props)
            if raw.count(b'":') != keys:  # a repeated key, or (rarely) unknown keys, spaced colons, '":' in a value
                _refuse_duplicate_keys(raw)
            t = model.ts.timestamp()
            if (
                _MIN_TS <= t < _MAX_TS
                and (reference_t is None or t <= reference_t + FUTURE_TOLERANCE_S)
                and (key is None or key == model.customer_id.encode())
            ):
                return _new_event(Event, (model.event_id, model.customer_id, model.type, t, model.channel, model.device, model.props))
            return _checked(model.event_id, model.customer_id, model.type, model.ts, model.channel, model.device, model.props, reference_t, key)
    return _decode_slowly(raw, reference_t=reference_t, key=key)


def _item_keys(props: Any) -> int:
    return sum(len(item.__pydantic_fields_set__) for item in props.items) if props.items else 0


def _attribute_keys(props: Any) -> int:
    return len(props.attributes) if props.attributes else 0


_NESTED_KEYS: dict[type, Any] = {PurchaseProps: _item_keys, ProfileProps: _attribute_keys}
"""Keys below props, for the props types that have objects inside: JSON parsers keep the last of
repeated keys silently, so the fast path counts the keys it read against the ``":`` in the record."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise InvalidEvent(f"duplicate key {name[:64]!r}: the record is ambiguous (which value is meant?)")
            seen.add(name)
    return found


def _refuse_duplicate_keys(raw: bytes) -> Any:
    """The record parsed exactly (integers of any size); ``InvalidEvent`` if any object repeats a key."""
    return json.loads(raw, object_pairs_hook=_unique_pairs)


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
    data = _refuse_duplicate_keys(raw)  # and exact integers: orjson reads those beyond 64 bits as floats
    if not isinstance(data, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(data).__name__}")
    props = data.get("props")
    if props and _too_deep(props):
        raise InvalidEvent(f"nested deeper than {MAX_DEPTH} levels")
    kind = data.get("type")
    if isinstance(kind, str) and kind not in PROPS_BY_TYPE:
        raise InvalidEvent(f"unknown event type {kind[:64]!r}; expected one of: {', '.join(EVENT_TYPES)}")
    ts = data.get("ts")
    if isinstance(ts, str) and ":60" in ts:
        clamped = _leap_second(ts)
        if clamped is not None:
            data["ts"] = clamped
    try:
        envelope = _ENVELOPE.validate_python(data)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc, ts=ts)) from None
    try:
        typed_props = _PROPS_ADAPTERS[envelope.type].validate_python(envelope.props)
    except ValidationError as exc:
        raise InvalidEvent(_describe(exc, "props.")) from None
    except ValueError as exc:
        raise InvalidEvent(f"props: {exc}") from None
    return _checked(
        envelope.event_id, envelope.customer_id, envelope.type, envelope.ts, envelope.channel, envelope.device, typed_props, reference_t, key
    )
