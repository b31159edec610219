"""The stored state format: states written by earlier releases are read (and migrated), newer
ones are refused with a clear error, and encode/decode round-trip.

``tests/fixtures/state_v1/`` holds states encoded by the release that wrote format 1, with their
decoded values as JSON. Never regenerate those files: they are what old workers left in RocksDB
and in the changelog. When a format change renames or adds fields, say here (``as_current``)
what the v1 values mean in the new terms.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from dataclasses import fields
from pathlib import Path
from typing import Any

import msgpack
import pytest

from microseg.segments.dna import Dna
from microseg.segments.state import CustomerState, decode, encode
from microseg.segments.windows import Windows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def plain(value: Any) -> Any:
    """A CustomerState (or any part of one) as JSON-ready values, fields by name."""
    if isinstance(value, CustomerState):
        return {f.name: plain(getattr(value, f.name)) for f in fields(CustomerState)}
    if isinstance(value, Dna):
        return {f.name: plain(getattr(value, f.name)) for f in fields(Dna)}
    if isinstance(value, Windows):
        return {"day": value.day, "totals": plain(value.totals), "rows": {str(day): list(row) for day, row in sorted(value.rows.items())}}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


LEGACY_T = 1.0
"""The instant format 2 gives the "last" values of a format-1 state (1970-01-01T00:00:01Z)."""


def as_current(expected_v1: dict[str, Any]) -> dict[str, Any]:
    """The v1 fixture's values in today's terms. Format 2 keeps the instant of each "last" value:
    v1 values get ``LEGACY_T``, so any later event overrides them; consent becomes signed instants
    (+ granted, - revoked or unsubscribed) and the unsubscribed channels a map to +instant."""
    state = json.loads(json.dumps(expected_v1))
    dna = state["dna"]
    unsubscribed = dna["unsubscribed"]
    consent = {c: (LEGACY_T if granted and c not in unsubscribed else -LEGACY_T) for c, granted in dna["consent"].items()}
    consent.update({c: -LEGACY_T for c in unsubscribed})
    dna["consent"] = consent
    dna["unsubscribed"] = {c: LEGACY_T for c in unsubscribed}
    for name in ("last_channel", "timezone", "preferred_channel"):
        dna[f"{name}_at"] = None if dna[name] is None else LEGACY_T
    dna["attributes_at"] = LEGACY_T if dna["attributes"] else None
    return v2_as_current(state)


def v2_as_current(expected_v2: dict[str, Any]) -> dict[str, Any]:
    """The v2 fixture's values in today's terms: format 3 adds the computed traits' states, none
    for a state stored before traits existed (a trait starts from the next event); format 4 the
    engagement by local hour, none."""
    state = json.loads(json.dumps(expected_v2))
    state["dna"]["traits"] = {}
    state["dna"]["engaged_hours"] = []  # format 4: engagement by local hour, none before
    state["pending"] = {}  # decisions held for a re-decision: appended to format 3, none before
    return state


def _text(value: Any) -> str:
    """Compared as JSON text: 1 and 1.0, or a list and a dict, do not pass for each other."""
    return json.dumps(value, sort_keys=True)


V1 = sorted(p.stem for p in (FIXTURES / "state_v1").glob("*.msgpack"))


def test_the_v1_fixture_is_there() -> None:
    assert V1 == ["erased", "heavy_buyer", "new"]


@pytest.mark.parametrize("name", V1)
def test_a_v1_state_decodes_to_its_recorded_values(name: str) -> None:
    data = (FIXTURES / "state_v1" / f"{name}.msgpack").read_bytes()
    expected = as_current(json.loads((FIXTURES / "state_v1" / f"{name}.json").read_text())["state"])
    found = plain(decode(data))
    assert sorted(found) == sorted(expected)
    assert sorted(found["dna"]) == sorted(expected["dna"]), "DNA fields added or removed: migrate them (segments/state.py) and say so in as_current"
    for field, value in expected["dna"].items():
        assert _text(found["dna"][field]) == _text(value), f"dna.{field}"
    for field, value in expected.items():
        if field != "dna":
            assert _text(found[field]) == _text(value), field


@pytest.mark.parametrize("name", V1)
def test_a_v1_state_round_trips_under_the_current_format(name: str) -> None:
    data = (FIXTURES / "state_v1" / f"{name}.msgpack").read_bytes()
    state = decode(data)
    again = encode(state)
    assert msgpack.unpackb(again)[0] == msgpack.unpackb(encode(CustomerState(Dna())))[0], "written in the current format"
    assert plain(decode(again)) == plain(state)
    assert encode(decode(again)) == again


V2 = sorted(p.stem for p in (FIXTURES / "state_v2").glob("*.msgpack"))


def test_the_v2_fixture_is_there() -> None:
    assert V2 == ["erased", "heavy_buyer", "new"]


@pytest.mark.parametrize("name", V2)
def test_a_v2_state_decodes_to_its_recorded_values(name: str) -> None:
    """Format 2 (the "last" values with their instants), written by the release that introduced it."""
    data = (FIXTURES / "state_v2" / f"{name}.msgpack").read_bytes()
    expected = v2_as_current(json.loads((FIXTURES / "state_v2" / f"{name}.json").read_text())["state"])
    found = plain(decode(data))
    assert sorted(found["dna"]) == sorted(expected["dna"]), "DNA fields added or removed: migrate them (segments/state.py)"
    for field, value in expected["dna"].items():
        assert _text(found["dna"][field]) == _text(value), f"dna.{field}"
    for field, value in expected.items():
        if field != "dna":
            assert _text(found[field]) == _text(value), field


def test_trait_states_round_trip_with_their_bucket_keys() -> None:
    dna = Dna(traits={"views_7d": [123, {20513: 2, 20515: 1}], "plans": [9, {"pro": {0: 2}, "basic": {0: 1}}], "last": [7, {0: [1.5e9, "x"]}]})
    state = CustomerState(dna)
    assert plain(decode(encode(state))) == plain(state)
    assert decode(encode(state)).dna.traits["views_7d"][1] == {20513: 2, 20515: 1}


@pytest.mark.parametrize("name", V2)
def test_a_v2_state_round_trips_under_the_current_format(name: str) -> None:
    state = decode((FIXTURES / "state_v2" / f"{name}.msgpack").read_bytes())
    again = encode(state)
    assert plain(decode(again)) == plain(state)


def test_the_v1_heavy_buyer_migrated_gives_way_to_a_later_event_older_than_its_last_event() -> None:
    """A format-1 value has no instant: it gets 1970-01-01T00:00:01Z, so the next event overrides
    it, even one older than the customer's newest event (what format 1 did)."""
    from microseg.segments.testing import event
    from microseg.segments.view import DnaView

    state = decode((FIXTURES / "state_v1" / "heavy_buyer.msgpack").read_bytes())
    view = DnaView(state.dna, state.dna.last_seen)
    assert (view.consented("email"), view.consented("push"), view.unsubscribed("push"), view.attr("loyalty_tier")) == (True, False, True, "bronze")
    late = "2025-06-01T00:00:00Z"
    dna = fold(state.dna, event("c", "consent_changed", late, props={"channel": "push", "granted": True}))
    dna = fold(dna, event("c", "profile_updated", late, timezone="Asia/Tokyo", attributes={"loyalty_tier": "gold"}))
    view = DnaView(dna, dna.last_seen)
    assert (view.consented("push"), view.unsubscribed("push"), dna.timezone, view.attr("loyalty_tier"), view.attr("country")) == (
        True, False, "Asia/Tokyo", "gold", "GB",
    )


# -- the format rules ------------------------------------------------------------------------


def test_the_layout_names_every_dna_field() -> None:
    from microseg.segments.state import DNA_LAYOUT

    assert sorted(DNA_LAYOUT) == sorted(f.name for f in fields(Dna)), (
        "Dna's fields changed: stored states keep the old positions. Bump FORMAT in segments/state.py, "
        "set DNA_LAYOUT to the new fields and add MIGRATIONS[old] that rewrites an old DNA list into the new one"
    )


def _raw(state: CustomerState) -> list[Any]:
    return msgpack.unpackb(encode(state), raw=False, strict_map_key=False)


def test_a_state_from_a_newer_microseg_is_refused_naming_both_formats() -> None:
    from microseg.segments.state import FORMAT, StateFormatError

    raw = _raw(CustomerState(Dna()))
    raw[0] = FORMAT + 1
    with pytest.raises(StateFormatError) as caught:
        decode(msgpack.packb(raw, use_bin_type=True))
    message = str(caught.value)
    assert f"format {FORMAT + 1}" in message and "newer microseg" in message and f"up to {FORMAT}" in message


@pytest.mark.parametrize(
    "data",
    [b"\xc1", msgpack.packb({"a": 1}), msgpack.packb([]), msgpack.packb(["1", []]), msgpack.packb([0, []]), msgpack.packb([1, [1, 2]])],
    ids=["not-msgpack", "a-map", "empty", "text-format", "format-0", "short-dna"],
)
def test_what_is_not_a_state_fails_with_a_state_format_error(data: bytes) -> None:
    from microseg.segments.state import StateFormatError

    with pytest.raises(StateFormatError):
        decode(data)


def test_migrations_run_one_version_at_a_time_up_to_the_current_format() -> None:
    from microseg.segments.state import StateFormatError, upgrade

    seen: list[int] = []

    def to_2(raw: list[Any]) -> list[Any]:
        seen.append(raw[0])
        return [2, *raw[1:], "added in 2"]

    def to_3(raw: list[Any]) -> list[Any]:
        seen.append(raw[0])
        return [3, *raw[1:-1], raw[-1].upper()]

    table = {1: to_2, 2: to_3}
    assert upgrade([1, "x"], table, current=3) == [3, "x", "ADDED IN 2"]
    assert seen == [1, 2]
    assert upgrade([2, "x", "y"], table, current=3) == [3, "x", "Y"]
    assert upgrade([3, "x"], table, current=3) == [3, "x"]
    with pytest.raises(StateFormatError, match="cannot migrate from 1"):
        upgrade([1, "x"], {2: to_3}, current=3)
    with pytest.raises(StateFormatError, match="gave format 3, not 2"):
        upgrade([1, "x"], {1: lambda raw: [3, *raw[1:]]}, current=3)
    with pytest.raises(StateFormatError, match="format 4, written by a newer microseg; this microseg reads formats up to 3"):
        upgrade([4, "x"], table, current=3)


def test_a_v1_state_from_before_erasure_and_held_decisions_reads_with_their_defaults() -> None:
    data = (FIXTURES / "state_v1" / "heavy_buyer.msgpack").read_bytes()
    raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
    assert raw[0] == 1 and len(raw) == 12
    full = plain(decode(data))
    for kept in (10, 11):
        state = plain(decode(msgpack.packb(raw[:kept], use_bin_type=True)))
        assert state["erased"] is False
        assert state["held"] == (full["held"] if kept > 11 else [])
        assert {k: v for k, v in state.items() if k not in ("erased", "held")} == {k: v for k, v in full.items() if k not in ("erased", "held")}


# -- round trip over generated states ----------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import orjson  # noqa: E402

from microseg.schemas.events import decode_event  # noqa: E402
from microseg.segments.dna import fold, is_duplicate  # noqa: E402

_T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
_CHANNELS = st.sampled_from(["web", "app", "email", "sms", "push"])
_CATEGORIES = st.sampled_from(["books", "toys", "beauty", "garden"])


@st.composite
def _event(draw: st.DrawFn, i: int) -> Any:
    kind = draw(st.sampled_from([
        "account_created", "session_started", "page_view", "product_viewed", "cart_updated", "checkout_started",
        "purchase", "refund", "campaign_delivered", "campaign_opened", "campaign_unsubscribed", "survey_answered",
        "support_contact", "review_posted", "referral_made", "consent_changed", "profile_updated",
    ]))
    money = float(draw(st.integers(0, 100_000))) / 100
    props: dict[str, Any] = {
        "page_view": {"page": "/p", "category": draw(_CATEGORIES)},
        "product_viewed": {"product_id": "p1", "category": draw(_CATEGORIES), "price": money},
        "cart_updated": {"product_id": "p1", "category": draw(_CATEGORIES), "quantity": draw(st.integers(0, 5)), "cart_value": money},
        "checkout_started": {"cart_value": money},
        "purchase": {"order_id": f"o{i}", "amount": money},
        "refund": {"order_id": f"o{i - 1}", "amount": money},
        "campaign_delivered": {"message_id": f"m{i}"},
        "campaign_opened": {"message_id": f"m{i - 1}"},
        "campaign_unsubscribed": {"message_id": f"m{i - 1}"},
        "survey_answered": {"kind": "nps", "score": draw(st.integers(0, 10))},
        "support_contact": {"status": draw(st.sampled_from(["opened", "resolved"]))},
        "review_posted": {"rating": draw(st.integers(1, 5))},
        "consent_changed": {"channel": draw(_CHANNELS), "granted": draw(st.booleans())},
        "profile_updated": {"timezone": "Europe/Paris", "attributes": {"tier": draw(st.sampled_from(["a", "b", 3, 1.5, True, None]))}},
    }.get(kind, {})
    t = _T0 + draw(st.integers(0, 120 * 86_400))
    ts = f"{datetime.fromtimestamp(t, timezone.utc).isoformat()[:19]}Z"
    record = {"event_id": f"e{i}", "customer_id": "c", "type": kind, "ts": ts, "channel": draw(_CHANNELS), "props": props}
    return decode_event(orjson.dumps(record), reference_t=_T0 + 400 * 86_400)


@st.composite
def _states(draw: st.DrawFn) -> CustomerState:
    dna = Dna()
    for i in range(draw(st.integers(0, 30))):
        ev = draw(_event(i))
        if not is_duplicate(dna, ev):
            dna = fold(dna, ev)
    instant = st.floats(_T0, _T0 + 200 * 86_400, allow_nan=False)
    names = st.text("abcdefghij_", min_size=1, max_size=12)
    return CustomerState(
        dna,
        tuple(draw(st.lists(names, max_size=6, unique=True))),
        draw(st.none() | st.text(max_size=30)),
        draw(st.text("0123456789abcdef", max_size=12)),
        draw(instant),
        draw(st.none() | instant),
        [[t, m] for t, m in draw(st.lists(st.tuples(instant, names), max_size=5))],
        draw(st.dictionaries(names, instant, max_size=4)),
        draw(st.integers(-1, 2**62)),
        draw(st.booleans()),
        [[t, m, r] for t, m, r in draw(st.lists(st.tuples(instant, names, names), max_size=5))],
    )


@settings(max_examples=200, deadline=None)
@given(_states())
def test_encode_then_decode_gives_the_same_state(state: CustomerState) -> None:
    data = encode(state)
    again = decode(data)
    assert plain(again) == plain(state)
    assert encode(again) == data
