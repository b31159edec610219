"""Where the runtime delivers a batch's outputs: the output sink seam and its two implementations.

``KafkaSink`` sends keyed records to their topics in pre-built producer batches and waits for the
broker; ``MemorySink`` keeps them in lists (the runtime's unit tests). Both take a whole
``Batch`` and return only when it is delivered: the runtime flushes state after that.

Partitions follow Kafka's default keyed partitioner (murmur2 of the customer id), so consumers
of ``segment-changes`` and ``next-best-messages`` see each customer's records in order on one
partition, as they would from any Kafka producer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from microseg.segments.pipeline import Batch

from microseg.engine.kafka.clients import SharedProducer
from microseg.engine.settings import Settings

__all__ = ["OutputSink", "KafkaSink", "MemorySink", "OutputWriter", "membership_records", "membership_key", "ANONYMOUS_MEMBERSHIP", "dead_letter_key"]


def dead_letter_key(letter: dict[str, Any]) -> bytes | None:
    """The key of a dead letter on the DLQ topic: the rejected record's ``customer_id`` (else its
    ``anonymous_id``, as the other output topics key) when its raw text parsed as a JSON object
    with a non-empty string there, so one customer's rejects share a partition and can be looked
    up by key; None for text that is not such an object (broken JSON, an array, no id)."""
    try:
        found = orjson.loads(letter["raw"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(found, dict):
        return None
    for name in ("customer_id", "anonymous_id"):
        value = found.get(name)
        if isinstance(value, str) and value:
            return value.encode()
    return None


class OutputSink(Protocol):
    """Where outputs go. ``deliver`` returns once every record of the batch is durable."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def deliver(self, batch: Batch) -> None:
        """Segment changes, next-best-messages, holdout decisions and dead letters, keyed by
        customer (dead letters by customer when it parsed)."""

    async def submit_event(self, customer_id: str, event: dict[str, Any]) -> None:
        """An event for the input topic (an erasure request), durable on return."""

    async def audit(self, records: list[tuple[bytes, dict[str, Any]]]) -> None:
        """Erasure audit records (key, value) for the audit topic (``engine.worker.audit``), durable on return."""


class OutputWriter:
    """Keyed records to topics; a customer's partition is computed once (murmur2 in Python is not cheap)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer
        self._partitioner = DefaultPartitioner()
        self._counts: dict[str, int] = {}
        self._placed: dict[tuple[bytes, int], int] = {}

    async def _partitions(self, topic: str) -> int:
        count = self._counts.get(topic)
        if count is None:
            partitions = await self.producer.partitions_for(topic)
            count = self._counts[topic] = len(partitions)
        return count

    async def send(
        self, topic: str, records: Iterable[tuple[bytes | None, dict[str, Any] | None]], *, route: Callable[[bytes], bytes] | None = None
    ) -> list[asyncio.Future[Any]]:
        """Queue records (key, value; a ``None`` value is a tombstone) for ``topic``; the futures
        resolve when the broker has them. ``route``: the part of the key that picks the partition."""
        by_partition: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        count = 0
        for key, value in records:
            if count == 0:
                count = await self._partitions(topic)
            if key is None:
                partition = 0
            else:
                placed_by = key if route is None else route(key)
                placed = self._placed.get((placed_by, count))
                if placed is None:
                    if len(self._placed) > 200_000:
                        self._placed.clear()
                    placed = self._placed[(placed_by, count)] = self._partitioner(placed_by, list(range(count)), [])
                partition = placed
            by_partition.setdefault(partition, []).append((key, None if value is None else orjson.dumps(value)))
        futures: list[asyncio.Future[Any]] = []
        producer = self.producer
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures


ANONYMOUS_MEMBERSHIP = "anonymous:"
"""Before the segment in an anonymous visitor's ``segment-memberships`` key: ``<anonymous_id>|anonymous:<segment>``.
A customer's key is ``<customer_id>|<segment>``; segment ids match ``[a-z][a-z0-9_]*`` (no ``|``, no
``:``), so the part after the last ``|`` tells the two apart and no customer's key equals a visitor's."""


def membership_key(change: dict[str, Any]) -> str:
    """A membership's key on ``segment-memberships``: ``customer_id|segment``, or for an anonymous
    visitor (``customer_id`` null) ``anonymous_id|anonymous:segment`` (``ANONYMOUS_MEMBERSHIP``)."""
    if change["customer_id"] is None:
        return f"{change['anonymous_id']}|{ANONYMOUS_MEMBERSHIP}{change['segment']}"
    return f"{change['customer_id']}|{change['segment']}"


def membership_records(changes: Iterable[dict[str, Any]]) -> Iterator[tuple[bytes, dict[str, Any] | None]]:
    """The compacted ``segment-memberships`` topic's records for some segment changes: key
    ``membership_key`` (printable: an anonymous visitor's by its ``anonymous_id``), value the entry
    record on ``entered``, a tombstone on ``exited`` (micro moves are not memberships). The last
    value per key is the current membership."""
    for change in changes:
        if change["segment"] == "micro":
            continue
        yield membership_key(change).encode(), (change if change["change"] == "entered" else None)


def _customer_of(key: bytes) -> bytes:
    """A memberships key's customer id (an anonymous visitor's ``anonymous_id``): records go to
    the partition the profile's other outputs (keyed by that id) go to."""
    return key.rpartition(b"|")[0]


class KafkaSink:
    """The worker's sink: ``changes_topic``, ``messages_topic``, ``holdouts_topic``, ``dlq_topic``, the input topic and
    ``erasure_audit_topic``, through the producer it shares with the state changelog."""

    def __init__(self, producer: SharedProducer, settings: Settings) -> None:
        self.shared = producer
        self.settings = settings
        self._writer: OutputWriter | None = None

    @property
    def writer(self) -> OutputWriter:
        if self._writer is None:
            raise RuntimeError("the output sink is not started; await sink.start() first")
        return self._writer

    async def start(self) -> None:
        if self._writer is None:
            self._writer = OutputWriter(await self.shared.start())

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer = None
            await self.shared.stop()

    async def deliver(self, batch: Batch) -> None:
        settings = self.settings
        send = self.writer.send
        futures: list[asyncio.Future[Any]] = []
        if batch.changes:
            futures += await send(settings.changes_topic, (((c["customer_id"] or c["anonymous_id"]).encode(), c) for c in batch.changes))
        if batch.messages:
            futures += await send(settings.messages_topic, (((m["customer_id"] or m["anonymous_id"]).encode(), m) for m in batch.messages))
        if batch.holdouts:  # control groups: their own topic, so nothing that sends what it reads can message them
            futures += await send(settings.holdouts_topic, (((h["customer_id"] or h.get("anonymous_id") or "").encode(), h) for h in batch.holdouts))
        if batch.dead_letters:
            futures += await send(settings.dlq_topic, ((dead_letter_key(d), d) for d in batch.dead_letters))
        if batch.changes and settings.memberships:
            futures += await send(settings.memberships_topic, membership_records(batch.changes), route=_customer_of)
        if futures:
            await asyncio.gather(*futures)

    async def submit_event(self, customer_id: str, event: dict[str, Any]) -> None:
        futures = await self.writer.send(self.settings.input_topic, [(customer_id.encode(), event)])
        await asyncio.gather(*futures)

    async def audit(self, records: list[tuple[bytes, dict[str, Any]]]) -> None:
        if records:
            await asyncio.gather(*await self.writer.send(self.settings.erasure_audit_topic, records))


@dataclass
class MemorySink:
    """Outputs kept in lists, in delivery order: the sink of the runtime's unit tests."""

    changes: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    holdouts: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    audits: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    deliveries: int = 0

    async def start(self) -> None:
        """Nothing to acquire."""

    async def stop(self) -> None:
        """Nothing to release."""

    async def deliver(self, batch: Batch) -> None:
        self.changes += batch.changes
        self.messages += batch.messages
        self.holdouts += batch.holdouts
        self.dead_letters += batch.dead_letters
        self.deliveries += 1

    async def submit_event(self, customer_id: str, event: dict[str, Any]) -> None:
        self.events.append((customer_id, event))

    async def audit(self, records: list[tuple[bytes, dict[str, Any]]]) -> None:
        self.audits += records
