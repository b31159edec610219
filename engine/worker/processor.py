"""One batch of input records through the core, with one state read and one write per customer.

The host (the worker's consume loop) hands over records of the partitions it owns; this module
decodes them (bad ones become dead letters), steps each customer through ``Core`` in offset
order, stages the new states in the ``DnaStore`` and returns every output record. The caller
delivers the outputs first, then flushes the store (changelog + RocksDB), then commits input
offsets: a crash anywhere re-reads input whose effects are either absent or already stored with
their source offset, so nothing is lost and repeated outputs carry the same ids.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from microseg.schemas.events import InvalidEvent, decode_event
from microseg.segments.process import Core, StepResult
from microseg.segments.state import CustomerState, StateFormatError, decode, encode

from microseg.engine.worker.metrics import Metrics
from microseg.engine.tools.sinks import dead_letter
from microseg.engine.state.base import DnaStore

__all__ = ["InputRecord", "Record", "Outputs", "BatchProcessor", "WakeIndex"]

log = logging.getLogger(__name__)


class InputRecord(Protocol):
    """What the processor reads of an input record: aiokafka's ``ConsumerRecord`` as fetched (no
    copy per record on the hot path), or a ``Record``."""

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes: ...

    @property
    def timestamp(self) -> int | None:
        """Produce time (ms since the epoch) when known."""


class Record(NamedTuple):
    """An input record built by hand (tests, tools)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int | None = None


@dataclass
class Outputs:
    changes: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    source_ms: list[int] = field(default_factory=list)
    """Produce timestamps of the input records that led to changes (for the latency histogram)."""
    source_t: list[float] = field(default_factory=list)
    """Event times of those records."""
    moves: dict[int, Counter[str]] = field(default_factory=dict)
    """Per partition, segment population deltas (+1 entry, -1 exit)."""

    def add_moves(self, partition: int, changes: list[dict[str, Any]]) -> None:
        delta = self.moves.get(partition)
        if delta is None:
            delta = self.moves[partition] = Counter()
        for change in changes:
            segment = change["segment"]
            if segment != "micro":
                delta[segment] += 1 if change["change"] == "entered" else -1

    def add(self, result: StepResult) -> None:
        self.changes += result.changes
        self.messages += result.messages
        self.suppressed += result.suppressed

    def __len__(self) -> int:
        return len(self.changes) + len(self.messages) + len(self.dead_letters)


class WakeIndex:
    """Per partition, customers by next wake-up: a heap with lazy deletion, rebuilt on recovery."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[float, str]]] = {}
        self._wake: dict[int, dict[str, float]] = {}

    def set(self, partition: int, customer_id: str, wake: float | None) -> None:
        wakes = self._wake.setdefault(partition, {})
        if wake is None:
            wakes.pop(customer_id, None)
            return
        if wakes.get(customer_id) == wake:
            return
        wakes[customer_id] = wake
        heapq.heappush(self._heaps.setdefault(partition, []), (wake, customer_id))

    def due(self, partition: int, now: float, limit: int) -> list[str]:
        """Customers whose wake-up is at or before ``now`` (removed from the index)."""
        heap = self._heaps.get(partition, [])
        wakes = self._wake.get(partition, {})
        found: list[str] = []
        while heap and heap[0][0] <= now and len(found) < limit:
            wake, customer_id = heapq.heappop(heap)
            if wakes.get(customer_id) == wake:
                del wakes[customer_id]
                found.append(customer_id)
        return found

    def drop(self, partition: int) -> None:
        self._heaps.pop(partition, None)
        self._wake.pop(partition, None)

    def pending(self, partition: int) -> int:
        return len(self._wake.get(partition, {}))


class BatchProcessor:
    """Decode, step and stage one batch; the ``core`` may be swapped between batches (new rules)."""

    def __init__(self, core: Core, store: DnaStore, metrics: Metrics, *, input_topic: str) -> None:
        self.core = core
        self.store = store
        self.metrics = metrics
        self.input_topic = input_topic
        self.wakes = WakeIndex()
        self.newest: dict[int, float] = {}
        self.customers: dict[int, int] = {}

    def index_partition(self, partition: int, items: Iterable[tuple[str, bytes]]) -> int:
        """Rebuild the wake index of a recovered partition from its stored states."""
        self.wakes.drop(partition)
        count = 0
        for customer_id, raw in items:
            if customer_id.startswith("\x00"):
                continue
            try:
                state = decode(raw)
            except StateFormatError:
                continue
            self.wakes.set(partition, customer_id, state.wake)
            if state.dna.last_seen > self.newest.get(partition, 0.0):
                self.newest[partition] = state.dna.last_seen
            count += not state.erased
        self.customers[partition] = count
        return count

    def _load(self, partition: int, customer_ids: Iterable[str]) -> dict[str, CustomerState | None]:
        states: dict[str, CustomerState | None] = {}
        for customer_id, raw in self.store.get_many(partition, customer_ids).items():
            try:
                states[customer_id] = decode(raw)
            except StateFormatError as exc:
                self.metrics.state_errors.inc()
                log.error("stored state of customer %r is unreadable (%s); starting it afresh", customer_id, exc)
        return states

    def _stage(self, partition: int, states: dict[str, CustomerState | None], touched: set[str], known: set[str]) -> None:
        """Queue the new states of ``touched`` customers (every one of them has a state)."""
        writes: dict[str, bytes | None] = {}
        joined = 0
        for customer_id in touched:
            state = states[customer_id]
            assert state is not None
            if customer_id not in known and not state.erased:
                joined += 1
            elif customer_id in known and state.erased:
                joined -= 1
            writes[customer_id] = encode(state)
            self.wakes.set(partition, customer_id, state.wake)
        if writes:
            self.store.put_many(partition, writes)
        self.customers[partition] = self.customers.get(partition, 0) + joined

    def process(self, records: Sequence[InputRecord], now: float) -> Outputs:
        """Step every record of the batch (``now``: the wall clock); returns the outputs to deliver before flushing state."""
        out = Outputs()
        by_partition: dict[int, list[tuple[InputRecord, Any]]] = {}
        metrics = self.metrics
        for record in records:
            newest = self.newest.get(record.partition)
            try:
                event = decode_event(record.value, reference_t=now if newest is None or newest < now else newest, key=record.key)
            except InvalidEvent as exc:
                reason = str(exc)
                out.dead_letters.append(dead_letter(reason, record.value, topic=self.input_topic, partition=record.partition, offset=record.offset))
                metrics.rejected.labels(reason=reason.split(":")[0][:40]).inc()
                continue
            if newest is None or event.t > newest:
                self.newest[record.partition] = event.t
            by_partition.setdefault(record.partition, []).append((record, event))
        types: Counter[str] = Counter()
        for partition, items in by_partition.items():
            started = time.perf_counter()
            states = self._load(partition, {event.customer_id for _, event in items})
            known = {c for c, state in states.items() if state is not None and not state.erased}
            touched: set[str] = set()
            for record, event in items:
                types[event.type] += 1
                try:
                    result = self.core.on_event(states.get(event.customer_id), event, offset=record.offset)
                except Exception as exc:  # noqa: BLE001 - one bad record must not stop the partition
                    log.exception("event %s of customer %s could not be processed", event.event_id, event.customer_id)
                    reason = f"internal error while processing: {type(exc).__name__}: {exc}"
                    out.dead_letters.append(dead_letter(reason, record.value, topic=self.input_topic, partition=record.partition, offset=record.offset))
                    metrics.rejected.labels(reason="internal error").inc()
                    continue
                if result.duplicate:
                    metrics.duplicates.inc()
                    continue
                if result.ignored:
                    metrics.after_erasure.inc()
                    continue
                states[event.customer_id] = result.state
                touched.add(event.customer_id)
                out.add(result)
                if result.changes:
                    out.add_moves(partition, result.changes)
                    out.source_t.append(event.t)
                    if record.timestamp:
                        out.source_ms.append(record.timestamp)
            self._stage(partition, states, touched, known)
            metrics.processing_seconds.observe((time.perf_counter() - started) / len(items))
        for kind, count in types.items():
            metrics.events.labels(type=kind).inc(count)
        return out

    def _advance(self, partition: int, customer_ids: Sequence[str], until: float | None, out: Outputs) -> int:
        """Advance stored customers (``until`` None: to their own last evaluation, under the current
        rules); stage their new states and collect the outputs. Returns how many moved."""
        states = self._load(partition, customer_ids)
        touched: set[str] = set()
        for customer_id in customer_ids:
            state = states.get(customer_id)
            if state is None or (until is None and state.rules_version == self.core.ruleset.version):
                continue
            result = self.core.advance(customer_id, state, state.evaluated_at if until is None else until)
            states[customer_id] = result.state
            touched.add(customer_id)
            out.add(result)
            if result.changes:
                out.add_moves(partition, result.changes)
        self._stage(partition, states, touched, set(touched))
        return len(touched)

    def tick(self, partitions: Iterable[int], now: float, *, limit: int = 10_000) -> Outputs:
        """Let time run on to ``now`` for customers whose wake-up has come (cause ``tick``)."""
        out = Outputs()
        for partition in partitions:
            due = self.wakes.due(partition, now, limit)
            if due:
                self._advance(partition, due, now, out)
        return out

    def resync(self, partition: int, customer_ids: Sequence[str]) -> tuple[Outputs, int]:
        """Re-evaluate customers last evaluated under older rules (cause ``rules:<version>``)."""
        out = Outputs()
        return out, self._advance(partition, customer_ids, None, out)
