"""The worker's identity stage: the alias table per partition and the hand-over of a visitor's
state to its customer's partition, on Kafka's own machinery (CONTRACT §8, docs/architecture.md
"Identity across partitions").

A visitor's profile (key ``\\x01`` + anonymous_id) lives on the partition of its anonymous_id, a
customer's on the partition of its customer_id (Kafka's default keyed partitioner on both, the same
partition the input record came on). The **alias table** lives with the visitor: key
``ALIAS_PREFIX + anonymous_id`` -> customer id, in the DNA store partition of the anonymous_id
(RocksDB, its compacted changelog: the same machinery as the states). The customer's partition
keeps the list of its aliases (``ALIASES_PREFIX + customer_id``, a JSON list) for explain and
erasure. Records that must change partition go through the **identity topic** (partitioned like
the input and consumed by the same group with the co-partitioned assignor, so partition ``p`` of
both topics and the store partition ``p`` are one task): a JSON object with ``kind``:

- ``event``: an event of a linked visitor, keyed by its customer (``raw``: the input record);
- ``identify``: an identify, keyed by its anonymous_id: the visitor's partition decides (alias
  free: link it; linked to this customer: a duplicate; to another: a dead letter) and runs the
  visitor's half (exits, ``cause`` = the identify's id) and drops the visitor's state;
- ``handoff``: keyed by the customer: the identify and the visitor's DNA record as it was at the
  identify (``state``: the stored state bytes, base64, or null); the customer's partition runs the
  customer's half (merge, evaluation with the same cause; a redelivered hand-over is a duplicate by
  the identify's id, remembered in the customer's record);
- ``forget``: keyed by an anonymous_id whose customer was erased: the link is dropped and an erased
  mark left under the visitor's key.

When source and target partition are the same, the record is not sent: it is handled in the same
batch. Everything a batch sends to the identity topic is delivered with its outputs, before its
state is flushed and its offsets committed (at least once; redelivery is idempotent as above).
"""

from __future__ import annotations

import base64
import os
import signal
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner

from microseg.schemas.events import ANONYMOUS_KEY, InvalidEvent, decode_event
from microseg.segments.identity import alias_taken, erased_mark, merge_into_customer, visitor_exits
from microseg.segments.pipeline import Batch, InputRecord, Record, dead_letter
from microseg.segments.state import CustomerState, StateFormatError, decode, encode

from microseg.engine.worker.tasks import PartitionTasks

__all__ = ["IdentityStage", "StoreAliases", "ALIAS_PREFIX", "ALIASES_PREFIX", "KILL_AFTER_HANDOFF"]

ALIAS_PREFIX = "\x00alias:"
"""Store key of a link, on the anonymous_id's partition: ``ALIAS_PREFIX + anonymous_id`` -> customer id."""
ALIASES_PREFIX = "\x00aliases:"
"""Store key of a customer's aliases, on its partition: a JSON list of anonymous ids, in link order."""
KILL_AFTER_HANDOFF = "MICROSEG_TEST_KILL_AFTER_HANDOFF"
"""Test hook (the kill -9 test): when set, the worker SIGKILLs itself once a batch's hand-over
records are delivered, before that batch's state is flushed or its offsets committed."""

Forward = tuple[bytes, dict[str, Any]]


class StoreAliases:
    """The alias table of one store partition as the pipeline reads it (``segments.identity.AliasBook``),
    with a per-batch cache and the links the batch learned from forwarded events (``hints``)."""

    def __init__(self, tasks: PartitionTasks) -> None:
        self.tasks = tasks
        self.partition = 0
        self.cache: dict[str, str | None] = {}

    def reset(self, partition: int) -> None:
        self.partition = partition
        self.cache = {}

    def customer_of(self, anonymous_id: str) -> str | None:
        if anonymous_id in self.cache:
            return self.cache[anonymous_id]
        raw = self.tasks.store.get_many(self.partition, [ALIAS_PREFIX + anonymous_id]).get(ALIAS_PREFIX + anonymous_id)
        found = raw.decode() if raw is not None else None
        self.cache[anonymous_id] = found
        return found

    def aliases_of(self, customer_id: str) -> Sequence[str]:
        return ()  # a customer's aliases live on their own partitions: erasure forgets them by ``forget`` records


class IdentityStage:
    """Identity around the partition tasks: ``process(records, now)`` -> (batch, records for the identity topic)."""

    def __init__(self, tasks: PartitionTasks, *, input_topic: str, identity_topic: str, partitions: int) -> None:
        self.tasks = tasks
        self.input_topic = input_topic
        self.identity_topic = identity_topic
        self.partitions = partitions
        self.book = StoreAliases(tasks)
        tasks.pipeline.aliases = self.book
        self._partitioner = DefaultPartitioner()
        self._all = list(range(partitions))
        self.kill_after_handoff = bool(os.environ.get(KILL_AFTER_HANDOFF))

    def partition_of(self, key: str) -> int:
        return int(self._partitioner(key.encode(), self._all, []))

    # -- one batch ----------------------------------------------------------------------

    def process(self, records: Sequence[InputRecord], now: float) -> tuple[Batch, list[Forward]]:
        out = Batch()
        forwards: list[Forward] = []
        by_partition: dict[int, tuple[list[InputRecord], list[InputRecord]]] = {}
        for record in records:
            side = getattr(record, "topic", self.input_topic) == self.identity_topic
            by_partition.setdefault(record.partition, ([], []))[side].append(record)
        for partition, (inputs, sides) in by_partition.items():
            self.book.reset(partition)
            direct: list[InputRecord] = []
            queue: deque[tuple[dict[str, Any], InputRecord | None]] = deque()
            for record in inputs:
                self._sort(partition, record, direct, queue, forwards)
            if direct:
                out.merge(self._run(direct, now))
            for record in sides:
                try:
                    item = orjson.loads(record.value)
                except orjson.JSONDecodeError:
                    continue  # not written by a worker: nothing to do with it
                queue.append((item, record))
            self._drain(partition, queue, now, out, forwards)
            self._forget_erased(partition, out, now, forwards)
        return out, forwards

    def _run(self, records: list[InputRecord], now: float) -> Batch:
        return self.tasks.process(records, now)

    def _sort(self, partition: int, record: InputRecord, direct: list[InputRecord], queue: deque[Any], forwards: list[Forward]) -> None:
        """An input record: for the DNA stage here, or an identify or a linked visitor's event to move."""
        value = record.value
        if b'"anonymous_id"' not in value:
            direct.append(record)
            return
        try:
            data = orjson.loads(value)
        except orjson.JSONDecodeError:
            direct.append(record)
            return
        if not isinstance(data, dict):
            direct.append(record)
            return
        customer_id, anonymous_id = data.get("customer_id"), data.get("anonymous_id")
        if not isinstance(anonymous_id, str) or not anonymous_id:
            direct.append(record)
            return
        source = [self.input_topic, record.partition, record.offset]
        if data.get("type") == "identify" and isinstance(customer_id, str) and customer_id and record.key == customer_id.encode():
            item = {"kind": "identify", "raw": value.decode("utf-8", "replace"), "source": source}
            self._send(partition, anonymous_id, item, queue, forwards)
            return
        if customer_id is not None:
            direct.append(record)
            return
        linked = self.book.customer_of(anonymous_id)
        if linked is None or self.partition_of(linked) == partition:
            direct.append(record)  # the visitor's own profile, or a customer here: the pipeline routes it
            return
        catalog = self.tasks.core.ruleset.catalog
        try:
            (decode_event if catalog is None else catalog.decode)(value, key=record.key)  # a bad record is dead-lettered where it came in
        except InvalidEvent:
            direct.append(record)
            return
        forwards.append((linked.encode(), {"kind": "event", "raw": value.decode(), "customer_id": linked, "anonymous_id": anonymous_id, "source": source}))

    def _send(self, partition: int, key: str, item: dict[str, Any], queue: deque[Any], forwards: list[Forward]) -> None:
        if self.partition_of(key) == partition:
            queue.append((item, None))
        else:
            forwards.append((key.encode(), item))

    def _drain(self, partition: int, queue: deque[tuple[dict[str, Any], InputRecord | None]], now: float, out: Batch, forwards: list[Forward]) -> None:
        """The identity topic's records (and those that stay here) in order: runs of forwarded events
        through the pipeline, the others one by one."""
        run: list[InputRecord] = []
        while queue:
            item, record = queue.popleft()
            kind = item.get("kind")
            if kind == "event":
                self.book.cache[str(item["anonymous_id"])] = str(item["customer_id"])
                produced = getattr(record, "timestamp", None)
                run.append(Record(partition, -1, None, str(item["raw"]).encode(), produced))
                continue
            if run:
                out.merge(self._run(run, now))
                run = []
            if kind == "identify":
                self._identify(partition, item, out, queue, forwards)
            elif kind == "handoff":
                self._handoff(partition, item, out, queue, forwards)
            elif kind == "forget":
                self._forget(partition, str(item["anonymous_id"]), float(item["t"]))
        if run:
            out.merge(self._run(run, now))

    # -- the visitor's partition ----------------------------------------------------------

    def _decode(self, item: dict[str, Any], out: Batch) -> Any:
        catalog = self.tasks.core.ruleset.catalog
        decode = decode_event if catalog is None else catalog.decode
        raw = str(item["raw"]).encode()
        try:
            return decode(raw)
        except InvalidEvent as exc:
            topic, partition, offset = item.get("source") or [self.input_topic, None, None]
            out.dead_letters.append(dead_letter(str(exc), raw, topic=topic, partition=partition, offset=offset))
            out.rejected[str(exc).split(":")[0][:40]] += 1
            return None

    def _identify(self, partition: int, item: dict[str, Any], out: Batch, queue: deque[Any], forwards: list[Forward]) -> None:
        event = self._decode(item, out)
        if event is None:
            return
        anonymous_id = str(event.anonymous_id)
        customer_id = event.customer_id
        out.types["identify"] += 1
        linked = self.book.customer_of(anonymous_id)
        if linked == customer_id:
            out.duplicates += 1
            return
        if linked is not None:
            topic, source_partition, offset = item["source"]
            out.dead_letters.append(dead_letter(alias_taken(anonymous_id), str(item["raw"]).encode(), topic=topic, partition=source_partition, offset=offset))
            out.rejected["anonymous_id"] += 1
            return
        store = self.tasks.store
        self.book.cache[anonymous_id] = customer_id
        store.put_many(partition, {ALIAS_PREFIX + anonymous_id: customer_id.encode()})
        key = ANONYMOUS_KEY + anonymous_id
        anonymous = self.tasks.load(partition, [key]).get(key)
        visitor = visitor_exits(self.tasks.core, anonymous, event)
        state: str | None = None
        if visitor is not None:
            state = base64.b64encode(self._stage_one(partition, key, anonymous, visitor, event.t, out)).decode()
            store.put_many(partition, {key: None})  # kept only as an alias from now on
            self.tasks.wakes.set(partition, key, None)
            self.tasks.customers[partition] = self.tasks.customers.get(partition, 1) - 1
        handoff = {"kind": "handoff", "raw": item["raw"], "state": state, "source": item["source"]}
        self._send(partition, customer_id, handoff, queue, forwards)

    def _stage_one(self, partition: int, key: str, before: CustomerState | None, result: Any, t: float, out: Batch) -> bytes:
        """Stage one profile's stepped state (``result``, a step result) as the pipeline stages a
        batch's, merge its records into ``out``; its encoded state."""
        encoded = encode(result.state)
        staged = Batch()
        staged.states[partition] = {key: result.state}
        staged.encoded[partition] = {key: encoded}
        staged.loaded[partition] = {key: before} if before is not None else {}
        staged._add(partition, result)
        if result.changes:
            staged.source_t.append(t)
        self.tasks._stage(staged)
        out.merge(staged)
        return encoded

    def _forget(self, partition: int, anonymous_id: str, t: float) -> None:
        """The visitor of an erased customer: the link dropped, an erased mark under its key."""
        key = ANONYMOUS_KEY + anonymous_id
        self.book.cache[anonymous_id] = None
        writes: dict[str, bytes | None] = {ALIAS_PREFIX + anonymous_id: None, key: None}
        mark = encode(erased_mark(t, self.tasks.core.version))
        erased_key = self.tasks.erased_key
        writes[erased_key(key) if erased_key is not None else key] = mark
        self.tasks.store.put_many(partition, writes)
        self.tasks.wakes.set(partition, key, None)

    # -- the customer's partition ---------------------------------------------------------

    def _handoff(self, partition: int, item: dict[str, Any], out: Batch, queue: deque[Any], forwards: list[Forward]) -> None:
        event = self._decode(item, out)
        if event is None:
            return
        customer_id = event.customer_id
        anonymous_id = str(event.anonymous_id)
        customer = self.tasks.load(partition, [customer_id]).get(customer_id)
        visitor = None
        if item.get("state"):
            try:
                visitor = decode(base64.b64decode(item["state"])).dna
            except (StateFormatError, ValueError):
                visitor = None
        result = merge_into_customer(self.tasks.core, customer, visitor, event)
        if result.duplicate:
            out.duplicates += 1
            return
        if result.ignored:  # an erased customer: its alias is forgotten too
            out.after_erasure += 1
            self._send(partition, anonymous_id, {"kind": "forget", "anonymous_id": anonymous_id, "t": event.t}, queue, forwards)
            return
        self._stage_one(partition, customer_id, customer, result, event.t, out)
        aliases_key = ALIASES_PREFIX + customer_id
        raw = self.tasks.store.get_many(partition, [aliases_key]).get(aliases_key)
        known = orjson.loads(raw) if raw else []
        if anonymous_id not in known:
            known.append(anonymous_id)
            self.tasks.store.put_many(partition, {aliases_key: orjson.dumps(known)})

    def _forget_erased(self, partition: int, out: Batch, now: float, forwards: list[Forward]) -> None:
        """After a customer's erasure: ``forget`` each of its aliases on the alias's partition."""
        erased = [e for e in out.erasures if e.partition == partition and e.outcome == "erased"]
        for erasure in erased:
            aliases_key = ALIASES_PREFIX + erasure.customer_id
            raw = self.tasks.store.get_many(partition, [aliases_key]).get(aliases_key)
            if not raw:
                continue
            self.tasks.store.put_many(partition, {aliases_key: None})
            queue: deque[Any] = deque()
            for anonymous_id in orjson.loads(raw):
                self._send(partition, anonymous_id, {"kind": "forget", "anonymous_id": anonymous_id, "t": erasure.t}, queue, forwards)
            while queue:
                item, _ = queue.popleft()
                self._forget(partition, str(item["anonymous_id"]), float(item["t"]))

    def aliases(self, partition: int, customer_id: str) -> list[str]:
        """A customer's aliases (explain), from its partition."""
        raw = self.tasks.store.get_many(partition, [ALIASES_PREFIX + customer_id]).get(ALIASES_PREFIX + customer_id)
        return list(orjson.loads(raw)) if raw else []

    def after_delivery(self, forwards: list[Forward]) -> None:
        """The kill -9 test's hook: die once hand-over records are out, before state and offsets."""
        if self.kill_after_handoff and any(item.get("kind") == "handoff" for _, item in forwards):
            os.kill(os.getpid(), signal.SIGKILL)
