"""Every class of bad input becomes a readable dead-letter reason; good events decode exactly."""

from __future__ import annotations

import orjson
import pytest

from microseg.schemas.events import EVENT_TYPES, InvalidEvent, decode_event
from microseg.segments.testing import event_bytes, parse_ts

GOOD = {
    "event_id": "e-1",
    "customer_id": "c-1",
    "type": "purchase",
    "ts": "2026-01-01T10:00:00+01:00",
    "channel": "web",
    "props": {"order_id": "o-1", "amount": 25.5, "items": [{"product_id": "p", "category": "books", "quantity": 1, "price": 25.5}]},
}


def _with(**changes: object) -> bytes:
    record = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in record.items() if v is not ...})


def _props(**props: object) -> bytes:
    return _with(props={**GOOD["props"], **props})


def test_good_event_decodes_with_utc_time() -> None:
    event = decode_event(_with())
    assert event.t == parse_ts("2026-01-01T09:00:00Z")
    assert event.props.amount == 25.5
    assert event.props.items[0].category == "books"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b'"a string"', "expected a JSON object"),
        (b"[1, 2]", "expected a JSON object"),
        (_with(type="teleported"), "unknown event type 'teleported'"),
        (_with(type=7), "type"),
        (_with(event_id=...), "event_id: Field required"),
        (_with(customer_id=""), "customer_id"),
        (_with(customer_id="x" * 129), "customer_id"),
        (_with(ts="2026-01-01T10:00:00"), "no UTC offset"),
        (_with(ts="yesterday"), "ts"),
        (_with(ts="3026-01-01T10:00:00Z"), "outside 1990..2100"),
        (_with(surprise=1), "surprise: Extra inputs are not permitted"),
        (_props(amount=-1), "props.amount"),
        (_props(amount="12"), "props.amount: Input should be a valid number"),
        (_with(type="consent_changed", props={"channel": "email", "granted": "yes"}), "props.granted"),
        (_props(order_id=None), "props.order_id"),
        (_with(type="survey_answered", props={"kind": "nps", "score": 11}), "nps score must be 0..10"),
        (_with(type="survey_answered", props={"kind": "ces", "score": 0}), "ces score must be 1..7"),
        (_with(type="survey_answered", props={"kind": "mood", "score": 3}), "props.kind"),
        (_with(type="review_posted", props={"rating": 6}), "props.rating"),
        (_with(type="profile_updated", props={"timezone": "Mars/Olympus"}), "unknown time zone"),
        (_with(props={"order_id": "o", "amount": 1, "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}), "nested deeper"),
        (b'{"event_id":"e","customer_id":"c","type":"refund","ts":"2026-01-01T00:00:00Z","props":{"order_id":"o","amount":NaN}}', "not valid JSON"),
        (b'{"event_id":"e","customer_id":"c","type":"refund","ts":"2026-01-01T00:00:00Z","props":{"order_id":"o","amount":1e400}}', "infinity"),
        (b"x" * 70_000, "the limit is"),
    ],
)
def test_bad_input_is_refused_with_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(raw)
    assert reason in str(info.value)


def test_future_bound_is_relative_to_the_processing_clock() -> None:
    newest = parse_ts("2026-01-01T00:00:00Z")
    ok = event_bytes("c", "session_started", "2026-01-01T23:00:00Z")
    late = event_bytes("c", "session_started", "2026-01-02T00:00:01Z")
    assert decode_event(ok, reference_t=newest).type == "session_started"
    with pytest.raises(InvalidEvent, match="more than 1 day in the future"):
        decode_event(late, reference_t=newest)


def test_key_must_match_customer() -> None:
    raw = event_bytes("c-1", "session_started", "2026-01-01T00:00:00Z")
    assert decode_event(raw, key=b"c-1").customer_id == "c-1"
    with pytest.raises(InvalidEvent, match="does not match customer_id"):
        decode_event(raw, key=b"c-2")


def test_every_contract_type_is_known() -> None:
    assert len(EVENT_TYPES) == 21
    assert decode_event(event_bytes("c", "erasure_requested", "2026-01-01T00:00:00Z")).type == "erasure_requested"


def test_unknown_props_keys_are_ignored() -> None:
    raw = event_bytes("c", "session_started", "2026-01-01T00:00:00Z", utm_source="news")
    assert decode_event(raw).type == "session_started"


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 18446744073709551616, 10**40])
def test_an_attribute_integer_the_state_cannot_hold_is_refused_naming_it(value: int) -> None:
    raw = event_bytes("c", "profile_updated", "2026-01-01T00:00:00Z", attributes={"loyalty_id": 0}).replace(b'"loyalty_id":0', f'"loyalty_id":{value}'.encode())
    with pytest.raises(InvalidEvent, match=r"attributes\.loyalty_id: integer .* does not fit in 64 bits"):
        decode_event(raw)


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), 0, 1.5, "x" * 256, True])
def test_attribute_values_the_state_can_hold_pass_unchanged(value: object) -> None:
    raw = event_bytes("c", "profile_updated", "2026-01-01T00:00:00Z", attributes={"a": value})
    assert decode_event(raw).props.attributes == {"a": value}  # type: ignore[union-attr]


# -- timestamps: every refusal names its problem (issue 12), a leap second is clamped ---------


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        ("2026-03-01T10:00:00", "has no UTC offset; end it with 'Z' (UTC) or an offset such as '+01:00'"),
        ("2026-03-01 10:00:00", "has no UTC offset"),
        ("2026-03-01", "is a date without a time of day"),
        ("2026-13-01T10:00:00Z", "month 13 is not 01..12"),
        ("2026-00-01T10:00:00Z", "month 00 is not 01..12"),
        ("2026-02-29T10:00:00Z", "day 29 does not exist: 2026-02 has 28 days"),
        ("2026-04-31T10:00:00Z", "day 31 does not exist: 2026-04 has 30 days"),
        ("2026-3-1T10:00:00Z", "month and day must have 2 digits each"),
        ("99999-03-01T10:00:00Z", "year 99999 must have 4 digits"),
        ("0000-01-01T00:00:00Z", "year 0000 is outside 1990..2100"),
        ("1980-03-01T10:00:00Z", "is outside 1990..2100"),
        ("2100-01-01T00:00:00Z", "is outside 1990..2100"),
        ("2026-03-01T25:00:00Z", "hour 25 is not 00..23"),
        ("2026-03-01T24:00:00Z", "hour 24 is not 00..23; the end of a day is 00:00:00 of the next"),
        ("2026-03-01T10:61:00Z", "minute 61 is not 00..59"),
        ("2026-03-01T10:00:61Z", "second 61 is not 00..59"),
        ("2026-03-01T12:30:60Z", "second 60 (a leap second) is accepted only in the last minute of a UTC day"),
        ("2026-12-31T23:59:60+01:00", "second 60 (a leap second) is accepted only in the last minute of a UTC day"),
        ("2026-03-01T10:00:00.Z", "has a '.' with no digits after it"),
        ("2026-03-01T10:00:00+25:00", "UTC offset +25:00 is out of range"),
        ("2026-03-01T10:00:00+01:60", "UTC offset +01:60 is out of range"),
        ("2026-03-01T10:00:00+00", "UTC offset '+00' must be ±hh:mm"),
        ("2026-03-01T10:00:00 UTC", "expected the UTC offset ('Z' or ±hh:mm) after the time, found ' UTC'"),
        ("2026-03-01T10:00:00ZZ", "unexpected text 'Z' after the UTC offset"),
        ("2026-03-01T10:00:00+01:00:00", "unexpected text ':00' after the UTC offset"),
        ("2026-03-01T10:00:00Z ", "has spaces before or after it"),
        ("2026-03-01X10:00:00Z", "expected 'T' between the date and the time, found 'X'"),
        ("2026-03-01T10h00Z", "the time of day must be hh:mm:ss"),
        ("yesterday", "does not start with a date YYYY-MM-DD"),
        ("", "is empty"),
    ],
)
def test_a_refused_ts_names_its_problem(ts: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_event(_with(ts=ts))
    message = str(info.value)
    assert message.startswith("ts"), message
    assert reason in message, message
    assert "unexpected extra characters" not in message and "Input should be" not in message, message


@pytest.mark.parametrize(
    ("ts", "utc"),
    [
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999Z"),
        ("2016-12-31T23:59:60.5Z", "2016-12-31T23:59:59.999999Z"),
        ("2017-01-01T00:59:60+01:00", "2016-12-31T23:59:59.999999Z"),
        ("2016-12-31T18:59:60-05:00", "2016-12-31T23:59:59.999999Z"),
        ("2026-06-30 23:59:60z", "2026-06-30T23:59:59.999999Z"),
    ],
)
def test_a_leap_second_is_clamped_to_the_last_microsecond_of_its_utc_day(ts: str, utc: str) -> None:
    assert decode_event(_with(ts=ts)).t == parse_ts(utc)
    assert decode_event(_with(ts=ts)).t < parse_ts(utc.replace("23:59:59.999999", "00:00:00")) + 86_400


@pytest.mark.parametrize(
    ("ts", "utc"),
    [
        ("2026-03-01t10:00:00z", "2026-03-01T10:00:00Z"),
        ("2026-03-01 10:00:00Z", "2026-03-01T10:00:00Z"),
        ("2026-03-01T10:00:00.123456789Z", "2026-03-01T10:00:00.123456Z"),
        ("2026-03-01T10:00:00." + "9" * 40 + "Z", "2026-03-01T10:00:00.999999Z"),
        ("2026-03-01T10:00:00-00:00", "2026-03-01T10:00:00Z"),
        ("2024-02-29T10:00:00+05:30", "2024-02-29T04:30:00Z"),
    ],
)
def test_rfc_3339_variants_are_accepted_and_long_fractions_cut_to_microseconds(ts: str, utc: str) -> None:
    assert decode_event(_with(ts=ts)).t == parse_ts(utc)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id":"e","customer_id":"c","type":"refund","ts":"2026-01-01T00:00:00Z","props":{"order_id":"o","amount":-5,"amount":150}}',
        b'{"event_id":"e","customer_id":"c","type":"refund","ts":"2026-01-01T00:00:00Z","props":{"order_id":"o","amount":5,"amount":150}}',
        b'{"event_id":"e","customer_id":"c","customer_id":"d","type":"session_started","ts":"2026-01-01T00:00:00Z"}',
        b'{"event_id":"e","customer_id":"c","type":"profile_updated","ts":"2026-01-01T00:00:00Z","props":{"attributes":{"a":1,"a":2}}}',
        b'{"event_id":"e","customer_id":"c","type":"purchase","ts":"2026-01-01T00:00:00Z","props":{"order_id":"o","amount":5,'
        b'"items":[{"product_id":"p","category":"x","quantity":1,"quantity":9,"price":5}]}}',
        b'{"event_id" : "e", "customer_id" : "c", "customer_id" : "d", "type" : "session_started", "ts" : "2026-01-01T00:00:00Z"}',
        b'{"event_id":"e","customer_id":"c","type":"session_started","ts":"2026-01-01T00:00:00Z","props":{"utm":"a","utm":"b"}}',
    ],
)
def test_a_record_with_a_repeated_key_is_refused_as_ambiguous(raw: bytes) -> None:
    with pytest.raises(InvalidEvent, match="duplicate key .*ambiguous"):
        decode_event(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"event_id" : "e", "customer_id" : "c", "type" : "session_started", "ts" : "2026-01-01T00:00:00Z"}',
        b'{"event_id":"e","customer_id":"c","type":"page_view","ts":"2026-01-01T00:00:00Z","props":{"page":"/a\\":b","utm":"x"}}',
    ],
)
def test_spaced_colons_quotes_in_values_and_unknown_keys_are_not_duplicates(raw: bytes) -> None:
    assert decode_event(raw).customer_id == "c"


def test_every_simulated_event_decodes_and_refuses_any_of_its_keys_repeated() -> None:
    """Real shapes: every key of every object in 300 simulated events, repeated once, is refused."""
    import random
    import re
    from datetime import datetime, timezone

    from microseg.engine.tools.simulator import simulate_lines

    rng = random.Random(5)
    lines = [line.rstrip(b"\n") for line in simulate_lines(30, 20, 5, datetime(2026, 1, 1, tzinfo=timezone.utc))][:300]
    assert lines
    for line in lines:
        assert decode_event(line).event_id
        keys = [m.start() for m in re.finditer(rb'"[a-z_]+":', line)]
        at = rng.choice(keys)
        end = line.index(b":", at) + 1
        value_end = at
        depth = 0
        for i in range(end, len(line)):  # the end of this key's value: the next ',' or '}' at depth 0
            c = line[i : i + 1]
            if c in (b"{", b"["):
                depth += 1
            elif c in (b"}", b"]"):
                if depth == 0:
                    value_end = i
                    break
                depth -= 1
            elif c == b"," and depth == 0:
                value_end = i
                break
        pair = line[at:value_end]
        doubled = line[:value_end] + b"," + pair + line[value_end:]
        with pytest.raises(InvalidEvent, match="duplicate key"):
            decode_event(doubled)
