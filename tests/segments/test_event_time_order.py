"""The "last" values of a customer (consent, unsubscribed, timezone, attributes, declared preferred
channel, last channel) are the newest by event time, whatever order the events are processed in.

Issue 12: consent was decided by the newest event *processed*, so a late, older event overrode a
newer choice. At the same event time the value is decided by the value itself (docs/dna.md): a
revocation or an unsubscribe beats a grant, otherwise the smaller ``tie_key`` (null, false, true,
numbers, text alphabetically).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from microseg.schemas.events import Event, decode_event
from microseg.segments.dna import Dna, fold
from microseg.segments.dna_record import LEGACY_T, MAX_ATTRIBUTES, tie_key
from microseg.segments.testing import event
from microseg.segments.view import DnaView

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
CHANNELS = ["web", "app", "email", "sms"]
ZONES = ["Europe/Paris", "Asia/Tokyo", "America/New_York", "UTC"]
ATTRIBUTE_VALUES = ["gold", "silver", "", 3, 0, -1, 2.5, 0.0, -0.0, 3.0, True, False, None]


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


@st.composite
def _events(draw: st.DrawFn) -> list[Event]:
    """A set of events of one customer with distinct ids; event times from a few instants (many
    ties, sub-second ones too) or anywhere in a month."""
    instants = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 60.0, 86_400.0]) | st.integers(0, 30 * 86_400).map(float), min_size=1, max_size=4))
    out = []
    for i in range(draw(st.integers(1, 24))):
        t = T0 + draw(st.sampled_from(instants))
        kind = draw(st.sampled_from(["consent_changed", "campaign_unsubscribed", "profile_updated", "session_started", "page_view", "campaign_delivered"]))
        channel = draw(st.none() | st.sampled_from(CHANNELS))
        props: dict[str, Any] = {}
        if kind == "consent_changed":
            props = {"channel": draw(st.sampled_from(CHANNELS)), "granted": draw(st.booleans())}
        elif kind in ("campaign_unsubscribed", "campaign_delivered"):
            props = {"message_id": f"m{i}"}
        elif kind == "page_view":
            props = {"page": "/"}
        elif kind == "profile_updated":
            if draw(st.booleans()):
                props["timezone"] = draw(st.sampled_from(ZONES))
            if draw(st.booleans()):
                props["preferred_channel"] = draw(st.sampled_from(CHANNELS))
            props["attributes"] = draw(st.dictionaries(st.sampled_from(["tier", "band", "country", "vip"]), st.sampled_from(ATTRIBUTE_VALUES), max_size=4))
        record = {"event_id": f"e{i}", "customer_id": "c", "type": kind, "ts": _ts(t), "props": props}
        if channel is not None:
            record["channel"] = channel
        out.append(decode_event(orjson.dumps(record)))
    return out


def _fold_all(events: list[Event]) -> Dna:
    dna: Dna | None = None
    for e in events:
        dna = fold(dna, e)
    assert dna is not None
    return dna


def _last_values(dna: Dna) -> dict[str, Any]:
    view = DnaView(dna, dna.last_seen)
    return {
        "consented": {c: view.consented(c) for c in [*CHANNELS, "unknown"]},
        "unsubscribed": {c: view.unsubscribed(c) for c in [*CHANNELS, "unknown"]},
        "timezone": dna.timezone,
        "declared": dna.preferred_channel,
        "preferred_channel": view["preferred_channel"],
        "last_channel": view["last_channel"],
        "attributes": {name: (view.attr(name), repr(view.attr(name))) for name in ["tier", "band", "country", "vip"]},
    }


def _newest(candidates: list[tuple[float, Any]]) -> Any:
    """The documented rule, written independently of the fold: the newest event time wins; at
    the same time, the smallest ``tie_key``."""
    if not candidates:
        return None
    return min(candidates, key=lambda c: (-c[0], tie_key(c[1])))[1]


def _expected(events: list[Event]) -> dict[str, Any]:
    consent: dict[str, list[tuple[float, int]]] = {}
    for e in events:
        if e.type == "consent_changed":
            consent.setdefault(e.props.channel, []).append((e.t, 0 if e.props.granted else 1))
        elif e.type == "campaign_unsubscribed":
            consent.setdefault(e.channel or "unknown", []).append((e.t, 2))
    consented, unsubscribed = {}, {}
    for c in [*CHANNELS, "unknown"]:
        decisions = consent.get(c, [])
        newest = max(decisions, default=None)  # (t, kind): at a tie the most restrictive kind
        consented[c] = newest is not None and newest[1] == 0
        grant_or_unsub = max((d for d in decisions if d[1] != 1), default=None)
        unsubscribed[c] = grant_or_unsub is not None and grant_or_unsub[1] == 2
    profile = [e for e in events if e.type == "profile_updated"]
    activity = [e for e in events if e.type != "campaign_delivered" and e.channel is not None]
    attributes = {}
    for name in ["tier", "band", "country", "vip"]:
        value = _newest([(e.t, e.props.attributes[name]) for e in profile if e.props.attributes and name in e.props.attributes])
        attributes[name] = (value, repr(value))
    declared = _newest([(e.t, e.props.preferred_channel) for e in profile if e.props.preferred_channel is not None])
    uses: dict[str, int] = {}
    for e in activity:
        uses[e.channel] = uses.get(e.channel, 0) + 1
    most_used = min(uses, key=lambda c: (-uses[c], c)) if uses else None
    return {
        "consented": consented,
        "unsubscribed": unsubscribed,
        "timezone": _newest([(e.t, e.props.timezone) for e in profile if e.props.timezone is not None]),
        "declared": declared,
        "preferred_channel": declared if declared is not None else most_used,
        "last_channel": _newest([(e.t, e.channel) for e in activity]),
        "attributes": attributes,
    }


@settings(max_examples=300, deadline=None)
@given(_events(), st.randoms(use_true_random=False))
def test_any_delivery_order_gives_the_values_of_the_events_sorted_by_event_time(events: list[Event], rnd: Any) -> None:
    in_time_order = sorted(events, key=lambda e: e.t)
    shuffled = list(events)
    rnd.shuffle(shuffled)
    expected = _expected(events)
    assert _last_values(_fold_all(in_time_order)) == expected
    assert _last_values(_fold_all(shuffled)) == expected
    assert _last_values(_fold_all(list(reversed(in_time_order)))) == expected


# -- the cases of the issue, one by one ---------------------------------------------------------


def _fold_lines(*events: Event) -> Dna:
    return _fold_all(list(events))


def test_a_late_older_grant_does_not_override_a_newer_revocation() -> None:
    revoke = event("c", "consent_changed", "2026-03-02T10:00:00Z", channel="web", props={"channel": "email", "granted": False})
    late_grant = event("c", "consent_changed", "2026-03-01T10:00:00Z", channel="web", props={"channel": "email", "granted": True})
    assert not DnaView(_fold_lines(revoke, late_grant), 0).consented("email")
    assert DnaView(_fold_lines(late_grant, revoke), 0).consented("email") is False
    newer_grant = event("c", "consent_changed", "2026-03-03T10:00:00Z", props={"channel": "email", "granted": True})
    assert DnaView(_fold_lines(revoke, late_grant, newer_grant), 0).consented("email")


def test_a_late_older_unsubscribe_does_not_undo_a_newer_grant_and_a_late_grant_does_not_undo_a_newer_unsubscribe() -> None:
    grant = event("c", "consent_changed", "2026-03-02T10:00:00Z", props={"channel": "email", "granted": True})
    unsub = event("c", "campaign_unsubscribed", "2026-03-01T10:00:00Z", channel="email", message_id="m1")
    view = DnaView(_fold_lines(grant, unsub), 0)
    assert view.consented("email") and not view.unsubscribed("email")
    late_unsub = event("c", "campaign_unsubscribed", "2026-03-03T10:00:00Z", channel="email", message_id="m2")
    view = DnaView(_fold_lines(late_unsub, grant), 0)
    assert not view.consented("email") and view.unsubscribed("email")


def test_a_revocation_after_an_unsubscribe_keeps_the_customer_unsubscribed_until_a_newer_grant() -> None:
    unsub = event("c", "campaign_unsubscribed", "2026-03-01T10:00:00Z", channel="email", message_id="m1")
    revoke = event("c", "consent_changed", "2026-03-03T10:00:00Z", props={"channel": "email", "granted": False})
    older_grant = event("c", "consent_changed", "2026-02-20T10:00:00Z", props={"channel": "email", "granted": True})
    between_grant = event("c", "consent_changed", "2026-03-02T10:00:00Z", props={"channel": "email", "granted": True})
    view = DnaView(_fold_lines(revoke, unsub, older_grant), 0)
    assert not view.consented("email") and view.unsubscribed("email")
    view = DnaView(_fold_lines(revoke, unsub, between_grant), 0)
    assert not view.consented("email") and not view.unsubscribed("email")


def test_at_the_same_event_time_a_revocation_beats_a_grant_in_either_order() -> None:
    grant = event("c", "consent_changed", "2026-03-01T10:00:00Z", props={"channel": "email", "granted": True})
    revoke = event("c", "consent_changed", "2026-03-01T10:00:00Z", props={"channel": "email", "granted": False})
    assert not DnaView(_fold_lines(grant, revoke), 0).consented("email")
    assert not DnaView(_fold_lines(revoke, grant), 0).consented("email")


def test_timezone_preferred_channel_and_attributes_keep_the_newest_by_event_time() -> None:
    new = event("c", "profile_updated", "2026-03-02T10:00:00Z", timezone="Asia/Tokyo", preferred_channel="sms", attributes={"tier": "gold"})
    old = event(
        "c", "profile_updated", "2026-03-01T10:00:00Z", timezone="Europe/Paris", preferred_channel="email",
        attributes={"tier": "bronze", "band": "25-34"},
    )
    dna = _fold_lines(new, old)
    view = DnaView(dna, 0)
    assert (dna.timezone, dna.preferred_channel, view.attr("tier"), view.attr("band")) == ("Asia/Tokyo", "sms", "gold", "25-34")
    assert dna.attributes == {"tier": "gold", "band": ["25-34", old.t]}, "one instant for the newest event's attributes, an own one for older ones"
    assert dna.attributes_at == new.t


def test_a_late_activity_event_sets_the_last_channel_only_if_newer_than_the_last_channel_event() -> None:
    app = event("c", "session_started", "2026-03-01T10:00:00Z", channel="app")
    no_channel = event("c", "session_started", "2026-03-01T12:00:00Z")
    late_web = event("c", "page_view", "2026-03-01T11:00:00Z", channel="web", page="/")
    older_email = event("c", "page_view", "2026-03-01T09:00:00Z", channel="email", page="/")
    assert _fold_lines(app, no_channel, late_web).last_channel == "web"
    assert _fold_lines(app, no_channel, late_web, older_email).last_channel == "web"


def test_a_state_migrated_from_format_1_gives_way_to_any_later_event() -> None:
    dna = Dna(
        first_seen=T0, last_seen=T0 + 86_400, consent={"email": LEGACY_T, "sms": -LEGACY_T}, unsubscribed={"sms": LEGACY_T},
        timezone="Europe/Paris", timezone_at=LEGACY_T, last_channel="app", last_channel_at=LEGACY_T,
        attributes={"tier": "gold"}, attributes_at=LEGACY_T,
    )
    early = "2000-01-01T00:00:00Z"
    dna = fold(dna, event("c", "consent_changed", early, props={"channel": "email", "granted": False}))
    dna = fold(dna, event("c", "consent_changed", early, props={"channel": "sms", "granted": True}))
    dna = fold(dna, event("c", "profile_updated", early, timezone="UTC", attributes={"tier": "silver"}))
    dna = fold(dna, event("c", "page_view", early, channel="web", page="/"))
    view = DnaView(dna, 0)
    assert (view.consented("email"), view.consented("sms"), view.unsubscribed("sms")) == (False, True, False)
    assert (dna.timezone, view.attr("tier"), dna.last_channel) == ("UTC", "silver", "web")


def test_attributes_stay_bounded_keeping_the_newest() -> None:
    dna: Dna | None = None
    for i in range(MAX_ATTRIBUTES + 8):
        dna = fold(dna, event("c", "profile_updated", _ts(T0 + 1000 - i), attributes={f"a{i:02d}": i}))
    assert dna is not None and len(dna.attributes) == MAX_ATTRIBUTES
    assert sorted(dna.attributes) == [f"a{i:02d}" for i in range(MAX_ATTRIBUTES)], "the oldest (latest delivered) were dropped"
