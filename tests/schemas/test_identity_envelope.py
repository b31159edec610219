"""The identity envelope (CONTRACT §8): anonymous_id, customer_id optional with it, the identify type,
profile keys that cannot collide, the message key rule."""

from __future__ import annotations

import orjson
import pytest

from microseg.schemas.events import ANONYMOUS_KEY, EVENT_TYPES, InvalidEvent, anonymous_of, decode_event, profile_key
from microseg.schemas.outputs import SegmentChange
from microseg.segments.event_types import EVENTS, NOT_ACTIVITY


def _raw(**fields: object) -> bytes:
    base: dict[str, object] = {"event_id": "e1", "type": "page_view", "ts": "2026-01-01T00:00:00Z", "props": {"page": "/"}}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


def test_an_anonymous_event_counts_for_the_anonymous_profile() -> None:
    event = decode_event(_raw(anonymous_id="a-1"), key=b"a-1")
    assert event.customer_id == ANONYMOUS_KEY + "a-1" and event.anonymous_id == "a-1"
    assert anonymous_of(event.customer_id) == "a-1"


def test_a_customer_x_and_an_anonymous_x_never_share_a_profile_key() -> None:
    customer = decode_event(_raw(customer_id="x"))
    anonymous = decode_event(_raw(anonymous_id="x"))
    assert customer.customer_id == "x" != anonymous.customer_id
    assert anonymous_of(customer.customer_id) is None and anonymous_of(anonymous.customer_id) == "x"
    assert profile_key("x", None) == "x" and profile_key(None, "x") == anonymous.customer_id


def test_with_both_ids_the_event_counts_for_the_customer_and_the_key_is_the_customer_id() -> None:
    event = decode_event(_raw(customer_id="c-1", anonymous_id="a-1"), key=b"c-1")
    assert event.customer_id == "c-1" and event.anonymous_id == "a-1"
    with pytest.raises(InvalidEvent, match="does not match customer_id"):
        decode_event(_raw(customer_id="c-1", anonymous_id="a-1"), key=b"a-1")


def test_the_key_of_an_anonymous_event_is_its_anonymous_id() -> None:
    with pytest.raises(InvalidEvent, match="does not match anonymous_id 'a-1'"):
        decode_event(_raw(anonymous_id="a-1"), key=b"c-1")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "customer_id or anonymous_id is required"),
        ({"customer_id": "c", "type": "identify", "props": {}}, "identify needs both customer_id and anonymous_id"),
        ({"anonymous_id": "a", "type": "identify", "props": {}}, "identify needs both customer_id and anonymous_id"),
        ({"customer_id": "\u0001x"}, "customer_id '\\x01x' begins with a control character"),
        ({"customer_id": "\u0000erased:x"}, "begins with a control character"),
        ({"anonymous_id": "\u0001a"}, "anonymous_id '\\x01a' begins with a control character"),
        ({"anonymous_id": ""}, "anonymous_id"),
        ({"anonymous_id": "a" * 129}, "anonymous_id"),
    ],
)
def test_bad_ids_are_refused_with_a_reason(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(_raw(**fields))
    assert reason in str(info.value)


def test_identify_is_a_built_in_type_declared_once_and_not_activity() -> None:
    assert EVENT_TYPES.count("identify") == 1 and "identify" in EVENTS and "identify" in NOT_ACTIVITY
    event = decode_event(_raw(customer_id="c-1", anonymous_id="a-1", type="identify", props={}), key=b"c-1")
    assert (event.type, event.customer_id, event.anonymous_id) == ("identify", "c-1", "a-1")


def test_an_anonymous_profile_s_record_validates_with_customer_id_null() -> None:
    record = {"change_id": "x", "customer_id": None, "anonymous_id": "a-1", "segment": "s", "change": "entered",
              "at": "2026-01-01T00:00:00Z", "cause": "e1", "rules_version": "v"}
    assert SegmentChange.model_validate(record).anonymous_id == "a-1"
