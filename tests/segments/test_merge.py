"""Merging two DNA records (segments/merge.py): every field has one declared rule; the exact ones
equal one profile folded with both sides' events; the others follow their documented rule."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microseg.schemas.events import Event
from microseg.segments import windows as w
from microseg.segments.dna import Dna, fold
from microseg.segments.dna_record import MAX_CATEGORIES, RECENT_IDS
from microseg.segments.merge import EXACT_METRICS, RULES, merge, merge_trait, render_rules
from microseg.segments.testing import event
from microseg.segments.traits import EventContext, Trait, fold_trait, trait_value

DAY = 86_400
BASE = 1_767_225_600.0  # 2026-01-01T00:00:00Z

_counter = iter(range(10**9))


def _ts(offset: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(BASE + offset, timezone.utc).isoformat()


@st.composite
def events(draw: Any, steps: int = 800) -> Event:
    """Events of every type the exact fields read; instants on a 6-hour grid over ``steps`` / 4 days
    (200 by default; ties happen)."""
    kind = draw(
        st.sampled_from(
            [
                "session_started", "page_view", "purchase", "refund", "campaign_delivered", "campaign_opened", "campaign_converted",
                "consent_changed", "campaign_unsubscribed", "support_contact", "review_posted", "referral_made", "profile_updated",
                "account_created", "product_viewed",
            ]
        )
    )
    at = _ts(draw(st.integers(0, steps)) * 6 * 3600)
    channel = draw(st.sampled_from([None, "web", "app", "email", "sms"]))
    props: dict[str, Any] = {}
    if kind == "page_view":
        props = {"page": "/p", "category": draw(st.sampled_from(["shoes", "hats"]))}
    elif kind == "product_viewed":
        props = {"product_id": "p", "category": draw(st.sampled_from(["shoes", "hats", "bags"]))}
    elif kind in ("purchase", "refund"):
        props = {"order_id": f"o{next(_counter)}", "amount": draw(st.integers(0, 50_000)) / 100}
    elif kind.startswith("campaign_"):
        props = {"message_id": "m"}
    elif kind == "consent_changed":
        props = {"channel": draw(st.sampled_from(["email", "sms"])), "granted": draw(st.booleans())}
    elif kind == "support_contact":
        props = {"status": "opened"}
    elif kind == "review_posted":
        props = {"rating": 4}
    elif kind == "profile_updated":
        props = {"timezone": draw(st.sampled_from(["Europe/Paris", "America/New_York"])), "preferred_channel": draw(st.sampled_from(["email", "sms"]))}
    return event("c", kind, at, event_id=f"e{next(_counter)}", channel=channel, props=props)


def _fold_all(items: list[Event]) -> Dna:
    dna: Dna | None = None
    for item in items:
        dna = fold(dna, item)
    assert dna is not None
    return dna


def _exact_fields() -> list[str]:
    return [name for rule in RULES if rule.exact for name in rule.fields if name not in ("windows", "traits")]


def _metric_rows(dna: Dna, newest_day: int) -> dict[int, tuple[int, ...]]:
    """The exact metrics' per-day counts that any window can still read once time is at the newest
    event (older days may or may not be kept: no read sees them)."""
    rows = {d: tuple(row[m] for m in sorted(EXACT_METRICS)) for d, row in dna.windows.rows.items() if d > newest_day - w.RETENTION_DAYS}
    return {d: r for d, r in rows.items() if any(r)}


def test_every_record_field_has_exactly_one_rule() -> None:
    declared = [name for rule in RULES for name in rule.fields]
    assert sorted(declared) == sorted(f.name for f in dataclasses.fields(Dna)), "segments/merge.py RULES must name every Dna field once"
    assert len(declared) == len(set(declared))


def test_the_docs_show_the_declared_rules() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "dna.md").read_text(encoding="utf-8")
    assert render_rules() in text, "docs/dna.md: the merge table is stale; paste segments.merge.render_rules()"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(events(), st.booleans()), min_size=2, max_size=30), st.randoms(use_true_random=False))
def test_exact_fields_equal_one_profile_folded_with_both_sides_events(tagged: list[tuple[Event, bool]], rnd: Any) -> None:
    anonymous = [e for e, side in tagged if side]
    customer = [e for e, side in tagged if not side]
    if not anonymous or not customer:
        return
    everything = [e for e, _ in tagged]
    rnd.shuffle(everything)  # the fold is order-independent for these fields: any order will do
    one = _fold_all(everything)
    merged = merge(_fold_all(customer), _fold_all(anonymous))
    for name in _exact_fields():
        assert getattr(merged, name) == getattr(one, name), name
    newest_day = w.day_of(max(e.t for e in everything))
    assert _metric_rows(merged, newest_day) == _metric_rows(one, newest_day)
    for span in w.SPANS:
        for metric in EXACT_METRICS:
            now = BASE + 801 * 6 * 3600
            assert merged.windows.total(now, metric, span) == one.windows.scan(now, metric, span)


@settings(max_examples=150, deadline=None)
@given(st.lists(events(320), min_size=1, max_size=15), st.lists(events(320), min_size=1, max_size=15), st.lists(events(320), min_size=1, max_size=15))
def test_merge_is_associative(xs: list[Event], ys: list[Event], zs: list[Event]) -> None:
    """Over 80 days: past the 90-day retention ``purchase_days`` depends on the grouping (days both
    bought on are known only while in both windows; docs/dna.md)."""
    a, b, c = _fold_all(xs), _fold_all(ys), _fold_all(zs)
    left, right = merge(merge(a, b), c), merge(a, merge(b, c))
    for field in dataclasses.fields(Dna):
        name = field.name
        if name == "affinity":
            assert left.affinity.keys() == right.affinity.keys()
            for key in left.affinity:
                assert math.isclose(left.affinity[key], right.affinity[key], rel_tol=1e-9)
        elif name == "windows":
            assert left.windows.rows == right.windows.rows and left.windows.totals == right.windows.totals
        else:
            assert getattr(left, name) == getattr(right, name), name


def test_merge_changes_neither_input() -> None:
    c = _fold_all([event("c", "purchase", _ts(0), order_id="o1", amount=5, channel="web")])
    a = _fold_all([event("a", "session_started", _ts(3600), channel="app")])
    before = (repr(c), repr(a))
    merge(c, a)
    assert (repr(c), repr(a)) == before


# -- the documented rules of the fields that are not exact ----------------------------------------


def test_affinity_decays_to_the_later_instant_adds_and_keeps_the_top_12() -> None:
    c = Dna(affinity_at=BASE + 30 * DAY, affinity={"shoes": 4.0})
    a = Dna(affinity_at=BASE, affinity={"shoes": 2.0, **{f"cat{i:02}": float(i + 1) for i in range(12)}})
    merged = merge(c, a)
    assert merged.affinity_at == BASE + 30 * DAY
    assert merged.affinity["shoes"] == pytest.approx(4.0 + 2.0 * 0.5)  # one 30-day half-life
    assert len(merged.affinity) == MAX_CATEGORIES and "cat00" not in merged.affinity  # the weakest went


def test_remembered_ids_keep_the_last_16_with_the_customer_s_newest() -> None:
    c = Dna(recent_ids=list(range(10)))
    a = Dna(recent_ids=list(range(5, 15)))
    assert merge(c, a).recent_ids == ([10, 11, 12, 13, 14] + list(range(10)))[-RECENT_IDS:]
    many = merge(Dna(recent_ids=list(range(16))), Dna(recent_ids=list(range(100, 116))))
    assert many.recent_ids == list(range(16))


def test_attributes_the_customer_s_win_the_visitor_s_fill_the_rest() -> None:
    c = Dna(attributes={"plan": "gold"}, attributes_at=BASE)
    a = Dna(attributes={"plan": "free", "utm": "news"}, attributes_at=BASE + DAY)
    merged = merge(c, a)
    assert merged.attributes == {"plan": "gold", "utm": ["news", BASE + DAY]} and merged.attributes_at == BASE


def test_the_newer_open_session_and_cart_win() -> None:
    c = Dna(session_start=BASE, session_views=3, cart_at=BASE + 100, cart_value=20.0)
    a = Dna(session_start=BASE + 50, session_views=1, cart_at=BASE + 200, cart_value=35.0)
    merged = merge(c, a)
    assert (merged.session_start, merged.session_views, merged.cart_at, merged.cart_value) == (BASE + 50, 1, BASE + 200, 35.0)


def test_an_older_cart_an_hour_before_the_newer_counts_as_abandoned_and_a_later_purchase_closes_the_cart() -> None:
    c = Dna(cart_at=BASE, cart_value=20.0)
    a = Dna(cart_at=BASE + 7200, cart_value=35.0, last_purchase=BASE + 7300)
    merged = merge(c, a)
    assert merged.cart_at is None and merged.windows.scan(BASE + 7300, w.ABANDONED, 7) == 1


def test_open_support_counts_and_purchase_days_follow_their_rules() -> None:
    c = _fold_all([event("c", "purchase", _ts(0), order_id="o1", amount=5), event("c", "purchase", _ts(DAY), order_id="o2", amount=5)])
    a = _fold_all([event("a", "purchase", _ts(DAY + 60), order_id="o3", amount=5), event("a", "support_contact", _ts(10), status="opened")])
    merged = merge(c, a)
    assert merged.purchase_days == 2  # the day both bought on counts once
    assert merged.open_support == 1


def test_survey_answers_at_the_same_instant_keep_the_customer_s() -> None:
    c = Dna(voice={"nps": [3, BASE]})
    assert merge(c, Dna(voice={"nps": [9, BASE]})).voice == {"nps": [3, BASE]}
    assert merge(c, Dna(voice={"nps": [9, BASE + 1]})).voice == {"nps": [9, BASE + 1]}


# -- computed traits ------------------------------------------------------------------------------


def _trait(aggregate: str, span: int = 30, value: bool = True) -> Trait:
    return Trait(
        id=f"t_{aggregate}", events=frozenset({"purchase"}), aggregate=aggregate, where=None,
        value=(lambda ctx: ctx.prop("amount")) if value and aggregate not in ("count", "distinct_count", "most_frequent")
        else (lambda ctx: ctx.prop("order_id")[:2]) if aggregate in ("distinct_count", "most_frequent") else None,
        unit=DAY, span=span, money=aggregate in ("sum", "avg"), fingerprint=hash(aggregate) & 0xFFFF,
    )


def _fold_trait_all(trait: Trait, items: list[Event]) -> list[Any] | None:
    stored: list[Any] | None = None
    for item in items:
        stored, _ = fold_trait(stored, trait, item, EventContext(item))
    return stored


@pytest.mark.parametrize("aggregate", ["count", "sum", "avg", "min", "max", "first", "last", "distinct_count", "most_frequent"])
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 20_000), st.integers(10, 40), st.booleans()), min_size=2, max_size=25))
def test_traits_merge_like_one_profile(aggregate: str, rows: list[tuple[int, int, int, bool]]) -> None:
    """Under 64 distinct values every aggregate is exact: merged == one profile, read at any instant."""
    trait = _trait(aggregate)
    items = [(event("c", "purchase", _ts(day * DAY), event_id=f"p{i}", order_id=f"{code}x", amount=cents / 100), side) for i, (day, cents, code, side) in enumerate(rows)]
    one = _fold_trait_all(trait, [e for e, _ in items])
    merged = merge_trait(_fold_trait_all(trait, [e for e, s in items if not s]) or [], _fold_trait_all(trait, [e for e, s in items if s]) or [], trait)
    for now_day in (80, 90, 100, 120):
        now = BASE + now_day * DAY
        assert trait_value(merged, trait, now) == trait_value(one, trait, now), (aggregate, now_day)


def test_distinct_count_past_64_values_keeps_the_newest() -> None:
    trait = dataclasses.replace(_trait("distinct_count", span=0), value=lambda ctx: ctx.prop("order_id"))
    c = _fold_trait_all(trait, [event("c", "purchase", _ts(i), event_id=f"c{i}", order_id=f"c{i:03}", amount=1) for i in range(40)])
    a = _fold_trait_all(trait, [event("c", "purchase", _ts(i), event_id=f"a{i}", order_id=f"a{i:03}", amount=1) for i in range(40)])
    merged = merge_trait(c or [], a or [], trait)
    assert merged is not None and len(merged[1]) == 64 and trait_value(merged, trait, BASE + 100) == 64
    one = _fold_trait_all(trait, [event("c", "purchase", _ts(i), event_id=f"{s}{i}", order_id=f"{s}{i:03}", amount=1) for i in range(40) for s in "ca"])
    assert one is not None and merged[1] == one[1]  # the 64 newest, as one profile keeps them


@st.composite
def consent_events(draw: Any) -> Event:
    """Grants, revocations and unsubscribes on two channels at three instants: ties on purpose."""
    at = _ts(draw(st.integers(0, 2)) * 3600)
    channel = draw(st.sampled_from(["email", "sms"]))
    kind = draw(st.sampled_from(["grant", "revoke", "unsubscribe"]))
    if kind == "unsubscribe":
        return event("c", "campaign_unsubscribed", at, event_id=f"u{next(_counter)}", channel=channel, message_id="m")
    return event("c", "consent_changed", at, event_id=f"k{next(_counter)}", props={"channel": channel, "granted": kind == "grant"})


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(consent_events(), st.booleans()), min_size=1, max_size=8))
def test_consent_merges_like_one_profile_at_equal_instants_too(tagged: list[tuple[Event, bool]]) -> None:
    anonymous = [e for e, side in tagged if side]
    customer = [e for e, side in tagged if not side]
    one = _fold_all([e for e, _ in tagged])
    merged = merge(_fold_all(customer) if customer else Dna(), _fold_all(anonymous) if anonymous else Dna())
    assert (merged.consent, merged.unsubscribed) == (one.consent, one.unsubscribed)
