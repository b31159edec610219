"""The worker's moving parts around the core, independent of how records arrive.

``Runtime`` owns the rule set in force, the partition tasks (the record pipeline on the DNA
store), the output sink and the metrics, and serialises everything that touches state behind one
lock: input batches, clock ticks, rule changes and partition hand-over. The Faust app
(``engine.worker.app``) only feeds it. It runs the same on the memory store with a memory sink
(unit tests) as on RocksDB with Kafka (the worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from microseg.schemas.event_models import ANONYMOUS_KEY
from microseg.segments.evaluate import CODE_SEPARATOR
from microseg.segments.predictive import PredictiveModel
from microseg.segments.step import Core
from microseg.segments.ruleset import RuleSet
from microseg.segments.state import StateFormatError, decode, erasure_key
from microseg.segments.view import iso

from microseg.segments.pipeline import Batch, InputRecord

from microseg.engine.settings import Settings
from microseg.engine.state.base import DnaStore
from microseg.engine.worker.audit import ErasureAudit, new_api_request_id
from microseg.engine.worker.delivery import OutputSink
from microseg.engine.worker.health import Health
from microseg.engine.worker.member_index import public_profile
from microseg.engine.worker.metrics import Metrics, observe_many
from microseg.engine.worker.posteriors import COUNTS_KEY, Posteriors, attach
from microseg.engine.worker.resolution import IdentityStage
from microseg.engine.worker.tasks import PartitionTasks

__all__ = ["Runtime"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Runtime:
    def __init__(
        self,
        settings: Settings,
        store: DnaStore,
        sink: OutputSink,
        ruleset: RuleSet,
        model: PredictiveModel | None,
        *,
        metrics: Metrics | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.sink = sink
        self._started = False
        self.model = model
        self.model_origin = "packaged" if model is not None else "none"
        """Where the model in force came from (``engine.model_in_use``); the worker and the models agent set it."""
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.tasks = PartitionTasks(Core(ruleset, model), store, input_topic=settings.input_topic)
        self.identity = IdentityStage(self.tasks, input_topic=settings.input_topic, identity_topic=settings.identity_topic, partitions=settings.partitions)
        """Identity across partitions (``engine.worker.resolution``): the alias table, hand-overs through the identity topic."""
        self.posteriors = Posteriors(lead_s=settings.posterior_lead_s)
        """The message variants' shared posterior (``engine.worker.posteriors``): this worker's
        partitions' totals, everyone's published totals, and the snapshots decisions read."""
        attach(self.tasks.core, self.posteriors.history)
        self.erased_key: Callable[[str], str] = functools.partial(erasure_key, settings.erasure_key_bytes())
        """Where a customer's erased mark is stored (a keyed hash of the id, ``segments.state``)."""
        self.tasks.erased_key = self.erased_key  # type: ignore[attr-defined]
        self.audit = ErasureAudit.from_settings(settings)
        """Builds the erasure audit records (``engine.worker.audit``), sent with each batch's outputs."""
        self.lock = asyncio.Lock()
        self.assigned: set[int] = set()
        self.ready: set[int] = set()
        self.positions: dict[int, int] = {}
        self.populations: dict[int, Counter[str]] = {}
        self.started = time.time()
        self.batches = 0
        self.highwater: Callable[[int], int | None] = lambda partition: None
        self.routes: Any = None
        """Which worker URL owns which partition (``kafka.assignor.CopartitionedAssignor``; the consumer sets it)."""
        self.health = Health()
        """Readiness conditions (``/health/ready``), set by the consumer, the rules agent and the broker probe."""
        self._partitioner = DefaultPartitioner()
        self.metrics.rules_version.labels(version=ruleset.version).set(1)
        self.metrics.model_version.labels(version=model.version if model is not None else "none").set(1)

    async def start(self) -> None:
        """Start the sink, then the store (they may share a producer); idempotent."""
        if not self._started:
            await self.sink.start()
            await self.store.start()
            self._started = True

    async def stop(self) -> None:
        """Make staged state durable, then release the store and the sink."""
        async with self.lock:
            if self._started:
                await self.store.flush()
                await self.store.stop()
                await self.sink.stop()
                self._started = False

    def erasure_status(self, customer_id: str) -> tuple[str, int]:
        """What this worker knows of a customer, for ``DELETE /customers/{id}``, with its partition:
        ``known`` (stored here, not erased), ``erased`` (its mark is here), ``unknown`` (neither),
        ``recovering`` (the partition is assigned here and not recovered yet) or ``not_owned``."""
        partition = self.partition_of(customer_id)
        if partition not in self.ready:
            return ("recovering" if partition in self.assigned else "not_owned"), partition
        found = self.store.get_many(partition, [customer_id, self.erased_key(customer_id)])
        raw = found.get(customer_id)
        if raw is not None:
            try:
                erased = decode(raw).erased  # a mark from before marks were keyed by hash
            except StateFormatError:
                erased = False
            return ("erased" if erased else "known"), partition
        return ("erased" if found else "unknown"), partition

    async def request_erasure(self, customer_id: str) -> str:
        """Queue an ``erasure_requested`` event so the owning worker forgets the customer in order.
        Its id (``engine.worker.audit.new_api_request_id``) holds nothing of the customer: it goes
        to the audit trail and, as the cause, to the exits the erasure emits. ``customer_id`` is a
        profile key: an anonymous visitor's request carries its ``anonymous_id`` (keyed by it)."""
        await self.start()
        now = self.clock()
        event_id = new_api_request_id()
        anonymous_id = customer_id[1:] if customer_id[:1] == ANONYMOUS_KEY else None  # a visitor's profile key
        who = {"anonymous_id": anonymous_id} if anonymous_id is not None else {"customer_id": customer_id}
        event = {"event_id": event_id, **who, "type": "erasure_requested", "ts": iso(now), "props": {}}
        await self.sink.submit_event(anonymous_id if anonymous_id is not None else customer_id, event)
        return event_id

    async def audit_answered(self, customer_id: str, outcome: str) -> str:
        """Audit an erasure request the API answered without queueing anything (``unknown`` or
        ``already_erased``); returns the request id it was recorded under."""
        await self.start()
        request_id = new_api_request_id()
        now = self.clock()
        record = self.audit.record(customer_id, request_id, outcome, now=now, requested_t=now, rules_version=self.ruleset.version)
        await self.sink.audit([record])
        self.metrics.erasures.labels(via="api", outcome=outcome).inc()
        return request_id

    @property
    def ruleset(self) -> RuleSet:
        return self.tasks.core.ruleset

    # -- partitions ---------------------------------------------------------------------

    def partition_of(self, customer_id: str) -> int:
        """The input partition of a profile (Kafka's default keyed partitioner on the id its events
        are keyed by: a customer's id; for an anonymous visitor's profile key, U+0001 + anonymous_id,
        the anonymous_id)."""
        key = customer_id[1:] if customer_id[:1] == ANONYMOUS_KEY else customer_id
        return self._partitioner(key.encode(), list(range(self.settings.partitions)), [])

    async def _ensure_ready(self, partition: int) -> None:
        if partition in self.ready:
            return
        started = time.monotonic()
        applied = await self.store.recover(partition)
        population: Counter[str] = Counter()
        entries = []
        for customer_id, raw in self.store.items(partition):
            entries.append((customer_id, raw))
            if customer_id.startswith("\x00"):  # not a customer: bookkeeping and the member index
                continue
            try:
                population.update(decode(raw).segments)
            except StateFormatError:
                continue
        customers = self.tasks.index_partition(partition, entries)
        self.posteriors.load(partition, self.store.get_many(partition, [COUNTS_KEY]).get(COUNTS_KEY))
        self.populations[partition] = population
        self.ready.add(partition)
        self.assigned.add(partition)
        self._refresh_gauges()
        log.info("partition %d ready: %d changelog records applied, %d customers, %.2f s", partition, applied, customers, time.monotonic() - started)

    async def on_assigned(self, partitions: Iterable[int]) -> None:
        async with self.lock:
            self.assigned.update(partitions)
            self.metrics.partitions.set(len(self.assigned))

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body) for ``/health/ready``: see ``engine.worker.health``."""
        return self.health.readiness(self.assigned, self.ready)

    async def on_revoked(self, partitions: Iterable[int]) -> None:
        async with self.lock:
            await self.store.flush()
            for partition in partitions:
                self.store.close(partition)
                self.tasks.drop(partition)
                self.posteriors.drop(partition)
                self.ready.discard(partition)
                self.assigned.discard(partition)
                self.populations.pop(partition, None)
                self.positions.pop(partition, None)
                with contextlib.suppress(KeyError):
                    self.metrics.consumer_lag.remove(str(partition))
            self.metrics.partitions.set(len(self.assigned))
            self._refresh_gauges()

    # -- the hot path -------------------------------------------------------------------

    async def prepare(self, partitions: Iterable[int]) -> None:
        """Recover newly assigned partitions from their changelog before their records are processed."""
        await self.start()
        async with self.lock:
            for partition in partitions:
                if partition in self.assigned:
                    await self._ensure_ready(partition)

    async def handle(self, records: Sequence[InputRecord], commit: Callable[[dict[int, int]], Awaitable[None]] | None = None) -> Batch:
        """Process one input batch; outputs and state are durable, then ``commit`` gets the next offsets."""
        started = time.perf_counter()
        await self.start()
        async with self.lock:
            for partition in {r.partition for r in records}:
                await self._ensure_ready(partition)
            stepped = time.perf_counter()
            out, forwards = self.identity.process(records, self.clock())
            if records:
                self.metrics.processing_seconds.observe((time.perf_counter() - stepped) / len(records))
            await self._deliver(out, forwards)
            offsets: dict[int, int] = {}
            side: dict[int, int] = {}
            identity_topic = self.settings.identity_topic
            for record in records:
                into = side if getattr(record, "topic", None) == identity_topic else offsets
                if record.offset >= into.get(record.partition, -1):
                    into[record.partition] = record.offset + 1
            if commit is not None:
                await (commit(offsets, side) if side else commit(offsets))  # type: ignore[call-arg]
            self.positions.update(offsets)
            self.batches += 1
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return out

    async def tick(self) -> Batch:
        """Fire every wake-up due by the clock's now (cause ``tick``)."""
        await self.start()
        async with self.lock:
            out = self.tasks.tick(sorted(self.ready), self.clock())
            if len(out) or out.suppressed:
                await self._deliver(out)
            return out

    async def _deliver(self, out: Batch, forwards: list[Any] | None = None) -> None:
        """Outputs first, then state: a crash between the two re-emits the same records (same ids).
        ``forwards``: records for the identity topic (``engine.worker.resolution``), sent with the outputs."""
        if len(out):
            await self.sink.deliver(out)
        if forwards:
            writer = getattr(self.sink, "writer", None)
            if writer is None:
                raise RuntimeError("this output sink cannot send to the identity topic; identity across partitions needs the Kafka sink")
            await asyncio.gather(*await writer.send(self.settings.identity_topic, forwards))
            self.identity.after_delivery(forwards)
        if out.erasures:  # audited before the erasure is stored: at least once, never after the fact
            records = self.audit.of_batch(out.erasures, out.changes, now=self.clock(), rules_version=self.ruleset.version)
            await self.sink.audit(records)
            for _, value in records:
                self.metrics.erasures.labels(via=value["via"], outcome=value["outcome"]).inc()
        unattributed = self.posteriors.unattributed
        for partition, writes in self.posteriors.count(out.messages, out.conversions, self.partition_of, self.ruleset).items():
            self.store.put_many(partition, writes)  # the bandit's totals, in the same flush as the state they count
        if self.posteriors.unattributed > unattributed:
            self.metrics.conversions_unattributed.inc(self.posteriors.unattributed - unattributed)
        await self.store.flush()
        now = time.time()
        observe_many(self.metrics.produce_to_output_seconds, [max(now - produced_ms / 1000, 0.0) for produced_ms in out.source_ms])
        self._count(out, now)

    def _count(self, out: Batch, now: float) -> None:
        metrics = self.metrics
        for customer_id, error in out.stuck.items():
            log.error("time could not run on for customer %r (%s); its stored state is kept", customer_id, error)
        for kind, count in out.types.items():
            metrics.events.labels(type=kind).inc(count)
        for reason, count in out.rejected.items():
            metrics.rejected.labels(reason=reason).inc(count)
        if out.duplicates:
            metrics.duplicates.inc(out.duplicates)
        if out.after_erasure:
            metrics.after_erasure.inc(out.after_erasure)
        if out.dropped_values:
            metrics.trait_values_dropped.inc(out.dropped_values)
        if self.tasks.unreadable:
            metrics.state_errors.inc(self.tasks.unreadable)
            self.tasks.unreadable = 0
        metrics.count_outputs(out.changes, out.messages, out.suppressed)
        if not out.changes:
            return
        for partition, delta in out.moves.items():
            self.populations.setdefault(partition, Counter()).update(delta)
        observe_many(self.metrics.event_time_lag_seconds, [max(now - event_t, 0.0) for event_t in out.source_t])
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        total: Counter[str] = Counter()
        for population in self.populations.values():
            total.update(population)
        for segment in self.ruleset.segment_ids:
            self.metrics.population.labels(segment=segment).set(total.get(segment, 0))
        self.metrics.wakeups_pending.set(sum(self.tasks.wakes.pending(p) for p in self.ready))
        self.metrics.customers.set(sum(self.tasks.customers.get(p, 0) for p in self.ready))

    # -- rules --------------------------------------------------------------------------

    async def apply_rules(self, ruleset: RuleSet) -> int:
        """Swap in a new rule set and re-evaluate every stored customer (cause ``rules:<version>``)."""
        if ruleset.version == self.ruleset.version:
            return 0
        async with self.lock:
            old = self.ruleset.version
            self.tasks.core = Core(ruleset, self.model)
            attach(self.tasks.core, self.posteriors.history)
            self.metrics.rules_version.clear()
            self.metrics.rules_version.labels(version=ruleset.version).set(1)
            log.info("rules %s -> %s", old, ruleset.version)
            partitions = sorted(self.ready)
        swept = 0
        for partition in partitions:
            swept += await self._sweep(partition)
        return swept

    # -- predictive model -----------------------------------------------------------------

    async def apply_model(self, model: PredictiveModel, origin: str) -> int:
        """Swap in a new predictive model and re-evaluate every stored customer (cause ``model:<version>``)."""
        if self.model is not None and model.version == self.model.version:
            self.model, self.model_origin = model, origin  # the same scores: nothing to re-evaluate
            return 0
        async with self.lock:
            old = self.model.version if self.model is not None else "none"
            self.model, self.model_origin = model, origin
            self.tasks.core = Core(self.ruleset, model)
            attach(self.tasks.core, self.posteriors.history)
            self.metrics.model_version.clear()
            self.metrics.model_version.labels(version=model.version).set(1)
            log.info("predictive model %s -> %s", old, model.version)
            partitions = sorted(self.ready)
        swept = 0
        for partition in partitions:
            swept += await self._sweep(partition)
        return swept

    async def _sweep(self, partition: int, chunk: int = 2_000) -> int:
        async with self.lock:
            if partition not in self.ready:
                return 0
            keys = [k for k, _ in self.store.items(partition) if not k.startswith("\x00")]
        done = 0
        for start in range(0, len(keys), chunk):
            async with self.lock:
                if partition not in self.ready:
                    return done
                out, moved = self.tasks.resync(partition, keys[start : start + chunk], self.clock())
                await self._deliver(out)
                done += moved
        return done

    # -- explain ------------------------------------------------------------------------

    def explain(self, customer_id: str) -> dict[str, Any] | None:
        """DNA, segments, DNA code and why, as of the processing clock now; None if unknown here.

        ``customer_id`` is a profile key (an anonymous visitor's: U+0001 + anonymous_id); the answer
        names the profile in its public form (``customer_id`` null and ``anonymous_id`` for a
        visitor, CONTRACT §8). The stored state was evaluated at the customer's last event or
        wake-up (``evaluated_at``); a copy of it is advanced to ``self.clock()`` by the core's own
        ``advance`` (every wake-up due by then fires at its instant, as the next tick would) and
        the DNA values, rules and segments are read on that copy at now (``as_of``). Nothing is
        stored or emitted. A state the core cannot advance is shown as stored (``advance_error``).
        With ``MICROSEG_TICKS=false`` (only events move customers) time does not run on: ``as_of``
        is ``evaluated_at``."""
        partition = self.partition_of(customer_id)
        profile = public_profile(customer_id)
        if partition not in self.ready:
            return {**profile, "error": f"partition {partition} is not owned by this worker", "partition": partition}
        raw = self.store.get_many(partition, [customer_id]).get(customer_id)
        if raw is None:
            return None
        stored = decode(raw)
        if stored.erased:
            return None
        core = self.tasks.core
        state, now, problem = stored, stored.evaluated_at, None
        if self.settings.ticks:  # off: only events move customers, and explain is as of the last one
            now = max(self.clock(), stored.evaluated_at)
            try:
                state = core.advance(customer_id, stored, now, now=now).state
            except Exception as exc:  # noqa: BLE001 - explain still shows what is stored
                state, now, problem = stored, stored.evaluated_at, f"{type(exc).__name__}: {exc}"
        view = core.view(state.dna, now)
        dna = view.snapshot()
        ruleset = core.ruleset
        segments = [
            {"id": s.id, "in": s.id in state.segments, "when": s.when.source, "now": s.when.fn(view)}
            for s in ruleset.segments
        ]
        labels = state.code.split(CODE_SEPARATOR) if state.code else []
        dimensions = [{"name": d.name, "label": label} for d, label in zip(ruleset.dimensions, labels)]
        return {
            **profile,
            "partition": partition,
            "as_of": iso(now),
            "evaluated_at": iso(stored.evaluated_at),
            **({"advance_error": problem} if problem is not None else {}),
            "rules_version": state.rules_version.partition("+")[0],
            "model_version": state.rules_version.partition("+")[2] or None,
            "segments": list(state.segments),
            "code": state.code,
            "dimensions": dimensions,
            "why": segments,
            "dna": dna,
            "next_wake": iso(state.wake) if state.wake is not None else None,
            "recent_messages": [{"message": s[1], "send_at": iso(float(s[0])), "channel": s[2] if len(s) > 2 else None} for s in state.sends],
            "held_back": [{"message": m, "reason": r, "at": iso(float(t))} for t, m, r in state.held],
            "aliases": self.identity.aliases(partition, customer_id) if profile["customer_id"] is not None else [],
            "pending_messages": [
                {"message": m, "held_for": entry[2], "expires_at": iso(float(entry[0])), "redecide_at": iso(float(entry[1])) if entry[1] > 0 else None}
                for m, entry in sorted(state.pending.items())
            ],
        }

    def segment_populations(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for population in self.populations.values():
            total.update(population)
        return {s: total.get(s, 0) for s in self.ruleset.segment_ids}
