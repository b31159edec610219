"""Chaos, measured (issue 12): a worker under load, killed with SIGKILL mid-stream three times
(restarted on the same data dir, then on a wiped one: changelog recovery), a second worker joining
and leaving the group (two rebalances), and ~1% poison records of every kind the decoder refuses.
At the end the outputs and the final states are replay's, the poison records are in the DLQ, and
nothing else was lost.

Poison kinds: not JSON; JSON that is not an object; unknown event type; a missing field (``type``
or ``ts``); an invalid field (a number as channel, month 13 in ``ts``); a profile attribute integer
beyond 64 bits; a ``ts`` far in the future; a Kafka key that differs from the customer_id; a record over
``MAX_EVENT_BYTES``; props nested deeper than ``MAX_DEPTH``; a negative amount; a survey score out
of range; a repeated JSON key. A leap second (``23:59:60Z``) is accepted, so a few are mixed in as
good events.

The figures are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import random
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from microseg.engine.settings import Settings
from microseg.engine.startup import load_predictive_model, load_ruleset
from microseg.engine.tools.produce import produce_lines
from microseg.engine.tools.replay import replay
from microseg.engine.tools.sinks import ListSink
from microseg.schemas.events import MAX_DEPTH, MAX_EVENT_BYTES, InvalidEvent, decode_event
from microseg.segments.step import Core
from microseg.segments.view import iso

from tests.conftest import consume

pytestmark = [pytest.mark.broker, pytest.mark.slow]

CUSTOMERS, DAYS, SEED = 40, 45, 7
"""5,543 simulated events, one erasure among them."""
PER_KIND = 5
"""Poison records of each of the 13 kinds: 65, about 1% of the events."""
SLICES = 6
"""The input is produced in slices, one per phase of the run (see the test)."""
PACE = 300.0
"""Lines a second while the second worker joins and leaves."""
ENV = {"MICROSEG_TICKS": "false", "MICROSEG_MAX_BATCH": "200", "MICROSEG_SESSION_TIMEOUT_S": "6"}


# -- the input -----------------------------------------------------------------------------


class Item:
    """One input record: ``key`` is None for lines produced as ``microseg produce`` would (keyed by
    their customer_id), or the (wrong) key a key-mismatch record is sent with."""

    def __init__(self, raw: bytes, kind: str | None = None, key: bytes | None = None) -> None:
        self.raw = raw
        self.kind = kind
        self.key = key


def _poison(kind: str, number: int, event: dict[str, Any], other: str) -> Item:
    """One poison record of ``kind`` made from a good ``event`` (``other``: another customer's id)."""
    base = {**event, "event_id": f"poison-{kind}-{number}"}
    customer = event["customer_id"]
    if kind == "not JSON":
        return Item(f'{{"event_id": "poison-json-{number}", "customer_id": "{customer}", "type": '.encode(), kind)
    if kind == "not an object":
        return Item([b'["poison", 1, 2]', b'"poison"', b"42", b"null", b"true"][number % 5], kind)
    if kind == "unknown type":
        return Item(orjson.dumps({**base, "type": "teleported"}), kind)
    if kind == "missing field":
        return Item(orjson.dumps({k: v for k, v in base.items() if k != ("ts" if number % 2 else "type")}), kind)
    if kind == "invalid field":
        return Item(orjson.dumps({**base, "ts": "2026-13-01T00:00:00Z"} if number % 2 else {**base, "channel": 42}), kind)
    if kind == "integer beyond 64 bits":
        profile = {**base, "type": "profile_updated", "props": {"attributes": {"loyalty_id": 0}}}
        return Item(orjson.dumps(profile).replace(b'"loyalty_id":0', b'"loyalty_id":18446744073709551616'), kind)
    if kind == "far future":
        return Item(orjson.dumps({**base, "ts": "2099-01-01T00:00:00Z"}), kind)
    if kind == "key mismatch":
        return Item(orjson.dumps(base), kind, key=other.encode())
    if kind == "too big":
        return Item(orjson.dumps({**base, "props": {**(event.get("props") or {}), "padding": "x" * (MAX_EVENT_BYTES + 100)}}), kind)
    if kind == "too deep":
        deep: Any = 1
        for _ in range(MAX_DEPTH + 1):
            deep = [deep]
        return Item(orjson.dumps({**base, "props": {**(event.get("props") or {}), "extra": deep}}), kind)
    if kind == "negative amount":
        return Item(orjson.dumps({**base, "type": "purchase", "props": {"order_id": f"o-poison-{number}", "amount": -5.0}}), kind)
    if kind == "duplicate key":
        if number % 2:  # two customer_ids: the key produce picks is the last one
            return Item(orjson.dumps(base)[:-1] + f',"customer_id":"{other}"}}'.encode(), kind)
        purchase = {**base, "type": "purchase", "props": {"order_id": f"o-poison-{number}", "amount": 150.0}}
        return Item(orjson.dumps(purchase).replace(b'"amount":150.0', b'"amount":-5,"amount":150.0'), kind)
    if kind == "survey out of range":
        return Item(orjson.dumps({**base, "type": "survey_answered", "props": {"kind": "nps", "score": 11 + number}}), kind)
    raise AssertionError(kind)


KINDS = [
    "not JSON", "not an object", "unknown type", "missing field", "invalid field", "integer beyond 64 bits",
    "far future", "key mismatch", "too big", "too deep", "negative amount", "survey out of range", "duplicate key",
]


def _input() -> list[Item]:
    """The simulated journeys with the poison records and three leap-second events mixed in."""
    from microseg.engine.tools.simulator import simulate

    events = list(simulate(CUSTOMERS, DAYS, SEED, datetime(2026, 1, 1, tzinfo=timezone.utc)))
    customers = sorted({e["customer_id"] for e in events})
    rng = random.Random(12)
    extra: list[tuple[int, Item]] = []
    for kind in KINDS:
        for number in range(PER_KIND):
            at = rng.randrange(len(events))
            other = rng.choice([c for c in customers if c != events[at]["customer_id"]])
            extra.append((at, _poison(kind, number, events[at], other)))
    for number in range(3):
        at = rng.randrange(len(events))
        day = datetime.fromisoformat(events[at]["ts"]).astimezone(timezone.utc).date().isoformat()
        leap = {**events[at], "event_id": f"leap-{number}", "type": "page_view", "props": {"page": "/leap"}, "ts": f"{day}T23:59:60Z"}
        extra.append((at, Item(orjson.dumps(leap), "leap second (good)")))
    items = [Item(orjson.dumps(e)) for e in events]
    for at, item in sorted(extra, key=lambda pair: pair[0], reverse=True):
        items.insert(at, item)
    return items


def _expected_letter(item: Item) -> tuple[str, str]:
    """The dead letter of a key-mismatch record (replay reads files: it has no keys)."""
    try:
        decode_event(item.raw, key=item.key)
    except InvalidEvent as exc:
        return _reason(str(exc)), item.raw.decode()
    raise AssertionError(f"not refused: {item.raw!r}")


def _reason(reason: str) -> str:
    """The reason without the processing clock (the wall clock in the worker, ``now`` in replay)."""
    return reason.split(" (processing clock ")[0]


def _letters(records: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((_reason(r["reason"]), r["raw"]) for r in records)


# -- the broker, from outside --------------------------------------------------------------


class Watch:
    """How many records the changes topic holds and how far the group has committed the input.

    Counted by reading (a consumer assigned to both topics), not by ListOffsets: the embedded
    broker (Tansu 0.6) answers ListOffsets(latest) with the start of the last record batch + 1
    (see ``engine.kafka.offsets``); the high watermark of a Fetch is right.
    """

    def __init__(self, bootstrap: str, settings: Settings) -> None:
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        self.settings = settings
        self.inputs = [TopicPartition(settings.input_topic, p) for p in range(settings.partitions)]
        self.outputs = [TopicPartition(settings.changes_topic, p) for p in range(settings.partitions)]
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=5
        )
        self.consumer.assign(self.inputs + self.outputs)
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.read: Counter[Any] = Counter()

    def _poll(self, timeout_ms: int = 5) -> int:
        got = 0
        for tp, records in self.consumer.poll(timeout_ms=timeout_ms, max_records=100_000).items():
            self.read[tp] += len(records)
            got += len(records)
        return got

    def _drain(self) -> None:
        """Read until a fetch finds nothing new (the high watermarks are then current)."""
        while self._poll(timeout_ms=100):
            pass

    def changes(self, *, drain: bool = False) -> int:
        """Change records on the changes topic, as far as read now (``drain``: read to the end)."""
        self._drain() if drain else self._poll()
        return sum(self.read[tp] for tp in self.outputs)

    def ends(self) -> dict[int, int]:
        """The input partitions' high watermarks."""
        self._drain()
        return {tp.partition: self.consumer.highwater(tp) or 0 for tp in self.inputs}

    def committed(self) -> dict[int, int]:
        group = self.settings.group_id
        found = self.admin.list_group_offsets({group: None}).get(group, {})
        return {tp.partition: meta.offset for tp, meta in found.items() if tp.topic == self.settings.input_topic}

    def backlog(self) -> int:
        """Input records not committed by the group yet."""
        ends, committed = self.ends(), self.committed()
        return sum(end - max(committed.get(p, 0), 0) for p, end in ends.items())

    def describe(self) -> str:
        return f"input high watermarks {self.ends()}, committed {self.committed()}"

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def _wait(condition: Callable[[], bool], what: str, timeout: float, poll: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(poll)


def test_chaos_kills_rebalances_and_poison_lose_nothing(broker: str, workers: Any, unique_topics: dict[str, str], tmp_path: Path) -> None:
    from kafka import KafkaProducer

    began = time.monotonic()
    env = {**unique_topics, **ENV}
    settings = Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in env.items()})
    core = Core(load_ruleset(settings), load_predictive_model(settings))
    items = _input()
    poison = [item for item in items if item.kind and item.kind in KINDS]
    keyed = [item for item in items if item.key is not None]

    # what replay says (it reads the file: the key-mismatch records are not in it)
    expected = ListSink()
    stats, final = replay([i.raw for i in items if i.key is None], core, expected, now=time.time())
    change_ids = {c["change_id"] for c in expected.change_records}
    decision_ids = {m["decision_id"] for m in expected.message_records}
    letters = _letters(expected.dead_letters) + Counter(_expected_letter(i) for i in keyed)
    assert sorted(raw for _, raw in letters.elements()) == sorted(i.raw.decode() for i in poison), "replay refuses exactly the poison records"
    assert len(change_ids) == len(expected.change_records) > 1000
    assert any(s.erased for s in final.values())

    # the run: one slice of input per phase, produced while the workers run
    watch = Watch(broker, settings)
    slices = [items[len(items) * k // SLICES : len(items) * (k + 1) // SLICES] for k in range(SLICES)]
    per_slice = len(change_ids) / SLICES
    figures: dict[str, Any] = {"kills": [], "rebalances": 0}
    producing: list[threading.Thread] = []

    def produce(part: list[Item], *, wait: bool = False, rate: float = 0.0) -> None:
        """Send a slice as ``microseg produce`` would (the key-mismatch records with their wrong key),
        ``rate`` lines a second (0: at once)."""

        def run() -> None:
            produce_lines(settings, broker, [i.raw for i in part if i.key is None], rate=rate)
            mismatched = [i for i in part if i.key is not None]
            if mismatched:
                producer = KafkaProducer(bootstrap_servers=broker)
                for item in mismatched:
                    producer.send(settings.input_topic, key=item.key, value=item.raw)
                producer.flush()
                producer.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        producing.append(thread)
        if wait:
            thread.join(60)

    def kill_after_outputs(worker: Any, name: str, kill_after: int, start: int) -> None:
        """SIGKILL ``worker`` as soon as ``kill_after`` change records more than ``start`` are on the changes topic."""

        def enough() -> bool:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker {name} exited by itself:\n{worker.log_path.read_text()[-3000:]}")
            return watch.changes() >= start + kill_after

        _wait(enough, f"{kill_after} changes before killing {name}", 120)
        worker.kill()
        figures["kills"].append({"worker": name, "after_changes": watch.changes() - start, "uncommitted_input": watch.backlog()})

    try:
        # kills 1-3: each slice is on the input before A (re)starts, so A is working through a
        # backlog, batch after batch, when it is killed
        for number, (data_dir, share) in enumerate([("a-state", 0.3), ("a-state", 0.7), ("a-state-wiped", 1.1)]):
            start = watch.changes(drain=True)
            produce(slices[number], wait=True)
            a = workers(env, tmp_path / data_dir)  # the same data dir, then a wiped one (recovery from the changelog)
            kill_after_outputs(a, "A", int(per_slice * share), start)

        # B joins and leaves while input arrives at a steady pace
        a = workers(env, tmp_path / "a-state-wiped")
        a.wait_assigned(timeout=60)
        produce(slices[3], rate=PACE)
        b = workers(env, tmp_path / "b-state")
        b.wait_assigned(timeout=60)  # B joined: rebalance 1
        figures["rebalances"] += 1
        _wait(lambda: 0 < len((a.health() or {}).get("partitions", [])) < settings.partitions, "A giving partitions to B", 60, poll=0.2)
        producing[-1].join(60)
        start = watch.changes(drain=True)
        produce(slices[4], rate=PACE)
        kill_after_outputs(b, "B", int(per_slice * 0.3), start)  # B leaves: rebalance 2
        figures["rebalances"] += 1
        producing[-1].join(60)
        produce(slices[5], rate=PACE)
        for thread in producing:
            thread.join(60)
        _wait(lambda: sorted((a.health() or {}).get("ready", [])) == list(range(settings.partitions)), "A owning every partition", 60, poll=0.2)
        try:
            _wait(lambda: watch.backlog() == 0, "every input record committed", 60, poll=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {watch.describe()}; A: {a.health()}") from None
    finally:
        watch.close()

    # the outputs: replay's, duplicates allowed; nothing missing, nothing foreign
    changes = consume(broker, settings.changes_topic, until=lambda got: change_ids <= {c["change_id"] for c in got}, timeout=60)
    messages = consume(broker, settings.messages_topic, until=lambda got: decision_ids <= {m["decision_id"] for m in got}, timeout=60)
    dead = consume(broker, settings.dlq_topic, until=lambda got: set(_letters(got)) >= set(letters), timeout=60)
    seen_changes, seen_messages, seen_letters = {c["change_id"] for c in changes}, {m["decision_id"] for m in messages}, _letters(dead)
    leap = [i for i in items if i.kind == "leap second (good)"]
    figures.update(
        events=stats.events,
        lines=len(items),
        poison=len(poison),
        poison_by_kind=dict(Counter(i.kind for i in poison)),
        leap_seconds_accepted=sum(i.raw.decode() not in {raw for _, raw in seen_letters} for i in leap),
        customers=len(final),
        erased=sum(s.erased for s in final.values()),
        changes=len(change_ids),
        change_records_seen=len(changes),
        duplicate_changes=len(changes) - len(seen_changes),
        messages=len(decision_ids),
        dead_letters_seen=len(dead),
        duplicate_dead_letters=len(dead) - len(set(seen_letters)),
        lost=len(change_ids - seen_changes) + len(decision_ids - seen_messages) + sum(max(n - seen_letters[k], 0) for k, n in letters.items()),
        foreign=len(seen_changes - change_ids) + len(seen_messages - decision_ids) + len(set(seen_letters) - set(letters)),
    )
    print("\nchaos figures:", orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    assert seen_changes == change_ids
    assert seen_messages == decision_ids
    assert set(seen_letters) == set(letters), "every poison record is in the DLQ, and nothing else"
    assert all(count >= letters[letter] for letter, count in seen_letters.items())
    assert len(figures["kills"]) >= 3 and figures["rebalances"] >= 2
    assert all(k["uncommitted_input"] > 0 for k in figures["kills"] if k["worker"] == "A"), "A was killed mid-stream"

    # the final states: the surviving worker owns every partition
    for customer_id, state in final.items():
        if state.erased:
            with pytest.raises(urllib.error.HTTPError, match="404"):
                a.get(f"/customers/{customer_id}")
            continue
        found = a.get(f"/customers/{customer_id}")
        assert (found["segments"], found["code"], found["as_of"]) == (list(state.segments), state.code, iso(state.evaluated_at)), customer_id
        assert (found["rules_version"], found["model_version"]) == (state.rules_version.partition("+")[0], state.rules_version.partition("+")[2] or None), customer_id
        assert found["next_wake"] == (iso(state.wake) if state.wake is not None else None), customer_id
        assert found["recent_messages"] == [{"message": s[1], "send_at": iso(float(s[0])), "channel": s[2] if len(s) > 2 else None} for s in state.sends], customer_id
        assert found["held_back"] == [{"message": m, "reason": r, "at": iso(float(t))} for t, m, r in state.held], customer_id
        assert found["dna"] == orjson.loads(orjson.dumps(core.view(state.dna, state.evaluated_at).snapshot(), default=str)), customer_id

    seconds = time.monotonic() - began
    print(f"chaos: {len(final)} final states equal replay's; {seconds:.1f} s")
    assert seconds < 240, f"the chaos test took {seconds:.0f}s; CI allows 4 minutes"
