"""The fold: exact fields on hand-made journeys, and properties over random event streams."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from microseg.segments.dna import Dna, fold, is_duplicate, top_key
from microseg.segments.state import CustomerState, decode, encode
from microseg.segments.testing import event, parse_ts
from microseg.segments.view import DnaView, iso

T0 = "2026-03-01T12:00:00.000Z"


def _fold_all(events: list) -> Dna:
    dna = None
    for ev in events:
        if not is_duplicate(dna, ev):
            dna = fold(dna, ev)
    assert dna is not None
    return dna


def _view(dna: Dna, ts: str) -> DnaView:
    return DnaView(dna, parse_ts(ts))


def test_fold_does_not_change_its_input() -> None:
    first = fold(None, event("c", "session_started", T0, channel="web"))
    before = encode(CustomerState(first))
    fold(first, event("c", "purchase", "2026-03-02T00:00:00.000Z", order_id="o", amount=10.0))
    assert encode(CustomerState(first)) == before


def test_lifecycle_and_spending_fields() -> None:
    dna = _fold_all(
        [
            event("c", "account_created", "2026-01-01T00:00:00.000Z", channel="web"),
            event("c", "purchase", "2026-01-10T00:00:00.000Z", order_id="o1", amount=100.0),
            event("c", "purchase", "2026-02-20T00:00:00.000Z", order_id="o2", amount=50.0),
            event("c", "refund", "2026-02-21T00:00:00.000Z", order_id="o2", amount=50.0),
        ]
    )
    v = _view(dna, "2026-03-01T00:00:00.000Z")
    assert v["tenure_days"] == 59
    assert v["days_since_last_purchase"] == 9
    assert v["days_since_last_activity"] == 8
    assert v["first_seen"] == "2026-01-01T00:00:00.000Z"
    assert v["purchases_total"] == 2
    assert v["purchases_30d"] == 1
    assert v["spend_30d"] == 50.0
    assert v["spend_90d"] == 150.0
    assert v["spend_total"] == 100.0
    assert v["avg_order_value"] == 75.0
    assert v["refunds_90d"] == 1
    assert v["journey_stage"] == "onboarding"


def test_never_purchased_gives_nulls() -> None:
    v = _view(_fold_all([event("c", "session_started", T0, channel="app")]), T0)
    assert v["days_since_last_purchase"] is None
    assert v["avg_order_value"] is None
    assert v["journey_stage"] == "prospect"
    assert v["nps"] is None
    assert v["p_alive"] is None


def test_windows_are_utc_calendar_days() -> None:
    dna = _fold_all([event("c", "session_started", "2026-03-01T23:59:00.000Z", channel="web")])
    assert _view(dna, "2026-03-07T23:59:59.000Z")["sessions_7d"] == 1
    assert _view(dna, "2026-03-08T00:00:00.000Z")["sessions_7d"] == 0
    assert _view(dna, "2026-03-30T23:00:00.000Z")["sessions_30d"] == 1
    assert _view(dna, "2026-03-31T00:00:00.000Z")["sessions_30d"] == 0


def test_sessions_bounces_and_channels() -> None:
    dna = _fold_all(
        [
            event("c", "session_started", "2026-03-01T10:00:00.000Z", channel="web"),
            event("c", "page_view", "2026-03-01T10:00:05.000Z", channel="web", page="/"),
            event("c", "session_started", "2026-03-02T10:00:00.000Z", channel="app"),
            event("c", "page_view", "2026-03-02T10:00:05.000Z", channel="app", page="/a"),
            event("c", "page_view", "2026-03-02T10:00:09.000Z", channel="app", page="/b"),
            event("c", "session_started", "2026-03-03T10:00:00.000Z", channel="store"),
        ]
    )
    v = _view(dna, "2026-03-03T12:00:00.000Z")
    assert v["sessions_7d"] == 3
    assert v["web_sessions_30d"] == 1
    assert v["app_sessions_30d"] == 1
    assert v["page_views_30d"] == 3
    assert v["bounces_30d"] == 1
    assert v["channels_30d"] == 3
    assert v["channel_switches_30d"] == 2
    assert v["last_channel"] == "store"
    assert v["preferred_channel"] == "app"


def test_cart_abandoned_after_an_hour_unless_bought() -> None:
    cart = event("c", "cart_updated", T0, product_id="p", category="shoes", quantity=1, cart_value=80.0)
    dna = _fold_all([cart])
    assert _view(dna, "2026-03-01T12:59:59.000Z")["carts_abandoned_30d"] == 0
    assert _view(dna, "2026-03-01T13:00:00.000Z")["carts_abandoned_30d"] == 1
    assert _view(dna, "2026-03-01T12:30:00.000Z")["open_cart_value"] == 80.0
    bought = fold(dna, event("c", "purchase", "2026-03-01T12:30:00.000Z", order_id="o", amount=80.0))
    assert _view(bought, "2026-03-05T00:00:00.000Z")["carts_abandoned_30d"] == 0
    late = fold(dna, event("c", "purchase", "2026-03-01T14:00:00.000Z", order_id="o", amount=80.0))
    assert _view(late, "2026-03-05T00:00:00.000Z")["carts_abandoned_30d"] == 1


def test_affinity_is_a_share_and_top_category() -> None:
    dna = _fold_all(
        [
            event("c", "product_viewed", T0, product_id="p1", category="books"),
            event("c", "product_viewed", T0, product_id="p2", category="books"),
            event("c", "product_viewed", T0, product_id="p3", category="toys"),
        ]
    )
    v = _view(dna, "2026-04-01T00:00:00.000Z")
    assert abs(v.affinity("books") - 2 / 3) < 1e-9
    assert v.affinity("garden") == 0.0
    assert v["top_category"] == "books"


def test_campaign_rates_consent_and_voice() -> None:
    dna = _fold_all(
        [
            event("c", "campaign_delivered", T0, channel="email", message_id="m1"),
            event("c", "campaign_delivered", T0, channel="email", message_id="m2"),
            event("c", "campaign_opened", T0, channel="email", message_id="m1"),
            event("c", "campaign_delivered", T0, channel="sms", message_id="m3"),
            event("c", "consent_changed", T0, props={"channel": "email", "granted": True}),
            event("c", "campaign_unsubscribed", T0, channel="sms", message_id="m3"),
            event("c", "survey_answered", T0, kind="nps", score=3),
            event("c", "survey_answered", "2026-02-01T00:00:00.000Z", kind="nps", score=10),
            event("c", "support_contact", T0, status="opened"),
        ]
    )
    v = _view(dna, "2026-03-02T00:00:00.000Z")
    assert v.open_rate("email") == 0.5
    assert v.open_rate() == 1 / 3
    assert v.click_rate("push") is None
    assert v.consented("email") and not v.consented("sms")
    assert v.unsubscribed("sms")
    assert v["messages_received_30d"] == 3
    assert v["days_since_last_message"] == 0
    assert v["nps"] == 3, "the older answer arriving late must not replace the newer one"
    assert v["open_support_contacts"] == 1


def test_state_stays_small_for_a_busy_customer() -> None:
    rng = random.Random(3)
    events = []
    for day in range(60):
        ts = iso(parse_ts("2026-01-01T10:00:00.000Z") + day * 86_400)
        events.append(event("c", "session_started", ts, channel=rng.choice(["web", "app", "email"])))
        events.append(event("c", "page_view", ts, channel="web", page="/p", category=rng.choice(["a", "b", "c"])))
        if day % 7 == 0:
            events.append(event("c", "purchase", ts, order_id=f"o{day}", amount=20.0))
    size = len(encode(CustomerState(_fold_all(events))))
    assert size <= 1024, size


# -- properties ---------------------------------------------------------------------------

_COUNTED = st.sampled_from(["session_started", "purchase", "campaign_delivered", "refund", "support_contact"])


@st.composite
def _streams(draw: st.DrawFn) -> list:
    n = draw(st.integers(min_value=1, max_value=25))
    out = []
    for i in range(n):
        kind = draw(_COUNTED)
        minute = draw(st.integers(min_value=0, max_value=60 * 24 * 120))
        t = parse_ts("2026-01-01T00:00:00.000Z") + minute * 60
        props: dict = {}
        if kind == "purchase":
            props = {"order_id": f"o{i}", "amount": float(draw(st.integers(0, 500)))}
        elif kind == "refund":
            props = {"order_id": f"o{i}", "amount": 1.0}
        elif kind == "campaign_delivered":
            props = {"message_id": f"m{i}"}
        elif kind == "support_contact":
            props = {"status": "opened"}
        out.append(event("c", kind, iso(t), event_id=f"e{i}", channel="web", **props))
    return out


_FIELDS = ("sessions_7d", "sessions_30d", "purchases_total", "purchases_30d", "purchases_90d", "spend_total",
           "spend_90d", "refunds_90d", "messages_received_30d", "support_contacts_30d", "first_seen",
           "days_since_last_purchase", "days_since_last_activity", "tenure_days")


@settings(max_examples=150, deadline=None)
@given(_streams(), st.randoms(use_true_random=False))
def test_counts_do_not_depend_on_arrival_order(events: list, rnd: random.Random) -> None:
    shuffled = events[:]
    rnd.shuffle(shuffled)
    a, b = _fold_all(events), _fold_all(shuffled)
    now = max(e.t for e in events)
    va, vb = DnaView(a, now), DnaView(b, now)
    for name in _FIELDS:
        assert va[name] == vb[name] or abs(va[name] - vb[name]) < 1e-6, name


@settings(max_examples=150, deadline=None)
@given(_streams(), st.data())
def test_redelivered_events_are_not_counted_twice(events: list, data: st.DataObject) -> None:
    with_dupes = []
    for ev in events:
        with_dupes.append(ev)
        if data.draw(st.booleans()):
            with_dupes.append(ev)
    a, b = _fold_all(events), _fold_all(with_dupes)
    assert encode(CustomerState(a)) == encode(CustomerState(b))


@settings(max_examples=100, deadline=None)
@given(_streams())
def test_encoding_round_trips(events: list) -> None:
    state = CustomerState(_fold_all(events), ("a", "b"), "x|y", "v1", 1.5, None, [[1.0, "m"]], {"m": 1.0}, 7)
    assert encode(decode(encode(state))) == encode(state)


def test_fold_never_changes_the_state_it_was_given() -> None:
    """Copy-on-write must cover every container every event type writes to."""
    from datetime import datetime, timezone

    from microseg.engine.tools.simulator import simulate_lines
    from microseg.schemas.events import decode_event

    states: dict = {}
    seen_types = set()
    for raw in simulate_lines(60, 40, 13, datetime(2026, 1, 1, tzinfo=timezone.utc)):
        ev = decode_event(raw)
        before = states.get(ev.customer_id)
        snapshot = None if before is None else encode(CustomerState(before))
        after = fold(before, ev)
        if before is not None:
            assert encode(CustomerState(before)) == snapshot, ev.type
            seen_types.add(ev.type)
            again = fold(before, ev)
            assert encode(CustomerState(again)) == encode(CustomerState(after)), "folding twice from one state gives one result"
        states[ev.customer_id] = after
    assert len(seen_types) >= 18


@given(st.dictionaries(st.sampled_from(["a", "b", "app", "email", "web", "sms"]), st.one_of(st.integers(0, 5), st.floats(0, 5, allow_nan=False))))
def test_top_key_is_the_largest_value_then_the_first_name(table: dict) -> None:
    expected = min(table, key=lambda name: (-table[name], name)) if table else None
    assert top_key(table) == expected


# --- issue 12: money is integer cents, converted once ---------------------------------------------


def _purchases(*amounts: float, day: str = "2026-03-01") -> Dna:
    return _fold_all(
        [event("c", "purchase", f"{day}T10:{i:02d}:00Z", order_id=f"o{i}", amount=a) for i, a in enumerate(amounts)]
    )


def test_three_purchases_of_ten_cents_average_exactly_ten_cents() -> None:
    v = _view(_purchases(0.1, 0.1, 0.1), "2026-03-01T20:00:00.000Z")
    assert v["avg_order_value"] == 0.1  # was 0.09999999999999999: avg_order_value >= 0.1 exited
    assert v["spend_total"] == 0.3 and v["spend_30d"] == 0.3 and v["spend_90d"] == 0.3


def test_sums_that_float_addition_gets_wrong_are_exact() -> None:
    assert 12.11 + 19.99 + 17.90 != 50.0  # the float trap the cents avoid
    v = _view(_purchases(12.11, 19.99, 17.90), "2026-03-01T20:00:00.000Z")
    assert v["spend_30d"] == 50.0 and v["spend_90d"] == 50.0 and v["spend_total"] == 50.0
    assert v["avg_order_value"] == 16.67  # 5000 / 3 = 1666.67 cents, to the cent
    refunded = fold(_purchases(12.11, 19.99, 17.90), event("c", "refund", "2026-03-01T21:00:00.000Z", order_id="o1", amount=19.99))
    assert _view(refunded, "2026-03-01T22:00:00.000Z")["spend_total"] == 30.01


@given(cents=st.lists(st.integers(0, 10**9), min_size=1, max_size=30))
@settings(max_examples=200, deadline=None)
def test_every_money_field_is_its_exact_cents_converted_once(cents: list[int]) -> None:
    """Whatever the amounts (written with two decimals), each money field is the float nearest its
    exact value: the cent sum / 100, and the average rounded half-even to the cent / 100."""
    from decimal import ROUND_HALF_EVEN, Decimal

    dna = _purchases(*[c / 100 for c in cents])
    v = _view(dna, "2026-03-01T23:59:00.000Z")
    total = sum(cents)
    assert dna.gross_cents == total
    assert v["spend_30d"] == v["spend_90d"] == v["spend_total"] == float(Decimal(total) / 100)
    mean = (Decimal(total) / len(cents)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    assert v["avg_order_value"] == float(mean / 100)


def test_average_order_value_rounds_half_even_to_the_cent() -> None:
    from microseg.segments.dna_record import cents_mean

    assert [cents_mean(t, n) for t, n in [(30, 3), (5, 2), (15, 2), (1, 3), (2, 3), (-5, 2), (7, 4)]] == [10, 2, 8, 0, 1, -2, 2]
    v = _view(_purchases(0.01, 0.02), "2026-03-01T20:00:00.000Z")
    assert v["avg_order_value"] == 0.02  # 1.5 cents, half-even: 2
    v = _view(_purchases(0.01, 0.04), "2026-03-01T20:00:00.000Z")
    assert v["avg_order_value"] == 0.02  # 2.5 cents, half-even: 2


def test_amounts_are_rounded_half_even_to_the_cent_as_written() -> None:
    from microseg.segments.dna_record import to_cents

    assert [to_cents(a) for a in (12.11, 19.99, 17.9, 0.1, 1.015, 1.025, 0.125, 0.135, 2.675, 1e12, 999999999999.99)] == [
        1211, 1999, 1790, 10, 102, 102, 12, 14, 268, 10**14, 99999999999999
    ]
    v = _view(_purchases(1.015, 0.125), "2026-03-01T20:00:00.000Z")
    assert v["spend_total"] == 1.14


def test_open_cart_value_is_to_the_cent() -> None:
    dna = _fold_all([event("c", "cart_updated", T0, product_id="p", category="x", quantity=1, cart_value=59.999)])
    assert _view(dna, "2026-03-01T12:30:00.000Z")["open_cart_value"] == 60.0


def test_predictive_spend_input_is_exact_cents() -> None:
    """m_x (mean of the repeat purchase days) is cents / (100 x), one division, as in the fitter."""
    from microseg.segments.predictive import load_default_model

    events = [event("c", "purchase", "2026-01-01T10:00:00.000Z", order_id="first", amount=5.0)]
    events += [event("c", "purchase", f"2026-01-0{2 + i}T10:00:00.000Z", order_id=f"o{i}", amount=a) for i, a in enumerate((12.11, 19.99, 17.90))]
    view = DnaView(_fold_all(events), parse_ts("2026-01-10T00:00:00.000Z"), model=load_default_model())
    x, _, _, m_x = view["_statistics"]
    assert x == 3 and m_x * 3 == 50.0 and m_x == 50 / 3
