"""The worker's runtime without a broker: memory store, memory sink, a fake clock.

Flush order, ticks, rebalance, rule sweeps and erasure requests, in milliseconds; the same
``Runtime`` runs on RocksDB with Kafka in ``test_worker.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from microseg.engine.settings import Settings
from microseg.engine.state import MemoryStore
from microseg.engine.worker.delivery import MemorySink
from microseg.engine.worker.runtime import Runtime
from microseg.segments.pipeline import Record
from microseg.segments.testing import event_bytes, load_rules_text, parse_ts

RULES = """
version: 1
segments:
  - id: quiet
    when: days_since_last_activity > 2
  - id: buyer
    when: purchases_total >= 1
"""

DAY = 86_400.0
T0 = parse_ts("2026-03-01T10:00:00Z")
PARTITIONS = 4


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class RecordingStore(MemoryStore):
    """A memory store that logs flushes into a shared journal."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self.journal = journal

    async def flush(self) -> None:
        self.journal.append("flush")


class RecordingSink(MemorySink):
    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self.journal = journal

    async def deliver(self, batch: Any) -> None:
        await super().deliver(batch)
        self.journal.append(f"deliver {len(batch)}")


def partition_of(customer_id: str) -> int:
    return DefaultPartitioner()(customer_id.encode(), list(range(PARTITIONS)), [])


class Feed:
    """Input records as Kafka would number them: per partition, consecutive offsets."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = {}

    def records(self, events: Iterable[tuple[str, str, str, dict[str, Any]]]) -> list[Record]:
        out = []
        for customer_id, type_, ts, props in events:
            partition = partition_of(customer_id)
            offset = self.offsets.get(partition, 0)
            self.offsets[partition] = offset + 1
            out.append(Record(partition, offset, customer_id.encode(), event_bytes(customer_id, type_, ts, **props)))
        return out


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(_wrap(coro))


async def _wrap(coro: Awaitable[Any]) -> Any:
    return await coro


def runtime(journal: list[str] | None = None, clock: Callable[[], float] | None = None, rules: str = RULES) -> Runtime:
    journal = [] if journal is None else journal
    settings = Settings(partitions=PARTITIONS)
    return Runtime(settings, RecordingStore(journal), RecordingSink(journal), load_rules_text(rules), None, clock=clock or Clock(T0))


async def assign_all(rt: Runtime) -> None:
    await rt.on_assigned(range(PARTITIONS))
    await rt.prepare(range(PARTITIONS))


def test_outputs_are_delivered_before_state_is_flushed_and_offsets_committed() -> None:
    journal: list[str] = []
    rt = runtime(journal)
    records = Feed().records([("c1", "purchase", "2026-03-01T10:00:00Z", {"order_id": "o1", "amount": 12})])

    async def commit(offsets: Mapping[int, int]) -> None:
        journal.append(f"commit {dict(offsets)}")

    async def go() -> None:
        await assign_all(rt)
        journal.clear()
        await rt.handle(records, commit=commit)

    run(go())
    assert journal == ["deliver 1", "flush", f"commit {{{records[0].partition}: 1}}"]
    assert [c["segment"] for c in rt.sink.changes] == ["buyer"]  # type: ignore[attr-defined]


def test_a_tick_fires_time_based_changes_at_their_instant() -> None:
    clock = Clock(T0)
    rt = runtime(clock=clock)
    records = Feed().records([("c1", "session_started", "2026-03-01T10:00:00Z", {})])

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(records)
        clock.t = T0 + 2 * DAY  # not yet: the rule is strict (> 2 days)
        assert not (await rt.tick()).changes
        clock.t = T0 + 5 * DAY
        await rt.tick()

    run(go())
    quiet = [c for c in rt.sink.changes if c["segment"] == "quiet"]  # type: ignore[attr-defined]
    assert len(quiet) == 1 and quiet[0]["cause"] == "tick" and quiet[0]["change"] == "entered"
    # entered at the first whole-day instant after two days, not when the clock happened to tick
    assert parse_ts(quiet[0]["at"]) < T0 + 5 * DAY


def test_a_redelivered_batch_changes_nothing() -> None:
    rt = runtime()
    feed = Feed()
    first = feed.records([("c1", "purchase", "2026-03-01T10:00:00Z", {"order_id": "o1", "amount": 5}), ("c2", "session_started", "2026-03-01T10:01:00Z", {})])

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(first)
        out = await rt.handle(first)  # the consumer re-reads what was not committed
        assert not out.changes and out.duplicates == 2
        assert rt.metrics.registry.get_sample_value("microseg_events_duplicate_total") == 2

    run(go())
    assert len(rt.sink.changes) == 1  # type: ignore[attr-defined]


def test_revoked_partitions_are_dropped_and_recovered_with_their_wake_ups() -> None:
    clock = Clock(T0)
    rt = runtime(clock=clock)
    records = Feed().records([("c1", "session_started", "2026-03-01T10:00:00Z", {})])
    partition = records[0].partition

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(records)
        assert rt.tasks.wakes.pending(partition) == 1
        await rt.on_revoked([partition])
        assert partition not in rt.ready and rt.tasks.wakes.pending(partition) == 0
        clock.t = T0 + 5 * DAY
        assert not (await rt.tick()).changes  # not ours any more
        await rt.on_assigned([partition])
        await rt.prepare([partition])  # recovered from the store: the wake-up is back
        assert (await rt.tick()).changes

    run(go())
    assert rt.segment_populations()["quiet"] == 1


def test_a_rule_change_sweeps_stored_customers_with_rules_cause() -> None:
    rt = runtime()
    records = Feed().records([(f"c{i}", "purchase", "2026-03-01T10:00:00Z", {"order_id": f"o{i}", "amount": 30 * i}) for i in range(1, 6)])
    newer = load_rules_text("version: 1\nsegments:\n  - id: big\n    when: spend_total >= 90\n")

    async def go() -> int:
        await assign_all(rt)
        await rt.handle(records)
        return await rt.apply_rules(newer)

    assert run(go()) == 5
    big = [c for c in rt.sink.changes if c["segment"] == "big"]  # type: ignore[attr-defined]
    assert sorted(c["customer_id"] for c in big) == ["c3", "c4", "c5"]
    assert {c["cause"] for c in big} == {f"rules:{newer.version}"}
    exits = [c for c in rt.sink.changes if c["change"] == "exited"]  # type: ignore[attr-defined]
    assert sorted(c["customer_id"] for c in exits) == [f"c{i}" for i in range(1, 6)]  # 'buyer' is gone


def test_bad_records_are_dead_letters_and_the_batch_goes_on() -> None:
    rt = runtime()
    good = Feed().records([("c1", "purchase", "2026-03-01T10:00:00Z", {"order_id": "o1", "amount": 5})])
    bad = Record(good[0].partition, 99, b"c1", b"{not json")

    async def go() -> None:
        await assign_all(rt)
        await rt.handle([bad, *good])

    run(go())
    sink: MemorySink = rt.sink  # type: ignore[assignment]
    assert len(sink.dead_letters) == 1 and sink.dead_letters[0]["offset"] == 99
    assert [c["segment"] for c in sink.changes] == ["buyer"]
    assert rt.metrics.registry.get_sample_value("microseg_events_rejected_total", {"reason": "not valid JSON (or not UTF-8)"}) == 1


def test_an_erasure_request_goes_to_the_input_topic_as_an_event() -> None:
    rt = runtime()
    event_id = run(rt.request_erasure("c9"))
    sink: MemorySink = rt.sink  # type: ignore[assignment]
    assert sink.events == [("c9", {"event_id": event_id, "customer_id": "c9", "type": "erasure_requested", "ts": "2026-03-01T10:00:00.000Z", "props": {}})]


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_batch_boundaries_do_not_change_the_outputs(batch: int) -> None:
    events = []
    for day in range(6):
        for i in range(5):
            events.append((f"c{i}", "session_started" if (i + day) % 3 else "purchase", f"2026-03-0{day + 1}T1{i}:00:00Z", {} if (i + day) % 3 else {"order_id": f"o{i}-{day}", "amount": 10 + i}))
    records = Feed().records(events)
    whole = runtime()
    split = runtime(rules=RULES)

    async def go() -> None:
        await assign_all(whole)
        await assign_all(split)
        await whole.handle(records)
        for start in range(0, len(records), batch):
            await split.handle(records[start : start + batch])

    run(go())
    key = lambda c: c["change_id"]  # noqa: E731
    assert sorted(whole.sink.changes, key=key) == sorted(split.sink.changes, key=key)  # type: ignore[attr-defined]
    assert whole.sink.changes  # type: ignore[attr-defined]


def test_a_recreated_input_topic_is_read_from_its_start_not_skipped_by_old_offsets() -> None:
    store = MemoryStore()
    sink = MemorySink()
    settings = Settings(partitions=PARTITIONS)
    rules = load_rules_text(RULES)
    old_topic = Feed().records([("c1", "session_started", "2026-03-01T10:00:00Z", {})] * 1 + [("c1", "session_started", "2026-03-01T11:00:00Z", {})])

    def worker(topic_id: str) -> Runtime:
        rt = Runtime(settings, store, sink, rules, None, clock=Clock(T0))
        rt.tasks.input_topic_id = topic_id
        return rt

    async def go() -> None:
        first = worker("topic-A")
        await assign_all(first)
        await first.handle(old_topic)
        again = worker("topic-A")  # a restart on the same topic: its offsets still count
        await assign_all(again)
        assert (await again.handle(old_topic[:1])).duplicates == 1
        recreated = worker("topic-B")  # deleted and created again: offsets start at 0 for other events
        await assign_all(recreated)
        new_topic = Feed().records([("c1", "purchase", "2026-03-02T10:00:00Z", {"order_id": "o1", "amount": 3})])
        out = await recreated.handle(new_topic)
        assert out.duplicates == 0 and [c["segment"] for c in out.changes] == ["buyer"]

    run(go())


def test_explain_is_as_of_the_processing_clock_on_a_copy() -> None:
    """Explain advances a copy of the stored state to the clock's now with the core (the wake-ups a
    tick would fire): the values and segments are now's, nothing is stored or emitted."""
    from microseg.segments.state import decode
    from microseg.segments.view import iso

    clock = Clock(T0)
    rt = runtime(clock=clock)

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(Feed().records([("c1", "session_started", "2026-03-01T10:00:00Z", {})]))

    run(go())
    clock.t = T0 + 10 * DAY  # no tick has run since
    found = rt.explain("c1")
    assert found is not None
    assert found["as_of"] == iso(T0 + 10 * DAY) and found["evaluated_at"] == iso(T0)
    assert found["dna"]["days_since_last_activity"] == 10
    assert found["segments"] == ["quiet"] and {"id": "quiet", "in": True} == {k: w[k] for w in found["why"] if w["id"] == "quiet" for k in ("id", "in")}
    stored = decode(rt.store.get_many(partition_of("c1"), ["c1"])["c1"])
    assert stored.evaluated_at == T0 and "quiet" not in stored.segments  # nothing stored
    assert not [c for c in rt.sink.changes if c["segment"] == "quiet"]  # type: ignore[attr-defined]  # nothing emitted
    run(rt.tick())  # what the engine then does: the same answer
    ticked = rt.explain("c1")
    assert ticked is not None
    assert (ticked["segments"], ticked["dna"], ticked["next_wake"], ticked["as_of"]) == (found["segments"], found["dna"], found["next_wake"], found["as_of"])
    assert ticked["evaluated_at"] != found["evaluated_at"]


def test_explain_without_ticks_is_as_of_the_last_event() -> None:
    """MICROSEG_TICKS=false: only events move customers, so explain does not let time run on."""
    from microseg.segments.view import iso

    clock = Clock(T0)
    rt = Runtime(Settings(partitions=PARTITIONS, ticks=False), RecordingStore([]), RecordingSink([]), load_rules_text(RULES), None, clock=clock)

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(Feed().records([("c1", "session_started", "2026-03-01T10:00:00Z", {})]))

    run(go())
    clock.t = T0 + 10 * DAY
    found = rt.explain("c1")
    assert found is not None and found["as_of"] == found["evaluated_at"] == iso(T0)
    assert found["dna"]["days_since_last_activity"] == 0 and found["segments"] == []
