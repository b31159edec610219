"""The message variants' shared posterior in the worker (engine/worker/posteriors.py): counts kept
with the state they count (exact under redelivery and restarts), absolute totals that cannot
inflate, snapshots cut and read, and the same variants in the runtime as in replay."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from microseg.engine.settings import Settings
from microseg.engine.state import MemoryStore
from microseg.engine.tools.replay import replay
from microseg.engine.tools.sinks import ListSink
from microseg.engine.worker.delivery import MemorySink
from microseg.engine.tools.posterior_history import load_history
from microseg.engine.worker.posteriors import COUNTS_KEY, Posteriors, attach, counts_record
from microseg.engine.worker.runtime import Runtime
from microseg.errors import MicrosegError
from microseg.segments.bandit import PosteriorHistory, PosteriorSnapshot, snapshot_record, snapshot_version
from microseg.segments.pipeline import Record
from microseg.segments.step import Core
from microseg.segments.testing import event_bytes, load_rules_text, parse_ts

PARTITIONS = 4
T0 = parse_ts("2026-03-01T10:00:00Z")
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
    variants: [{id: a, subject: "Thank you"}, {id: b, subject: "You're the best"}]
  - id: plain
    segments: [buyer]
    channel: sms
    priority: 0
    cooldown: 1d
contact_policy:
  consent: opt_out
"""


def _partition(customer_id: str) -> int:
    return DefaultPartitioner()(customer_id.encode(), list(range(PARTITIONS)), [])


class _Feed:
    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}

    def records(self, events: list[tuple[str, str, str, dict[str, Any]]]) -> list[Record]:
        out = []
        for customer_id, kind, ts, props in events:
            p = _partition(customer_id)
            offset = self.offsets.get(p, 0)
            self.offsets[p] = offset + 1
            out.append(Record(p, offset, customer_id.encode(), event_bytes(customer_id, kind, ts, event_id=f"{customer_id}-{kind}-{ts}", **props)))
        return out


def _runtime(store: MemoryStore, history: PosteriorHistory | None = None) -> Runtime:
    rt = Runtime(Settings(partitions=PARTITIONS), store, MemorySink(), load_rules_text(RULES), None, clock=lambda: T0)
    if history is not None:
        for effective_from, snapshot in history:
            rt.posteriors.history.add(effective_from, snapshot)
    return rt


def _events(customers: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    events = []
    for i in range(customers):
        events.append((f"c{i}", "purchase", "2026-03-01T10:00:00Z", {"order_id": f"o{i}", "amount": 10}))
    return events


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _ready(rt: Runtime) -> None:
    await rt.on_assigned(range(PARTITIONS))
    await rt.prepare(range(PARTITIONS))


def _stored(store: MemoryStore) -> Counter[tuple[str, str, str]]:
    total: Counter[tuple[str, str, str]] = Counter()
    for p in range(PARTITIONS):
        raw = store.get_many(p, [COUNTS_KEY]).get(COUNTS_KEY)
        for key, (decisions, conversions) in (orjson.loads(raw) if raw else {}).items():
            message, _, variant = key.partition("\x1f")
            total[(message, variant, "decisions")] += decisions
            total[(message, variant, "conversions")] += conversions
    return total


def test_counts_are_exact_under_redelivery_and_restart():
    store = MemoryStore()
    feed = _Feed()
    decided = feed.records(_events(40))

    async def first() -> Runtime:
        rt = _runtime(store)
        await _ready(rt)
        await rt.handle(decided)
        return rt

    rt = _run(first())
    sent = [m for m in rt.sink.messages if m["message"] == "thanks"]  # type: ignore[attr-defined]
    assert len(sent) == 40 and {m["variant"] for m in sent} == {"a", "b"}
    assert {m["posterior_version"] for m in sent} == {"empty"}
    by_variant = Counter(m["variant"] for m in sent)
    converted = [m for m in sent[:12]]
    conversions = feed.records(
        [(m["customer_id"], "campaign_converted", "2026-03-01T12:00:00Z", {"message_id": "thanks", "variant": m["variant"]}) for m in converted]
        + [("c39", "campaign_converted", "2026-03-01T12:30:00Z", {"message_id": "thanks"})]  # no variant: no arm
        + [("c37", "campaign_converted", "2026-03-01T12:30:00Z", {"message_id": "thanks", "variant": "zz"})]  # not one of its variants
        + [("c38", "campaign_converted", "2026-03-01T12:00:00Z", {"message_id": "other-campaign", "variant": "x"})]
    )
    conv_by_variant = Counter(m["variant"] for m in converted)

    async def more() -> Runtime:
        again = _runtime(store)  # a restart: totals come back from the store
        await _ready(again)
        await again.handle(conversions)
        await again.handle(conversions)  # redelivered: duplicates, not counted again
        await again.handle(decided)  # the first batch redelivered too
        return again

    again = _run(more())
    expected = Counter()
    for variant in "ab":
        expected[("thanks", variant, "decisions")] = by_variant[variant]
        expected[("thanks", variant, "conversions")] = conv_by_variant[variant]
    assert _stored(store) == +expected
    assert again.posteriors.unattributed == 2
    assert again.metrics.conversions_unattributed._value.get() == 2  # type: ignore[attr-defined]
    published = [orjson.loads(v) for _, v in again.posteriors.to_publish()]
    assert sum(r["decisions"] for r in published if r["message"] == "thanks") == 40  # every partition's absolute totals
    assert {k.split(b"|")[0] for k, _ in (counts_record(r["partition"], (r["message"], r["variant"]), [0, 0]) for r in published)} <= {b"0", b"1", b"2", b"3"}
    assert again.posteriors.to_publish() == []  # nothing changed since


def test_shared_totals_keep_the_greatest_seen_and_cut_sums_partitions():
    posteriors = Posteriors(lead_s=30)
    old = counts_record(0, ("m", "a"), [10, 1])[1]
    new = counts_record(0, ("m", "a"), [12, 2])[1]
    other = counts_record(1, ("m", "a"), [5, 1])[1]
    assert posteriors.merge([new, old, other, new, b"not json", None]) == 1  # reordered, repeated, one bad
    assert posteriors.arms() == {("m", "a"): (17, 3)}
    record = posteriors.cut(1_000.4)
    found = orjson.loads(record)
    assert found["effective_from"] == 1_030 and found["arms"] == [{"message": "m", "variant": "a", "decisions": 17, "conversions": 3}]
    assert posteriors.apply([record, record], newest_event_t=900.0) == [found["version"]]  # read twice, kept once
    assert posteriors.cut(1_060.0) is None  # nothing new since the last snapshot
    assert posteriors.late == 0
    posteriors.merge([counts_record(1, ("m", "b"), [1, 0])[1]])
    late = posteriors.cut(2_000.0)
    posteriors.apply([late], newest_event_t=2_100.0)  # this worker already decided past its effective time
    assert posteriors.late == 1 and len(posteriors.history) == 2


def _history(tmp_path: Path) -> tuple[PosteriorHistory, Path]:
    arms = {("thanks", "a"): (500, 10), ("thanks", "b"): (500, 60)}
    snapshot = PosteriorSnapshot(snapshot_version(T0 - 60, arms), MappingProxyType(arms))
    early = PosteriorSnapshot(snapshot_version(T0 - 3600, {}), MappingProxyType({}))
    path = tmp_path / "posteriors.jsonl"
    path.write_bytes(
        orjson.dumps(snapshot_record(T0 - 60, snapshot, cut_at=T0 - 90)) + b"\n"
        + orjson.dumps({"topic": "microseg-posteriors", "key": "posterior", "value": snapshot_record(T0 - 3600, early, cut_at=T0 - 3630)}) + b"\n"
    )
    return load_history(str(path)), path


def test_the_runtime_and_replay_choose_the_same_variants_from_the_same_snapshots(tmp_path):
    history, path = _history(tmp_path)
    assert len(history) == 2 and history.at(T0).arms[("thanks", "b")] == (500, 60)
    events = _events(60)
    store = MemoryStore()

    async def go() -> Runtime:
        rt = _runtime(store, history)
        await _ready(rt)
        await rt.handle(_Feed().records(events))
        return rt

    rt = _run(go())
    core = Core(load_rules_text(RULES), None)
    attach(core, load_history(str(path)))
    sink = ListSink()
    lines = [event_bytes(c, k, ts, event_id=f"{c}-{k}-{ts}", **p) for c, k, ts, p in events]
    replay(lines, core, sink, now=T0)
    worker = {m["decision_id"]: (m["variant"], m["posterior_version"]) for m in rt.sink.messages if m["message"] == "thanks"}  # type: ignore[attr-defined]
    replayed = {m["decision_id"]: (m["variant"], m["posterior_version"]) for m in sink.message_records if m["message"] == "thanks"}
    assert worker == replayed and len(worker) == 60
    assert {v for _, v in worker.values()} == {history.at(T0).version}
    assert Counter(v for v, _ in worker.values())["b"] >= 55  # 12 % vs 2 %: b nearly always


def test_replay_posteriors_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"version": "v", "effective_from": 1, "arms": []}\n{"version": "v2"}\n')
    with pytest.raises(MicrosegError, match=r"bad.jsonl:2: not a posterior snapshot"):
        load_history(str(bad))
    with pytest.raises(MicrosegError, match="no such file"):
        load_history(str(tmp_path / "missing.jsonl"))
