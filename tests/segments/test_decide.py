"""Next-best-message gates at their boundaries (``segments.decide``), through the record pipeline
with an explicit processing clock: validity and ``stale``, channels and consent, caps per channel
and ``on_cap: defer`` released by a wake-up, cooldown expiry, consent granted later, holdouts."""

from __future__ import annotations

import math

import pytest

from microseg.schemas.outputs import NextBestMessage, SuppressedDecision
from microseg.segments.testing import Journey, parse_ts
from microseg.segments.view import iso

T = "2026-03-02T10:00:00Z"
T0 = parse_ts(T)
HOUR = 3600.0
DAY = 86_400.0


def _rules(messages: str, policy: str = "") -> str:
    return f"""
version: 1
segments:
  - {{id: one_order, when: purchases_total >= 1}}
  - {{id: two_orders, when: purchases_total >= 2}}
  - {{id: three_orders, when: purchases_total >= 3}}
messages:
{messages}
{policy}
"""


def _message(mid: str, segment: str, *, channel: str = "email", priority: int = 1, extra: str = "") -> str:
    return f"""  - id: {mid}
    segments: [{segment}]
    channel: {channel}
    priority: {priority}
    cooldown: 7d
{extra}"""


def _grant(j: Journey, customer: str, channel: str, ts: str = "2026-03-01T00:00:00Z", granted: bool = True) -> None:
    j.send(customer, "consent_changed", ts, props={"channel": channel, "granted": granted})


def _buy(j: Journey, customer: str, ts: str, n: int = 1) -> None:
    j.send(customer, "purchase", ts, order_id=f"{customer}-{ts}-{n}", amount=20.0)


def test_validity_edge_and_send_at_never_before_the_processing_clock() -> None:
    rules = _rules(_message("thanks", "one_order", extra="    valid_for: 1h\n"))
    j = Journey(rules, now=T0 + HOUR)  # exactly valid_for after the decision: still sendable, now
    _grant(j, "c1", "email")
    _buy(j, "c1", T)
    (sent,) = j.messages
    assert sent["send_at"] == iso(T0 + HOUR) == sent["expires_at"]
    assert sent["at"] == iso(T0)
    NextBestMessage.model_validate(sent)

    j.now = T0 + HOUR + 1  # one second later: stale
    _grant(j, "c2", "email")
    _buy(j, "c2", T)
    assert [m["customer_id"] for m in j.messages] == ["c1"]
    assert [(s["customer_id"], s["reason"]) for s in j.suppressed] == [("c2", "stale")]
    SuppressedDecision.model_validate(j.suppressed[0])


def test_a_decision_made_live_sends_at_its_own_time_and_expires_valid_for_later() -> None:
    j = Journey(_rules(_message("thanks", "one_order")), now=T0)
    _grant(j, "c1", "email")
    _buy(j, "c1", T)
    (sent,) = j.messages
    assert (sent["send_at"], sent["expires_at"]) == (iso(T0), iso(T0 + DAY)), "valid_for defaults to 1d"


def test_quiet_hours_deferral_moves_the_validity_window_with_the_send_time() -> None:
    policy = 'contact_policy:\n  quiet_hours: {start: "21:00", end: "08:00"}\n'
    j = Journey(_rules(_message("thanks", "one_order", extra="    valid_for: 2h\n"), policy), now=parse_ts("2026-03-02T23:00:00Z"))
    _grant(j, "c1", "email")
    _buy(j, "c1", "2026-03-02T22:00:00Z")  # quiet until 08:00 UTC: first possible send then
    (sent,) = j.messages
    assert (sent["send_at"], sent["expires_at"]) == ("2026-03-03T08:00:00.000Z", "2026-03-03T10:00:00.000Z")


def test_on_quiet_on_a_message_overrides_the_policy() -> None:
    policy = 'contact_policy:\n  quiet_hours: {start: "21:00", end: "08:00", action: defer}\n'
    messages = _message("urgent", "one_order", extra="    on_quiet: suppress\n")
    j = Journey(_rules(messages, policy))
    _grant(j, "c1", "email")
    _buy(j, "c1", "2026-03-02T22:00:00Z")
    assert j.messages == [] and [s["reason"] for s in j.suppressed] == ["quiet"]


def test_channels_are_tried_in_order_with_consent_per_channel() -> None:
    j = Journey(_rules(_message("thanks", "one_order", channel="[push, sms, email]")))
    _grant(j, "c1", "email")
    _grant(j, "c1", "sms")
    _buy(j, "c1", T)
    _buy(j, "c2", T)
    assert [(m["customer_id"], m["channel"]) for m in j.messages] == [("c1", "sms")]
    assert [(s["customer_id"], s["reason"]) for s in j.suppressed] == [("c2", "consent")]


def test_preferred_is_the_most_engaged_messaging_channel_never_app_or_web() -> None:
    j = Journey(_rules(_message("thanks", "one_order", channel="preferred")))
    for n in range(5):
        j.send("c1", "session_started", f"2026-03-01T0{n}:00:00Z", channel="app")
    j.send("c1", "campaign_opened", "2026-03-01T06:00:00Z", channel="push", message_id="m0")
    _grant(j, "c1", "email")
    _grant(j, "c1", "push")
    _buy(j, "c1", T)
    assert j.value("c1", "preferred_channel") == "app", "the DNA field keeps its meaning"
    assert [m["channel"] for m in j.messages] == ["push"]


def test_opt_out_allows_until_revoked_and_opt_in_needs_a_grant() -> None:
    messages = _message("thanks", "one_order", channel="sms")
    j = Journey(_rules(messages, "contact_policy:\n  consent: opt_out\n"))
    _buy(j, "c1", T)
    _grant(j, "c2", "sms", granted=False)
    _buy(j, "c2", T)
    j.send("c3", "campaign_unsubscribed", "2026-03-01T00:00:00Z", channel="sms", message_id="m0")
    _buy(j, "c3", T)
    assert [m["customer_id"] for m in j.messages] == ["c1"]
    assert [(s["customer_id"], s["reason"]) for s in j.suppressed] == [("c2", "consent"), ("c3", "consent")]

    per_channel = Journey(_rules(_message("a", "one_order", channel="[email, sms]"), "contact_policy:\n  consent: {sms: opt_out}\n"))
    _buy(per_channel, "c1", T)
    assert [m["channel"] for m in per_channel.messages] == ["sms"], "email stays opt-in, sms is opt-out"


def test_a_consent_granted_later_releases_the_held_decision() -> None:
    j = Journey(_rules(_message("thanks", "one_order")), now=T0 + 3 * HOUR)
    _buy(j, "c1", T)
    assert j.messages == [] and [s["reason"] for s in j.suppressed] == ["consent"]
    j.send("c1", "page_view", "2026-03-02T11:00:00Z", page="/")
    assert j.messages == [] and len(j.suppressed) == 1, "still held, not reported again"
    _grant(j, "c1", "email", ts="2026-03-02T12:00:00Z", granted=True)
    (sent,) = j.messages
    assert sent["at"] == "2026-03-02T12:00:00.000Z" and sent["cause"] != "tick"
    assert sent["send_at"] == iso(T0 + 3 * HOUR) and sent["expires_at"] == iso(T0 + DAY), "validity from the first decision"
    assert j.states["c1"].pending == {}


def test_a_consent_granted_after_the_validity_releases_nothing() -> None:
    j = Journey(_rules(_message("thanks", "one_order", extra="    valid_for: 1h\n")))
    _buy(j, "c1", T)
    _grant(j, "c1", "email", ts="2026-03-02T12:00:00Z", granted=True)
    assert j.messages == []
    assert [s["reason"] for s in j.suppressed] == ["consent", "stale"]
    assert j.states["c1"].pending == {}


def _capped(on_cap: str) -> Journey:
    messages = _message("first", "one_order", priority=2) + _message("second", "two_orders", priority=1, extra=f"    on_cap: {on_cap}\n    valid_for: 2d\n")
    j = Journey(_rules(messages, "contact_policy:\n  caps: {per_day: 1}\n"))
    _grant(j, "c1", "email")
    _buy(j, "c1", T, 1)
    _buy(j, "c1", "2026-03-02T16:00:00Z", 2)
    return j


def test_a_cap_deferred_decision_is_released_when_the_cap_window_opens() -> None:
    j = _capped("defer")
    assert [m["message"] for m in j.messages] == ["first"]
    assert [(s["message"], s["reason"]) for s in j.suppressed] == [("first", "cooldown"), ("second", "cap")]
    assert j.states["c1"].wake == T0 + DAY, "the wake-up is the cap window's opening"
    j.until("2026-03-03T09:59:59Z")
    assert len(j.messages) == 1
    j.until("2026-03-05T00:00:00Z")
    released = j.messages[-1]
    assert (released["message"], released["at"], released["cause"], released["send_at"]) == ("second", iso(T0 + DAY), "tick", iso(T0 + DAY))


def test_a_cap_suppressed_decision_stays_dropped() -> None:
    j = _capped("suppress")
    j.until("2026-03-05T00:00:00Z")
    assert [m["message"] for m in j.messages] == ["first"]
    assert j.states["c1"].pending == {}


def test_a_per_channel_cap_at_its_limit_moves_to_the_next_channel_or_holds() -> None:
    messages = (
        _message("first", "one_order", channel="email", priority=3)
        + _message("second", "two_orders", channel="[email, sms]", priority=2)
        + _message("third", "three_orders", channel="email", priority=1)
    )
    j = Journey(_rules(messages, "contact_policy:\n  caps: {per_day: 5, email: {per_day: 1}}\n"))
    _grant(j, "c1", "email")
    _grant(j, "c1", "sms")
    _buy(j, "c1", T, 1)
    _buy(j, "c1", "2026-03-02T11:00:00Z", 2)
    _buy(j, "c1", "2026-03-02T12:00:00Z", 3)
    assert [(m["message"], m["channel"]) for m in j.messages] == [("first", "email"), ("second", "sms")]
    assert [(s["message"], s["reason"]) for s in j.suppressed if s["reason"] != "cooldown"] == [("third", "cap")]
    # the email cap counts email sends only: one more sms would still go
    j2 = Journey(_rules(_message("a", "one_order", channel="sms", priority=2) + _message("b", "two_orders", channel="email"), "contact_policy:\n  caps: {email: {per_day: 1}}\n"))
    _grant(j2, "c1", "email")
    _grant(j2, "c1", "sms")
    _buy(j2, "c1", T, 1)
    _buy(j2, "c1", "2026-03-02T11:00:00Z", 2)
    assert [(m["message"], m["channel"]) for m in j2.messages] == [("a", "sms"), ("b", "email")]


def test_cooldown_expiry_releases_a_decision_held_by_cooldown_within_its_validity() -> None:
    rules = _rules(
        """  - id: nudge
    segments: [one_order, two_orders]
    channel: email
    priority: 1
    cooldown: 1d
    valid_for: 3d
"""
    )
    j = Journey(rules)
    _grant(j, "c1", "email")
    _buy(j, "c1", T, 1)
    _buy(j, "c1", "2026-03-02T20:00:00Z", 2)  # entering two_orders re-decides nudge within its cooldown
    assert [s["reason"] for s in j.suppressed] == ["cooldown"]
    assert j.states["c1"].wake == T0 + DAY
    j.until("2026-03-04T00:00:00Z")
    assert [(m["at"], m["cause"]) for m in j.messages][1:] == [(iso(T0 + DAY), "tick")]


def test_holdout_decisions_are_complete_records_apart_from_the_messages() -> None:
    j = Journey(_rules(_message("thanks", "one_order", extra="    holdout: 0.5\n")))
    for n in range(40):
        _grant(j, f"c{n}", "email")
        _buy(j, f"c{n}", T)
    control = {h["customer_id"] for h in j.holdouts}
    assert 5 < len(control) < 35 and len(j.messages) + len(control) == 40
    assert not control & {m["customer_id"] for m in j.messages}, "a control customer never gets the message"
    assert control == {s["customer_id"] for s in j.suppressed if s["reason"] == "holdout"}
    for record in j.holdouts:
        NextBestMessage.model_validate(record)
        assert record["holdout"] == "holdout" and record["channel"] == "email" and record["send_at"] and record["expires_at"]


@pytest.mark.parametrize("now", [math.inf, T0 + 5 * DAY])
def test_records_validate_against_the_published_schemas(now: float) -> None:
    j = Journey(_rules(_message("thanks", "one_order", extra="    variants: [{id: a, subject: Hi}, {id: b, subject: Hello}]\n")), now=now)
    _grant(j, "c1", "email")
    _buy(j, "c1", T)
    for record in j.messages:
        NextBestMessage.model_validate(record)
        assert record["variant"] in ("a", "b") and record["posterior_version"] == "empty"
    for record in j.suppressed:
        SuppressedDecision.model_validate(record)
    assert bool(j.messages) == (now == math.inf)


def test_best_hour_sends_in_the_customers_most_engaged_local_hour_within_validity() -> None:
    rules = _rules(_message("offer", "one_order", extra="    send_at: best_hour\n    valid_for: 2d\n"))
    j = Journey(rules, now=T0)
    j.send("c1", "profile_updated", "2026-02-01T00:00:00Z", timezone="America/New_York")
    for day in range(1, 6):
        j.send("c1", "session_started", f"2026-02-0{day}T23:30:00Z", channel="app")  # 18:30 EST
    j.send("c1", "campaign_opened", "2026-02-10T14:00:00Z", channel="email", message_id="m0")  # 09:00 EST, once
    _grant(j, "c1", "email")
    _buy(j, "c1", T)  # 05:00 EST
    assert j.value("c1", "engaged_hour") == 18
    (sent,) = j.messages
    assert sent["send_at"] == "2026-03-02T23:00:00.000Z", "18:00 in New York the same day"
    # no history: now
    _grant(j, "c2", "email")
    _buy(j, "c2", T)
    assert j.messages[-1]["send_at"] == iso(T0)


def test_best_hour_follows_the_local_hour_across_the_spring_change() -> None:
    rules = _rules(_message("offer", "one_order", extra="    send_at: best_hour\n    valid_for: 2d\n"))
    j = Journey(rules)
    j.send("c1", "profile_updated", "2026-02-01T00:00:00Z", timezone="America/New_York")
    j.send("c1", "session_started", "2026-02-02T14:10:00Z", channel="app")  # 09:10 EST
    _grant(j, "c1", "email")
    _buy(j, "c1", "2026-03-08T12:00:00Z")  # 08:00 EDT, the day clocks went forward
    (sent,) = j.messages
    assert sent["send_at"] == "2026-03-08T13:00:00.000Z", "09:00 EDT is 13:00Z (14:00Z in winter)"
