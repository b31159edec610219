"""The uplift report (engine/tools/uplift.py, ``microseg report uplift``): the window, the arms,
Newcombe's interval against known values, and its coverage on simulated campaigns (issue 16 item 8)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from microseg.engine.tools.cli import app
from microseg.engine.tools.uplift import (
    ConversionIndex,
    Exposure,
    newcombe,
    read_decision_lines,
    read_event_lines,
    uplift,
    wilson,
)

DAY = 86_400.0
T0 = 1_780_000_000.0  # 2026-05-28


def _iso(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def test_wilson_and_newcombe_match_newcombe_1998_table_ii():
    # Newcombe (1998), Table II, example (a): 56/70 vs 48/80 -> difference 0.2, method 10: 0.0524 to 0.3339
    d, low, high = newcombe(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    # example (e): 0/10 vs 0/20 -> method 10: -0.1611 to 0.2775
    d, low, high = newcombe(0, 10, 0, 20)
    assert (d, round(low, 4), round(high, 4)) == (0.0, -0.1611, 0.2775)
    assert wilson(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))


@given(st.integers(1, 500), st.integers(1, 500), st.data())
@settings(max_examples=200, deadline=None)
def test_the_interval_holds_the_difference_and_stays_in_range(n1, n2, data):
    k1 = data.draw(st.integers(0, n1))
    k2 = data.draw(st.integers(0, n2))
    d, low, high = newcombe(k1, n1, k2, n2)
    assert -1.0 <= low <= d <= high <= 1.0


def test_conversion_is_an_event_of_the_goal_type_after_the_decision_and_within_the_window():
    index = ConversionIndex()
    index.add("c1", "purchase", T0 + 7 * DAY)  # the window's last instant: counts
    index.add("c2", "purchase", T0)  # at the decision itself: not after it
    index.add("c3", "purchase", T0 + 7 * DAY + 1)  # one second late
    index.add("c4", "page_view", T0 + DAY)  # not the goal
    index.add("c5", "purchase", T0 + DAY, "e1")
    index.add("c5", "purchase", T0 + DAY, "e1")  # a duplicate event id counts once
    assert [index.converted(c, "purchase", T0, 7 * DAY) for c in ("c1", "c2", "c3", "c4", "c5")] == [True, False, False, False, True]
    assert index.events == 5


def test_each_customer_counts_once_per_arm_from_its_first_decision_and_holdouts_have_variants():
    index = ConversionIndex()
    index.add("c1", "purchase", T0 + 8 * DAY)  # within 7d of the re-decision, not of the first decision
    index.add("c2", "purchase", T0 + DAY)
    exposures = [
        Exposure("c1", "m", "a", T0, holdout=False),
        Exposure("c1", "m", "a", T0 + 2 * DAY, holdout=False),
        Exposure("c2", "m", "b", T0, holdout=True),
        Exposure("c3", "m", "a", T0, holdout=True),
    ]
    rows = {(r.message, r.variant): r for r in uplift(exposures, index)}
    assert [(r.treated, r.treated_converted, r.holdout, r.holdout_converted) for r in rows.values()] == [(1, 0, 2, 1), (1, 0, 1, 0), (0, 0, 1, 1)]
    assert list(rows) == [("m", "(all)"), ("m", "a"), ("m", "b")]
    assert rows[("m", "b")].interval is None  # no treated customer on b
    goal = uplift(exposures, index, goals={"m": ("purchase", 9 * DAY)})
    assert goal[0].treated_converted == 1


def _campaign(seed: int, directory: Path, *, customers: int = 3000, base: float = 0.05, lift: float = 0.03, holdout: float = 0.2) -> tuple[Path, Path]:
    """A simulated campaign with a known effect: each customer converts within 7 days with
    probability ``base`` (holdout) or ``base + lift`` (treated); some also buy before the decision
    or after the window, which must not count. Decisions as ``replay --out`` lines."""
    rng = random.Random(seed)
    decisions, events = [], []
    for i in range(customers):
        customer = f"c{seed}-{i}"
        at = T0 + rng.uniform(0, 10 * DAY)
        held = rng.random() < holdout
        variant = rng.choice("ab")
        record = {"decision_id": f"d{i}", "customer_id": customer, "message": "winback", "variant": variant, "at": _iso(at)}
        if held:
            record["holdout"] = "holdout"
        decisions.append({"topic": "message-holdouts" if held else "next-best-messages", "key": customer, "value": record})
        if rng.random() < (base if held else base + lift):
            events.append({"event_id": f"e{i}", "customer_id": customer, "type": "purchase", "ts": _iso(at + rng.uniform(1, 7 * DAY))})
        if rng.random() < 0.3:
            events.append({"event_id": f"x{i}", "customer_id": customer, "type": "purchase", "ts": _iso(at + rng.choice([-1, 1]) * rng.uniform(7 * DAY + 1, 20 * DAY))})
    dec, ev = directory / f"decisions-{seed}.jsonl", directory / f"events-{seed}.jsonl"
    dec.write_bytes(b"\n".join(orjson.dumps(r) for r in decisions) + b"\n")
    ev.write_bytes(b"\n".join(orjson.dumps(r) for r in events) + b"\n")
    return dec, ev


def test_the_95_percent_interval_covers_the_known_effect_in_at_least_18_of_20_campaigns(tmp_path):
    covered = 0
    for seed in range(20):
        dec, ev = _campaign(seed, tmp_path)
        problems: list[str] = []
        rows = uplift(read_decision_lines([dec], problems), read_event_lines([ev], problems))
        assert not problems
        d, low, high = rows[0].interval  # the message over both variants
        covered += low <= 0.03 <= high
    print(f"\nuplift: the 95% interval covers the true +3.00 pp in {covered}/20 seeds")
    assert covered >= 18


def test_report_uplift_prints_the_table_writes_the_png_and_refuses_missing_inputs(tmp_path):
    dec, ev = _campaign(1, tmp_path, customers=800)
    png = tmp_path / "uplift.png"
    done = CliRunner().invoke(app, ["report", "uplift", "--decisions", str(dec), "--events", str(ev), "--png", str(png)])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["message", "variant", "treated", "customers"] and "holdout customers" in lines[0]
    assert [line.split()[:2] for line in lines[1:]] == [["winback", "(all)"], ["winback", "a"], ["winback", "b"]]
    assert "pp" in lines[1] and png.stat().st_size > 5_000
    as_json = CliRunner().invoke(app, ["report", "uplift", "--decisions", str(dec), "--events", str(ev), "--json"])
    row = orjson.loads(as_json.stdout.splitlines()[0])
    assert row["ci95_low"] <= row["difference"] <= row["ci95_high"] and row["attribution_s"] == 7 * 86_400
    missing = CliRunner().invoke(app, ["report", "uplift", "--decisions", str(dec)])
    assert missing.exit_code == 2 and "--events" in missing.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"topic": "segment-changes", "key": "c", "value": {"change_id": "x"}}\nnot json\n')
    none = CliRunner().invoke(app, ["report", "uplift", "--decisions", str(empty), "--events", str(ev)])
    assert none.exit_code == 2 and "no decision records" in none.output


E2E_RULES = """
version: 1
segments:
  - id: buyer
    when: purchases_total >= 1
messages:
  - id: thanks
    segments: [buyer]
    channel: email
    priority: 1
    cooldown: 30d
    holdout: 0.3
    variants: [{id: a}, {id: b}]
    converts_on: checkout_started
    attribution: 2d
contact_policy:
  consent: opt_out
"""


def _e2e_events(customers: int) -> list[dict]:
    rng = random.Random(5)
    events = []
    for i in range(customers):
        events.append({"event_id": f"p{i}", "customer_id": f"c{i}", "type": "purchase", "ts": _iso(T0), "props": {"order_id": f"o{i}", "amount": 20.0}})
        if rng.random() < 0.4:  # the goal event, a day after (inside 2d) or three days after (outside)
            later = T0 + (1 if rng.random() < 0.5 else 3) * DAY
            events.append({"event_id": f"k{i}", "customer_id": f"c{i}", "type": "checkout_started", "ts": _iso(later), "props": {}})
    events.sort(key=lambda e: e["ts"])
    return events


def test_report_over_replay_output_reads_treated_and_holdout_records_and_the_rules_goal(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "thanks.yaml").write_text(E2E_RULES)
    events = tmp_path / "events.jsonl"
    lines = _e2e_events(300)
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in lines))
    out = tmp_path / "out.jsonl"
    done = CliRunner().invoke(app, ["replay", str(events), "--rules", str(rules), "--out", str(out), "--now", _iso(T0 - 60)])
    assert done.exit_code == 0, done.output
    topics = Counter(orjson.loads(line)["topic"] for line in out.read_bytes().splitlines())
    assert topics["message-holdouts"] > 50 and topics["next-best-messages"] > 150
    report = CliRunner().invoke(app, ["report", "uplift", "--decisions", str(out), "--events", str(events), "--rules", str(rules), "--json"])
    assert report.exit_code == 0, report.output
    rows = [orjson.loads(line) for line in report.stdout.splitlines() if line.startswith("{")]
    overall = rows[0]
    assert (overall["message"], overall["variant"]) == ("thanks", "(all)")
    assert overall["treated"] + overall["holdout"] == 300 and overall["holdout"] == topics["message-holdouts"]
    assert (overall["converts_on"], overall["attribution_s"]) == ("checkout_started", 2 * 86_400)
    inside = sum(1 for e in lines if e["type"] == "checkout_started" and e["ts"] == _iso(T0 + DAY))
    assert overall["treated_converted"] + overall["holdout_converted"] == inside  # the 3-day ones are outside 2d
    assert {r["variant"] for r in rows[1:]} == {"a", "b"} and sum(r["holdout"] for r in rows[1:]) == overall["holdout"]


@pytest.mark.broker
def test_report_reads_the_topics(broker, unique_topics, tmp_path, monkeypatch):
    from tests.conftest import send_events

    from microseg.engine.kafka.broker import ensure_topics
    from microseg.engine.settings import Settings

    env = {**unique_topics, "MICROSEG_HOLDOUTS_TOPIC": unique_topics["MICROSEG_MESSAGES_TOPIC"] + "-holdouts", "MICROSEG_BROKER": broker, "MICROSEG_FIX_END_OFFSETS": "true"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    ensure_topics(broker, settings)
    dec, ev = _campaign(2, tmp_path, customers=400)
    decisions = [orjson.loads(line) for line in dec.read_bytes().splitlines()]
    for topic in ("next-best-messages", "message-holdouts"):
        target = settings.messages_topic if topic == "next-best-messages" else settings.holdouts_topic
        send_events(broker, target, [d["value"] for d in decisions if d["topic"] == topic])
    send_events(broker, settings.input_topic, [orjson.loads(line) for line in ev.read_bytes().splitlines()])
    from_topics = CliRunner().invoke(app, ["report", "uplift", "--from-topics", "--json"])
    assert from_topics.exit_code == 0, from_topics.output
    from_files = CliRunner().invoke(app, ["report", "uplift", "--decisions", str(dec), "--events", str(ev), "--json"])
    assert [orjson.loads(l) for l in from_topics.stdout.splitlines()] == [orjson.loads(l) for l in from_files.stdout.splitlines()]
