"""The shared posterior end to end (issue 16 item 6): a worker on the embedded broker counts its
decisions and conversions, publishes the totals, cuts a snapshot, decides later customers from it,
and ``microseg replay --posteriors topic`` picks the same variant and version for every decision;
a restart keeps the totals. Worker subprocess, real broker, RocksDB."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from microseg.engine.settings import Settings
from microseg.segments.view import iso

from tests.conftest import consume, send_events

pytestmark = [pytest.mark.broker]

RULES = """
version: 1
segments:
  - id: buyer
    when: purchases_total >= 1
messages:
  - id: thanks
    segments: [buyer]
    channel: email
    priority: 1
    cooldown: 1d
    variants: [{id: a}, {id: b}]
contact_policy:
  consent: opt_out
"""


def _settings(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in env.items() if k != "MICROSEG_RULES_DIR"})


def _purchases(first: int, count: int, ts: float) -> list[dict[str, Any]]:
    return [
        {"event_id": f"p{i}", "customer_id": f"c{i}", "type": "purchase", "ts": iso(ts), "props": {"order_id": f"o{i}", "amount": 20.0}}
        for i in range(first, first + count)
    ]


def test_workers_share_the_posterior_and_replay_reads_the_same_snapshots(broker: str, workers: Any, unique_topics: dict[str, str], tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "thanks.yaml").write_text(RULES)
    env = {
        **unique_topics,
        "MICROSEG_RULES_DIR": str(rules),
        "MICROSEG_TICKS": "false",
        "MICROSEG_POSTERIOR_INTERVAL_S": "1",
        "MICROSEG_POSTERIOR_PUBLISH_S": "0.5",
        "MICROSEG_POSTERIOR_LEAD_S": "2",
    }
    settings = _settings(env)
    data_dir = tmp_path / "worker-data"
    worker = workers(env, data_dir=data_dir)
    worker.wait_assigned()

    now = time.time()
    first = _purchases(0, 30, now - 120)
    send_events(broker, settings.input_topic, first)
    decided = consume(broker, settings.messages_topic, until=lambda got: len(got) >= 30)
    assert {d["posterior_version"] for d in decided} == {"empty"}, "no snapshot yet: the prior"
    by_variant = Counter(d["variant"] for d in decided)
    converted = [d for d in decided if d["variant"] == "b"][:8]
    conversions = [
        {"event_id": f"v{d['customer_id']}", "customer_id": d["customer_id"], "type": "campaign_converted", "ts": iso(now - 60),
         "props": {"message_id": "thanks", "variant": "b"}}
        for d in converted
    ]
    send_events(broker, settings.input_topic, conversions)

    def complete(got: list[dict[str, Any]]) -> bool:
        if not got:
            return False
        arms = {(a["message"], a["variant"]): (a["decisions"], a["conversions"]) for a in got[-1]["arms"]}
        return arms.get(("thanks", "b"), (0, 0))[1] == len(converted)

    snapshots = consume(broker, settings.posteriors_topic, until=complete, timeout=60)
    snapshot = snapshots[-1]
    arms = {(a["message"], a["variant"]): (a["decisions"], a["conversions"]) for a in snapshot["arms"]}
    assert arms == {("thanks", v): (by_variant[v], len(converted) if v == "b" else 0) for v in by_variant}
    assert snapshot["effective_from"] >= snapshot["cut_at"] + 1

    time.sleep(max(0.0, snapshot["effective_from"] + 1 - time.time()))
    later_t = time.time()
    second = _purchases(30, 40, later_t)
    send_events(broker, settings.input_topic, second)
    decided = consume(broker, settings.messages_topic, until=lambda got: len(got) >= 70)
    later = [d for d in decided if int(d["customer_id"][1:]) >= 30]
    assert all(d["posterior_version"] not in (None, "empty") for d in later), "decided from a published snapshot"
    assert Counter(d["variant"] for d in later)["b"] > 20, "b converted 8 times, a never: b is favoured"

    # the totals survive a restart: the counts topic gets the same absolute totals again
    worker.stop()
    again = workers(env, data_dir=data_dir)
    again.wait_assigned()
    ready = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ready = again.get("/health/ready")
        except OSError:
            ready = None
        if ready and ready.get("status") == "ready":
            break
        time.sleep(0.3)
    counts = consume(broker, settings.posterior_counts_topic, until=lambda got: sum(r["decisions"] for r in got) >= 70)
    latest: dict[tuple[int, str, str], dict[str, Any]] = {}
    for record in counts:
        latest[(record["partition"], record["message"], record["variant"])] = record
    assert sum(r["decisions"] for r in latest.values()) == 70 and sum(r["conversions"] for r in latest.values()) == len(converted)

    # replay reads the same snapshots from the topic and chooses the same variants
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in first + conversions + second))
    out = tmp_path / "out.jsonl"
    replayed = subprocess.run(
        [sys.executable, "-m", "microseg", "replay", str(events), "--rules", str(rules), "--out", str(out), "--posteriors", "topic", "--json"],
        env={**os.environ, **env, "MICROSEG_BROKER": broker}, capture_output=True, timeout=180,
    )
    assert replayed.returncode == 0, replayed.stderr.decode()[-2000:]
    assert orjson.loads(replayed.stdout.decode().strip().splitlines()[-1])["posteriors"] >= 1
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    offline = {r["value"]["decision_id"]: (r["value"]["variant"], r["value"]["posterior_version"]) for r in lines if r["topic"] == "next-best-messages"}
    online = {d["decision_id"]: (d["variant"], d["posterior_version"]) for d in decided}
    assert online == offline
