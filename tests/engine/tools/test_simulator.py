"""The simulator's promises: deterministic, valid CONTRACT §1 events, time-ordered, personas that differ."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from microseg.engine.tools.simulator import (
    CATEGORIES,
    PERSONAS,
    live,
    parse_persona_weights,
    personas_by_customer,
    simulate,
    simulate_command,
    simulate_lines,
)
from microseg.errors import ConfigError

START = datetime(2026, 1, 1, tzinfo=timezone.utc)

CONTRACT_TYPES = {
    "account_created", "session_started", "page_view", "product_viewed", "cart_updated", "checkout_started",
    "purchase", "refund", "campaign_delivered", "campaign_opened", "campaign_clicked", "campaign_converted",
    "campaign_unsubscribed", "survey_answered", "support_contact", "review_posted", "referral_made",
    "consent_changed", "profile_updated", "erasure_requested",
}
REQUIRED_PROPS = {
    "page_view": {"page"},
    "product_viewed": {"product_id", "category"},
    "cart_updated": {"product_id", "category", "quantity", "cart_value"},
    "checkout_started": {"cart_value"},
    "purchase": {"order_id", "amount"},
    "refund": {"order_id", "amount"},
    "campaign_delivered": {"message_id"},
    "campaign_opened": {"message_id"},
    "campaign_clicked": {"message_id"},
    "campaign_converted": {"message_id"},
    "campaign_unsubscribed": {"message_id"},
    "survey_answered": {"kind", "score"},
    "support_contact": {"status"},
    "review_posted": {"rating"},
    "consent_changed": {"channel", "granted"},
}
SCORE_RANGE = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}


@pytest.fixture(scope="module")
def run300() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in simulate_lines(300, 60, 7, START)]


def _t(ev: dict[str, Any]) -> float:
    return datetime.fromisoformat(ev["ts"]).timestamp()


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not() -> None:
    first = b"".join(simulate_lines(60, 20, 11, START))
    again = b"".join(simulate_lines(60, 20, 11, START))
    other = b"".join(simulate_lines(60, 20, 12, START))
    assert first == again
    assert first != other


def test_every_contract_event_type_appears(run300: list[dict[str, Any]]) -> None:
    assert {ev["type"] for ev in run300} == CONTRACT_TYPES


def test_envelope_fields_and_value_ranges(run300: list[dict[str, Any]]) -> None:
    ids = set()
    for ev in run300:
        assert set(ev) <= {"event_id", "customer_id", "type", "ts", "channel", "device", "props"}
        assert 1 <= len(ev["event_id"]) <= 128 and 1 <= len(ev["customer_id"]) <= 128
        ids.add(ev["event_id"])
        moment = datetime.fromisoformat(ev["ts"])
        assert moment.tzinfo is not None and ev["ts"][-6] in "+-"
        props = ev["props"]
        assert REQUIRED_PROPS.get(ev["type"], set()) <= set(props), ev
        kind = ev["type"]
        if kind in ("purchase", "refund"):
            assert props["amount"] >= 0
        if kind == "purchase":
            assert props["amount"] == pytest.approx(sum(i["quantity"] * i["price"] for i in props["items"]), abs=0.011)
            assert all(i["category"] in CATEGORIES and i["quantity"] >= 1 for i in props["items"])
        if kind == "survey_answered":
            low, high = SCORE_RANGE[props["kind"]]
            assert low <= props["score"] <= high
        if kind == "review_posted":
            assert 1 <= props["rating"] <= 5
        if kind == "support_contact":
            assert props["status"] in ("opened", "resolved")
        if kind == "profile_updated" and "timezone" in props:
            assert "/" in props["timezone"] or props["timezone"] == "UTC"
    assert len(ids) == len(run300)
    channels = {ev.get("channel") for ev in run300}
    assert {"web", "app", "email", "sms", "push", "store", "call_center", "social"} <= channels


def test_time_order_globally_and_per_customer(run300: list[dict[str, Any]]) -> None:
    times = [_t(ev) for ev in run300]
    assert times == sorted(times)
    last: dict[str, float] = {}
    for ev, t in zip(run300, times):
        assert t >= last.get(ev["customer_id"], t)
        last[ev["customer_id"]] = t
    assert min(times) >= START.timestamp() and max(times) < (START + timedelta(days=60)).timestamp()


def test_journeys_follow_a_plausible_order(run300: list[dict[str, Any]]) -> None:
    delivered: dict[str, float] = {}
    carts: set[str] = set()
    first_type: dict[str, str] = {}
    erased: set[str] = set()
    for ev in run300:
        cid, kind, props = ev["customer_id"], ev["type"], ev["props"]
        assert cid not in erased, "events after erasure_requested"
        first_type.setdefault(cid, kind)
        if kind == "campaign_delivered":
            delivered[props["message_id"]] = _t(ev)
        elif kind == "campaign_opened":
            assert _t(ev) > delivered[props["message_id"]]
        elif kind == "cart_updated":
            carts.add(cid)
        elif kind == "purchase" and ev["channel"] in ("web", "app"):
            assert cid in carts
        elif kind == "erasure_requested":
            erased.add(cid)
    assert set(first_type.values()) <= {"session_started", "account_created"}


def test_visits_number_their_pages_and_some_end_on_the_landing_page(run300: list[dict[str, Any]]) -> None:
    """``page_number`` counts a visit's page views from 1 (what the starter ``bouncer`` reads): one
    landing page per session, and a share of visits with no second page."""
    numbers = Counter(ev["props"]["page_number"] for ev in run300 if ev["type"] == "page_view")
    sessions = sum(ev["type"] == "session_started" for ev in run300)
    assert numbers[1] == sessions and min(numbers) == 1 and max(numbers) <= 25
    assert all(numbers[n] >= numbers[n + 1] for n in range(1, 25))
    single = (numbers[1] - numbers[2]) / numbers[1]
    assert 0.15 < single < 0.5


def test_some_purchases_carry_a_coupon(run300: list[dict[str, Any]]) -> None:
    from microseg.engine.tools.simulator.world import COUPONS, THEME_COUPONS

    codes = Counter(ev["props"].get("coupon") for ev in run300 if ev["type"] == "purchase")
    used = sum(n for code, n in codes.items() if code is not None)
    assert 0.03 * sum(codes.values()) < used < 0.5 * sum(codes.values())
    assert set(codes) - {None} <= set(COUPONS) | set(THEME_COUPONS.values())
    assert set(codes) & set(COUPONS) and set(codes) & set(THEME_COUPONS.values())


def test_some_customers_browse_for_days_before_their_account() -> None:
    """Prospects: a share of customers visit without an account first (the starter ``stage_prospect``)."""
    who, counts, events = _per_customer(400, 60, 2)
    first_seen: dict[str, float] = {}
    signed_up: dict[str, float] = {}
    for ev in events:
        first_seen.setdefault(ev["customer_id"], _t(ev))
        if ev["type"] == "account_created":
            signed_up.setdefault(ev["customer_id"], _t(ev))
    later = [cid for cid, t in signed_up.items() if t - first_seen[cid] > 86_400]
    never = [cid for cid in first_seen if cid not in signed_up and counts[cid]["purchase"] == 0]
    assert later and never
    assert sum(who[cid] == "new_browser" for cid in later + never) > len(later + never) / 2
    assert all(who[cid] != "lapsing_high_value" for cid in later + never)
    for cid in later:
        assert counts[cid]["campaign_delivered"] == 0 or counts[cid]["consent_changed"] > 0


def test_activity_follows_the_local_daily_rhythm(run300: list[dict[str, Any]]) -> None:
    hours = Counter(datetime.fromisoformat(ev["ts"]).hour for ev in run300 if ev["type"] == "session_started")
    night = sum(hours[h] for h in range(0, 6))
    evening = sum(hours[h] for h in range(18, 24))
    assert evening > 4 * night


def _per_customer(customers: int, days: int, seed: int) -> tuple[dict[str, str], dict[str, Counter[str]], list[dict[str, Any]]]:
    who = personas_by_customer(customers, days, seed, START)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    events = list(simulate(customers, days, seed, START))
    for ev in events:
        counts[ev["customer_id"]][ev["type"]] += 1
    return who, counts, events


def _mean(who: dict[str, str], counts: dict[str, Counter[str]], persona: str, kind: str) -> float:
    members = [cid for cid, p in who.items() if p == persona]
    return sum(counts[cid][kind] for cid in members) / len(members)


def test_personas_behave_distinguishably() -> None:
    who, counts, events = _per_customer(800, 90, 3)
    assert _mean(who, counts, "loyal_regular", "purchase") > 5 * _mean(who, counts, "new_browser", "purchase")
    assert _mean(who, counts, "unhappy_detractor", "support_contact") > 4 * _mean(who, counts, "loyal_regular", "support_contact")
    assert _mean(who, counts, "cart_abandoner", "checkout_started") > 4 * _mean(who, counts, "cart_abandoner", "purchase")
    assert _mean(who, counts, "bargain_hunter", "campaign_converted") > 3 * _mean(who, counts, "new_browser", "campaign_converted")
    nps: dict[str, list[int]] = defaultdict(list)
    last_active: dict[str, float] = {}
    for ev in events:
        if ev["type"] == "survey_answered" and ev["props"]["kind"] == "nps":
            nps[who[ev["customer_id"]]].append(ev["props"]["score"])
        if ev["type"] != "campaign_delivered":
            last_active[ev["customer_id"]] = _t(ev)
    assert max(nps["unhappy_detractor"]) <= 6 and min(nps["loyal_regular"]) >= 9
    end = (START + timedelta(days=90)).timestamp()
    lapsers = [cid for cid, p in who.items() if p == "lapsing_high_value"]
    quiet = sum(end - last_active[cid] > 30 * 86_400 for cid in lapsers)
    assert quiet >= 0.6 * len(lapsers)


def test_persona_weights_select_the_mix() -> None:
    who = personas_by_customer(200, 30, 5, START, {"loyal_regular": 1.0})
    assert set(who.values()) == {"loyal_regular"}
    assert parse_persona_weights("loyal_regular=2, new_browser=1") == {"loyal_regular": 2.0, "new_browser": 1.0}
    with pytest.raises(ConfigError):
        parse_persona_weights("nobody=1")
    with pytest.raises(ConfigError):
        list(simulate(10, 5, 1, START, {p.name: 0.0 for p in PERSONAS}))


def test_schema_validator_accepts_every_simulated_event() -> None:
    events = pytest.importorskip("microseg.schemas.events")
    for line in simulate_lines(150, 45, 9, START):
        events.decode_event(line.rstrip(b"\n"))


def test_injected_bad_lines_are_extra_and_invalid() -> None:
    good = list(simulate_lines(40, 10, 4, START))
    mixed = list(simulate_lines(40, 10, 4, START, inject_bad=0.2))
    assert [line for line in mixed if line in set(good)] == good
    bad = [line for line in mixed if line not in set(good)]
    assert 0.1 * len(good) < len(bad) < 0.3 * len(good)
    schema = pytest.importorskip("microseg.schemas.events")
    for line in bad:
        with pytest.raises(schema.InvalidEvent):
            schema.decode_event(line.rstrip(b"\n"))


@settings(max_examples=15, deadline=None)
@given(customers=st.integers(0, 25), days=st.integers(1, 20), seed=st.integers(0, 2**32))
def test_any_small_run_is_ordered_and_unique(customers: int, days: int, seed: int) -> None:
    events = list(simulate(customers, days, seed, START))
    times = [_t(ev) for ev in events]
    assert times == sorted(times)
    assert len({ev["event_id"] for ev in events}) == len(events)


def test_live_starts_with_history_then_follows_the_clock() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    stream = live(50, rate=20.0, seed=3, clock=lambda: now, history_days=7)
    pairs = [next(stream) for _ in range(6000)]
    history = [ev for due, ev in pairs if due == now and _t(ev) < now.timestamp()]
    fresh = [(due, ev) for due, ev in pairs if _t(ev) >= now.timestamp()]
    assert len(history) > 500 and len(fresh) > 100
    assert all(_t(ev) == pytest.approx(due.timestamp(), abs=0.001) for due, ev in fresh)
    gaps = [b[0].timestamp() - a[0].timestamp() for a, b in zip(fresh, fresh[1:])]
    assert all(g == pytest.approx(0.05, abs=1e-6) for g in gaps)
    assert all(ev["event_id"].startswith(f"e-3-{int(now.timestamp())}-") for _, ev in pairs)
    again = live(50, rate=20.0, seed=3, clock=lambda: now, history_days=7)
    assert [next(again) for _ in range(6000)] == pairs


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(simulate_command)
    return app


def test_cli_writes_a_jsonl_file(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(_app(), ["--customers", "20", "--days", "5", "--seed", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_bytes().splitlines(keepends=True)
    assert lines == list(simulate_lines(20, 5, 2, START))


def test_to_topic_without_a_broker_says_how_to_configure_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MICROSEG_BROKER", raising=False)
    result = CliRunner().invoke(_app(), ["--customers", "2", "--days", "1", "--to-topic"])
    assert result.exit_code == 2
    assert "no broker configured" in result.output


def test_to_topic_and_out_are_exclusive(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["--customers", "2", "--days", "1", "--to-topic", "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 2
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.broker
def test_to_topic_sends_the_lines_keyed_by_customer(broker: str, unique_topics: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``--to-topic`` sends exactly the lines ``--out`` would write, as ``microseg produce`` sends a file:
    keyed by customer_id (malformed lines without one go unkeyed), to the configured input topic."""
    from kafka import KafkaConsumer

    from microseg.engine.kafka.broker import ensure_topics
    from microseg.engine.settings import load_settings

    for name, value in unique_topics.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MICROSEG_BROKER", raising=False)
    settings = load_settings(broker=f"kafka://{broker}")
    ensure_topics(broker, settings)
    args = ["--customers", "30", "--days", "4", "--seed", "5", "--inject-bad", "0.05"]
    result = CliRunner().invoke(_app(), [*args, "--to-topic", "--broker", f"kafka://{broker}"])
    assert result.exit_code == 0, result.output
    expected = [line.rstrip(b"\n") for line in simulate_lines(30, 4, 5, START, inject_bad=0.05)]
    assert f"sent {len(expected)} events to {settings.input_topic}" in result.output

    consumer = KafkaConsumer(settings.input_topic, bootstrap_servers=broker, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=2000)
    got: list[tuple[bytes | None, bytes, int, int]] = []
    try:
        for _ in range(30):
            got.extend((m.key, m.value, m.partition, m.offset) for m in consumer)
            if len(got) >= len(expected):
                break
    finally:
        consumer.close()
    assert sorted(value for _, value, _, _ in got) == sorted(expected)
    for key, value, _, _ in got:
        try:
            customer = orjson.loads(value).get("customer_id")
        except (orjson.JSONDecodeError, AttributeError):
            customer = None
        assert key == (customer.encode() if isinstance(customer, str) and customer else None)
    per_customer: dict[bytes, list[bytes]] = defaultdict(list)
    for key, value, _, _ in sorted(got, key=lambda g: (g[2], g[3])):
        if key is not None:
            per_customer[key].append(value)
    for key, values in per_customer.items():
        assert values == [line for line in expected if line in set(values)], f"order of {key!r} changed"
