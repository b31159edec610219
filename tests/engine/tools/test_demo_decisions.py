"""The demo's stream of history then live events, as the worker gets it: no next-best-message for
the past (issue 16). The history (the customers' past fortnight, all due at once) is decided against
the worker's wall clock, so only decisions still within their validity are published, at that
clock or later; live events are decided at their own time."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timezone
from pathlib import Path

import orjson
from aiokafka.partitioner import DefaultPartitioner

from microseg.engine.settings import Settings
from microseg.engine.startup import load_ruleset
from microseg.engine.state import MemoryStore
from microseg.engine.tools.replay import replay
from microseg.engine.tools.simulator import live
from microseg.engine.tools.sinks import ListSink
from microseg.engine.worker.delivery import MemorySink
from microseg.engine.worker.runtime import Runtime
from microseg.segments.decide import REASONS
from microseg.segments.pipeline import Record
from microseg.segments.step import Core
from microseg.segments.view import iso

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def _stream(count: int) -> list[tuple[float, bytes]]:
    events = live(300, 50.0, 3, lambda: NOW, anonymous=False)
    return [(due.timestamp(), orjson.dumps(event)) for due, event in itertools.islice(events, count)]


def test_the_demo_history_publishes_no_send_for_the_past(tmp_path: Path) -> None:
    stream = _stream(40_000)
    start = NOW.timestamp()
    history = [line for due, line in stream if due <= start]
    later = [(due, line) for due, line in stream if due > start]
    assert len(history) > 10_000 and later, "history first, all due at once, then live events"
    settings = Settings(data_dir=str(tmp_path), ticks=False)
    core = Core(load_ruleset(settings), None)
    partitioner = DefaultPartitioner()
    partitions = list(range(settings.partitions))
    offsets: dict[int, int] = {}

    def records(lines: list[bytes]) -> list[Record]:
        found = []
        for line in lines:
            key = orjson.loads(line)["customer_id"].encode()
            partition = partitioner(key, partitions, [])
            found.append(Record(partition, offsets.get(partition, 0), key, line))
            offsets[partition] = offsets.get(partition, 0) + 1
        return found

    clock = [start]
    sink = MemorySink()
    runtime = Runtime(settings, MemoryStore(), sink, core.ruleset, core.model, clock=lambda: clock[0])
    published: list[tuple[float, dict]] = []

    async def go() -> None:
        await runtime.on_assigned(partitions)
        await runtime.prepare(partitions)
        for begin in range(0, len(history), 2_000):
            before = len(sink.messages)
            await runtime.handle(records(history[begin : begin + 2_000]))
            published.extend((clock[0], m) for m in sink.messages[before:])
        for due, line in later:  # live: the wall clock is each event's due time
            clock[0] = due
            before = len(sink.messages)
            await runtime.handle(records([line]))
            published.extend((clock[0], m) for m in sink.messages[before:])

    asyncio.run(go())
    assert published, "decisions still within their validity go out"
    for processed_at, message in published:
        assert message["send_at"] >= iso(processed_at) and message["expires_at"] >= message["send_at"], message
    history_at = [m["at"] for t, m in published if t == start]
    assert history_at and min(history_at) >= iso(start - 7 * 86_400), "nothing older than the longest valid_for"
    assert not {m["decision_id"] for m in sink.messages} & {h["decision_id"] for h in sink.holdouts}

    counted = {
        sample.labels["reason"]: sample.value
        for metric in runtime.metrics.registry.collect()
        if metric.name == "microseg_messages_suppressed"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.value
    }
    assert {"stale", "consent", "cooldown"} <= set(counted), counted
    explained = [runtime.explain(c) for c in ("c-000001", "c-000002", "c-000003", "c-000004", "c-000005")]
    reasons = {h["reason"] for e in explained if e for h in e["held_back"]}
    assert reasons and reasons <= set(REASONS), reasons

    replayed = ListSink()
    stats, _ = replay(history, core, replayed, now=start)  # the documented replay of the same history
    assert stats.suppressed["stale"] > len(replayed.message_records)
    assert all(m["send_at"] >= iso(start) for m in replayed.message_records)
