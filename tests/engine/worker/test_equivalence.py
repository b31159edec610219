"""Three hosts, one pipeline: ``replay``, the ``Runtime`` on the memory store, and a live worker on
the embedded broker with RocksDB give the same records and the same final states for one input,
poison included (a line that is not JSON, an integer the state cannot hold, a repeated event,
and — for the runtime — a redelivered batch)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from microseg.engine.settings import Settings
from microseg.engine.startup import load_predictive_model, load_ruleset
from microseg.engine.state import MemoryStore
from microseg.engine.tools.produce import produce_lines
from microseg.engine.tools.replay import read_lines, replay
from microseg.engine.tools.sinks import ListSink
from microseg.engine.worker.delivery import MemorySink
from microseg.engine.worker.runtime import Runtime
from microseg.segments.pipeline import Record
from microseg.segments.state import ERASED_PREFIX, CustomerState, decode
from microseg.segments.step import Core
from microseg.segments.view import iso

from tests.conftest import consume

pytestmark = [pytest.mark.broker]


def _poisoned(journeys: Path) -> list[bytes]:
    lines = list(read_lines(str(journeys)))
    first = orjson.loads(lines[10])
    big = {
        "event_id": "poison-bigint", "customer_id": first["customer_id"], "type": "profile_updated", "ts": first["ts"],
        "props": {"attributes": {"loyalty_id": 0}},
    }
    poison = [
        b'{"event_id": "poison-json", "customer_id": ',
        orjson.dumps(big).replace(b'"loyalty_id":0', b'"loyalty_id":18446744073709551616'),
    ]
    return lines[:20] + poison + lines[20:40] + [lines[30]] + lines[40:]  # lines[30] twice: an event seen before


def _by(records: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in records}


def _letters(records: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((r["reason"], r["raw"]) for r in records)


def _comparable(state: CustomerState) -> tuple[Any, ...]:
    """Everything but the input offset (Kafka's in the worker, none in replay)."""
    return (state.dna, state.segments, state.code, state.rules_version, state.evaluated_at, state.wake, state.sends, state.last_sent, state.erased, state.held)


def _runtime_run(settings: Settings, core: Core, lines: list[bytes], now: float) -> tuple[MemorySink, dict[str, CustomerState]]:
    partitioner = DefaultPartitioner()
    partitions = list(range(settings.partitions))
    offsets: dict[int, int] = {}
    records = []
    for line in lines:
        try:
            key = orjson.loads(line)["customer_id"].encode()
        except (orjson.JSONDecodeError, KeyError, TypeError):
            key = None
        partition = partitioner(key, partitions, []) if key else 0
        records.append(Record(partition, offsets.get(partition, 0), key, line))
        offsets[partition] = offsets.get(partition, 0) + 1
    store, sink = MemoryStore(), MemorySink()
    runtime = Runtime(settings, store, sink, core.ruleset, core.model, clock=lambda: now)

    async def go() -> None:
        await runtime.on_assigned(partitions)
        await runtime.prepare(partitions)
        for start in range(0, len(records), 300):
            await runtime.handle(records[start : start + 300])
        await runtime.handle(records[600:900])  # redelivered: read again after a crash before the commit

    asyncio.run(go())
    return sink, _profiles(store, partitions)


def _profiles(store: Any, partitions: Any) -> dict[str, Any]:
    """Every stored profile (erased marks included), not the worker's own bookkeeping (member index, counts)."""
    return {c: decode(raw) for p in partitions for c, raw in store.items(p) if not c.startswith("\x00") or c.startswith(ERASED_PREFIX)}


def _stored_key(settings: Settings, customer_id: str, state: Any) -> str:
    """Where the worker stores a customer: an erased one under the keyed hash of its id (replay keeps ids in memory)."""
    from microseg.engine.worker.tasks import PartitionTasks
    from microseg.segments.state import erasure_key

    if state.erased and hasattr(PartitionTasks, "erased_key"):
        return erasure_key(settings.erasure_key_bytes(), customer_id)
    return customer_id


def test_replay_runtime_and_live_worker_agree(broker: str, workers: Any, unique_topics: dict[str, str], sample_journeys: Path) -> None:
    env = {**unique_topics, "MICROSEG_TICKS": "false"}
    settings = Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in env.items()})
    core = Core(load_ruleset(settings), load_predictive_model(settings))
    lines = _poisoned(sample_journeys)
    now = time.time()

    replayed = ListSink()
    stats, replay_states = replay(lines, core, replayed, now=now)
    assert stats.duplicates == 1 and stats.rejected == 2
    assert {r["reason"].split(":")[0] for r in replayed.dead_letters} == {"not valid JSON (or not UTF-8)", "props.attributes"}

    sink, runtime_states = _runtime_run(settings, core, lines, now)
    assert _by(sink.changes, "change_id") == _by(replayed.change_records, "change_id")
    assert _by(sink.messages, "decision_id") == _by(replayed.message_records, "decision_id")
    assert set(_letters(sink.dead_letters)) == set(_letters(replayed.dead_letters))
    assert {c: _comparable(s) for c, s in runtime_states.items()} == {_stored_key(settings, c, s): _comparable(s) for c, s in replay_states.items()}

    worker = workers(env)
    worker.wait_assigned()
    produce_lines(settings, broker, lines)
    changes = consume(broker, settings.changes_topic, until=lambda got: set(_by(replayed.change_records, "change_id")) <= set(_by(got, "change_id")), timeout=180)
    messages = consume(broker, settings.messages_topic, until=lambda got: set(_by(replayed.message_records, "decision_id")) <= set(_by(got, "decision_id")))
    letters = consume(broker, settings.dlq_topic, until=lambda got: len(got) >= 2)
    assert _by(changes, "change_id") == _by(replayed.change_records, "change_id")
    assert _by(messages, "decision_id") == _by(replayed.message_records, "decision_id")
    assert _letters(letters) == _letters(replayed.dead_letters)
    erased = [c for c, s in replay_states.items() if s.erased]
    for customer_id, state in replay_states.items():
        if state.erased:
            continue
        found = worker.get(f"/customers/{customer_id}")
        assert (found["segments"], found["code"], found["as_of"]) == (list(state.segments), state.code, iso(state.evaluated_at)), customer_id
    for customer_id in erased:
        with pytest.raises(urllib.error.HTTPError, match="404"):
            worker.get(f"/customers/{customer_id}")


def test_decisions_agree_between_replay_and_the_runtime_on_the_same_clock(tmp_path: Path) -> None:
    """Next-best-messages, holdout decisions and pending decisions released by wake-ups (cap and
    cooldown expiry, cause ``tick``) are the same records in replay and in the runtime when both
    run on the same processing clock: the events up to ``now``, then time run on three days (the
    runtime's clock tick, replay's ``--until``)."""
    from datetime import datetime, timezone

    from microseg.engine.tools.simulator import simulate

    now = datetime(2026, 6, 30, tzinfo=timezone.utc).timestamp()
    later = now + 3 * 86_400
    start = datetime(2026, 6, 2, tzinfo=timezone.utc)
    lines = [orjson.dumps(e) for e in simulate(150, 28, 5, start) if datetime.fromisoformat(e["ts"]).timestamp() <= now]
    settings = Settings(data_dir=str(tmp_path), ticks=False)
    core = Core(load_ruleset(settings), None)

    replayed = ListSink()
    stats, replay_states = replay(lines, core, replayed, now=now, until=later)
    assert replayed.message_records and replayed.holdout_records, "the starter playbook decides and holds out on this data"
    assert any(m["cause"] == "tick" for m in replayed.message_records), "some decisions come from wake-ups"
    assert all(m["send_at"] >= m["at"] and m["expires_at"] >= m["send_at"] for m in replayed.message_records)

    clock = [now]
    partitioner = DefaultPartitioner()
    partitions = list(range(settings.partitions))
    offsets: dict[int, int] = {}
    records = []
    for line in lines:
        key = orjson.loads(line)["customer_id"].encode()
        partition = partitioner(key, partitions, [])
        records.append(Record(partition, offsets.get(partition, 0), key, line))
        offsets[partition] = offsets.get(partition, 0) + 1
    store, sink = MemoryStore(), MemorySink()
    runtime = Runtime(settings, store, sink, core.ruleset, core.model, clock=lambda: clock[0])

    async def go() -> None:
        await runtime.on_assigned(partitions)
        await runtime.prepare(partitions)
        for begin in range(0, len(records), 500):
            await runtime.handle(records[begin : begin + 500])
        clock[0] = later
        while len(await runtime.tick()):
            pass

    asyncio.run(go())
    assert _by(sink.messages, "decision_id") == _by(replayed.message_records, "decision_id")
    assert _by(sink.holdouts, "decision_id") == _by(replayed.holdout_records, "decision_id")
    assert all(m["send_at"] >= iso(now) for m in sink.messages if m["cause"] != "tick")
    runtime_states = _profiles(store, partitions)
    assert {c: (_comparable(s), s.pending) for c, s in runtime_states.items()} == {
        _stored_key(settings, c, s): (_comparable(s), s.pending) for c, s in replay_states.items()
    }
