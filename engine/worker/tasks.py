"""The worker's partition tasks: the pipeline over the partitions this worker owns, on the state store.

As in Kafka Streams, each input partition is a task with its own state (the DNA store partition
of the same number): this module reads the customers a batch needs from the store, runs the
``segments.pipeline.Pipeline`` over them, stages the new states back, and keeps per partition the
index of wake-ups (who is due when) and the number of customers. It delivers nothing: the
runtime sends the returned ``Batch`` first, then flushes the store, then commits offsets.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Collection, Iterable, Sequence

from microseg.segments.pipeline import Batch, InputRecord, Pipeline
from microseg.segments.state import CustomerState, StateFormatError, decode, encode, erasure_writes
from microseg.segments.step import Core

from microseg.engine.state.base import DnaStore
from microseg.engine.worker.member_index import INDEX_MARK, index_writes, rebuild_writes

__all__ = ["WakeIndex", "PartitionTasks", "INPUT_TOPIC_KEY"]

INPUT_TOPIC_KEY = "\x00input-topic-id"
"""Per partition in the state store: the id of the input topic whose offsets the customers remember."""

log = logging.getLogger(__name__)


class WakeIndex:
    """Per partition, customers by next wake-up (epoch seconds): a heap with lazy deletion."""

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
        """Customers whose wake-up is at or before ``now`` (removed from the index), earliest first."""
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


class PartitionTasks:
    """The pipeline on the store's partitions; ``pipeline.core`` may be swapped between batches."""

    erased_key: Callable[[str], str] | None = None
    """Where an erased customer's mark is stored (``segments.state.erasure_key`` with the
    deployment's secret; the runtime sets it). None: marks stay under the customer id."""

    input_topic_id: str | None = None
    """The input topic's id from the broker (``kafka.broker.topic_id``; the worker sets it). Stored per
    partition: when it changes, the topic was deleted and created again, its offsets start over,
    and the offsets customers remember from the old topic are forgotten rather than used to skip
    new records. None: not checked."""

    def __init__(self, core: Core, store: DnaStore, *, input_topic: str) -> None:
        self.pipeline = Pipeline(core, source=input_topic, kafka=True, encode=encode)
        self.store = store
        self.wakes = WakeIndex()
        self.customers: dict[int, int] = {}
        self.unreadable = 0
        """Stored states that could not be decoded (each started afresh)."""

    @property
    def core(self) -> Core:
        return self.pipeline.core

    @core.setter
    def core(self, core: Core) -> None:
        self.pipeline.core = core

    def index_partition(self, partition: int, items: Iterable[tuple[str, bytes]]) -> int:
        """Rebuild the wake index of a recovered partition from its stored states; returns its customers."""
        self.wakes.drop(partition)
        count = 0
        newest = self.pipeline.newest
        rekey: dict[str, bytes | None] = {}
        moved = 0
        seen: list[tuple[str, bytes]] = []
        incarnation: bytes | None = None
        indexed = False
        for customer_id, raw in items:
            if customer_id == INPUT_TOPIC_KEY:
                incarnation = raw
                continue
            if customer_id == INDEX_MARK:
                indexed = True
                continue
            if customer_id.startswith("\x00"):
                continue
            seen.append((customer_id, raw))
            try:
                state = decode(raw)
            except StateFormatError:
                continue
            if state.erased and self.erased_key is not None:  # a mark from before marks were keyed by hash
                rekey[customer_id] = None
                rekey[self.erased_key(customer_id)] = raw
                moved += 1
            self.wakes.set(partition, customer_id, state.wake)
            if state.dna.last_seen > newest.get(partition, 0.0):
                newest[partition] = state.dna.last_seen
            count += not state.erased
        if self.input_topic_id is not None and incarnation != self.input_topic_id.encode():
            if incarnation is not None:
                rekey.update(self._forget_offsets(seen))
                log.warning(
                    "partition %d: input topic %s was created again (id %s, was %s): the input offsets its %d customers "
                    "remembered are forgotten", partition, self.pipeline.source, self.input_topic_id, incarnation.decode(errors="replace"), len(seen),
                )
            rekey[INPUT_TOPIC_KEY] = self.input_topic_id.encode()
        if not indexed:  # state from before the member index: build it once (engine.worker.member_index)
            rekey.update(rebuild_writes(seen))
        if rekey:
            self.store.put_many(partition, rekey)
        if moved:
            log.info("partition %d: %d erased marks moved from the customer id to its keyed hash", partition, moved)
        self.customers[partition] = count
        return count

    @staticmethod
    def _forget_offsets(items: list[tuple[str, bytes]]) -> dict[str, bytes | None]:
        """The states of ``items`` with no input offset remembered (-1: nothing skipped by offset)."""
        writes: dict[str, bytes | None] = {}
        for customer_id, raw in items:
            try:
                state = decode(raw)
            except StateFormatError:
                continue
            if state.offset >= 0 and not state.erased:  # an erased mark ignores every event anyway
                state.offset = -1
                writes[customer_id] = encode(state)
        return writes

    def drop(self, partition: int) -> None:
        self.wakes.drop(partition)
        self.customers.pop(partition, None)
        self.pipeline.newest.pop(partition, None)

    def load(self, partition: int, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        """Decoded stored states; an unreadable one is logged, counted and started afresh."""
        states: dict[str, CustomerState] = {}
        found = self.store.get_many(partition, customer_ids)
        erased_key = self.erased_key
        if erased_key is not None and len(found) < len(customer_ids):  # new customers, or erased ones: look for a mark
            marks = {erased_key(c): c for c in customer_ids if c not in found}
            for key, raw in self.store.get_many(partition, marks).items():
                found[marks[key]] = raw
        for customer_id, raw in found.items():
            try:
                states[customer_id] = decode(raw)
            except StateFormatError as exc:
                self.unreadable += 1
                log.error("stored state of customer %r is unreadable (%s); starting it afresh", customer_id, exc)
        return states

    def _stage(self, out: Batch) -> None:
        """Queue the batch's new states in the store and index their wake-ups."""
        for partition, states in out.states.items():
            if not states:
                continue
            loaded = out.loaded[partition]
            joined = 0
            wakes = self.wakes
            for customer_id, state in states.items():
                before = loaded.get(customer_id)
                known = before is not None and not before.erased
                if not known and not state.erased:
                    joined += 1
                elif known and state.erased:
                    joined -= 1
                wakes.set(partition, customer_id, state.wake)
            writes = out.encoded[partition]
            if self.erased_key is not None:
                writes = erasure_writes(writes, states, self.erased_key)
            self.store.put_many(partition, writes)
            if members := index_writes(out, partition):  # the segment-members index, in the same flush
                self.store.put_many(partition, members)
            self.customers[partition] = self.customers.get(partition, 0) + joined

    def process(self, records: Sequence[InputRecord], now: float) -> Batch:
        """One input batch (``now``: the wall clock, epoch seconds), staged; the outputs to deliver."""
        out = self.pipeline.process(records, now, self.load)
        self._stage(out)
        return out

    def tick(self, partitions: Iterable[int], now: float, *, limit: int = 10_000) -> Batch:
        """Let time run on to ``now`` for customers whose wake-up has come (cause ``tick``)."""
        out = Batch()
        for partition in partitions:
            due = self.wakes.due(partition, now, limit)
            if not due:
                continue
            part = self.pipeline.advance(partition, due, now, self.load)
            self._stage(part)
            out.merge(part)
            stepped, loaded = part.states[partition], part.loaded[partition]
            for customer_id in due:  # not due after all (a stale index entry): keep its wake-up indexed
                if customer_id not in stepped and customer_id in loaded:
                    self.wakes.set(partition, customer_id, loaded[customer_id].wake)
        return out

    def resync(self, partition: int, customer_ids: Sequence[str], now: float | None = None) -> tuple[Batch, int]:
        """Re-evaluate customers last evaluated under older rules (cause ``rules:<version>``);
        ``now``: the wall clock, the processing clock of the decisions this makes."""
        out = self.pipeline.advance(partition, customer_ids, None, self.load, now)
        self._stage(out)
        return out, len(out.states.get(partition, {}))
