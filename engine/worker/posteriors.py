"""The message variants' posterior, shared by every worker through Kafka (docs/architecture.md,
"Variants and the shared posterior").

Three steps, each safe under at-least-once delivery:

1. **Count** (every worker, per input partition it owns): the decisions it publishes with a
   variant and the ``campaign_converted`` events it accepts, per (message, variant). The totals
   are stored in the partition's own state (key ``\\x00posterior-counts``) in the same flush as the
   customers' state, so a redelivered batch is either already in both (its events are duplicates,
   not counted again) or in neither (counted once when reprocessed). A moved partition takes its
   totals with it.
2. **Share** (every worker, every ``posterior_publish_s``): the *absolute* totals of each owned
   partition on the compacted topic ``posterior_counts_topic``, key ``partition|message|variant``.
   A repeated or reordered record cannot inflate anything: readers keep, per key, the greatest
   totals seen (they only grow), and compaction keeps the last.
3. **Cut** (the worker owning input partition 0, every ``posterior_interval_s``): the sum over
   partitions becomes a snapshot (``segments.bandit``) published on ``posteriors_topic`` with
   ``effective_from`` = wall clock + ``posterior_lead_s``. Every worker reads that topic from the
   start into a ``PosteriorHistory``; a decision at event time ``t`` reads ``history.at(t)``, and
   ``microseg replay --posteriors`` reads the same records, so worker and replay choose alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import orjson

from microseg.errors import MicrosegError
from microseg.segments.bandit import (
    PosteriorHistory,
    PosteriorRecordError,
    PosteriorSnapshot,
    read_snapshot_record,
    snapshot_record,
    snapshot_version,
)

__all__ = ["Posteriors", "COUNTS_KEY", "attach", "read_history_lines", "counts_record", "read_counts_record"]

log = logging.getLogger(__name__)

COUNTS_KEY = "\x00posterior-counts"
"""Where a partition's totals live in its state store (bookkeeping keys start with NUL)."""

Arm = tuple[str, str]


def attach(core: Any, history: PosteriorHistory) -> None:
    """Give a core the history its decisions read (``Core.posterior``; ``segments.bandit.snapshot_at``).
    A core built without that slot decides without variants' posterior: nothing to attach."""
    try:
        core.posterior = history
    except AttributeError:
        log.debug("this core has no posterior slot; variants are not chosen by Thompson sampling")


def counts_record(partition: int, arm: Arm, totals: Sequence[int]) -> tuple[bytes, bytes]:
    """The compacted counts topic's record of one partition's arm: key ``partition|message|variant``."""
    message, variant = arm
    key = f"{partition}|{message}|{variant}".encode()
    value = {"partition": partition, "message": message, "variant": variant, "decisions": int(totals[0]), "conversions": int(totals[1])}
    return key, orjson.dumps(value)


def read_counts_record(value: bytes) -> tuple[int, Arm, tuple[int, int]]:
    """(partition, arm, (decisions, conversions)) of a counts record; ``PosteriorRecordError`` if malformed."""
    try:
        found = orjson.loads(value)
        partition, arm = int(found["partition"]), (str(found["message"]), str(found["variant"]))
        decisions, conversions = int(found["decisions"]), int(found["conversions"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PosteriorRecordError(f"a posterior counts record is malformed ({type(exc).__name__}: {exc})") from None
    if decisions < 0 or conversions < 0:
        raise PosteriorRecordError(f"posterior counts of {arm[0]}/{arm[1]} on partition {partition} are negative")
    return partition, arm, (decisions, conversions)


class Posteriors:
    """One worker's side of the shared posterior: its partitions' totals, every partition's
    published totals, and the history of snapshots decisions read (see the module)."""

    def __init__(self, *, lead_s: float = 30.0) -> None:
        self.history = PosteriorHistory()
        self.lead_s = lead_s
        self.counts: dict[int, dict[Arm, list[int]]] = {}
        """Per owned partition: arm -> [decisions, conversions], as stored."""
        self.dirty: set[int] = set()
        """Partitions whose totals changed since they were last published."""
        self.shared: dict[tuple[int, Arm], tuple[int, int]] = {}
        """Every partition's published totals (from the counts topic), greatest seen per key."""
        self.unattributed = 0
        """Conversions of a message with variants that name none of them: no arm to credit."""
        self.late = 0
        """Snapshots read after this worker had processed events at or past their ``effective_from``."""
        self._variants: Mapping[str, frozenset[str]] = {}
        self._variants_version: str | None = None

    # -- 1. count -------------------------------------------------------------------------

    def load(self, partition: int, raw: bytes | None) -> None:
        """A partition's stored totals (None: nothing counted yet); a corrupt value restarts from zero, logged."""
        counts: dict[Arm, list[int]] = {}
        if raw is not None:
            try:
                for key, (decisions, conversions) in orjson.loads(raw).items():
                    message, _, variant = key.partition("\x1f")
                    counts[(message, variant)] = [int(decisions), int(conversions)]
            except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
                log.error("partition %d: stored posterior counts are unreadable (%s); counting restarts from zero", partition, exc)
                counts = {}
        self.counts[partition] = counts
        self.dirty.add(partition)

    def drop(self, partition: int) -> None:
        self.counts.pop(partition, None)
        self.dirty.discard(partition)

    def _with_variants(self, ruleset: Any) -> Mapping[str, frozenset[str]]:
        version = getattr(ruleset, "version", None)
        if version != self._variants_version:
            self._variants = {m.id: frozenset(m.variants) for m in getattr(ruleset, "messages", ()) if getattr(m, "variants", ())}
            self._variants_version = version
        return self._variants

    def count(
        self,
        messages: Iterable[Mapping[str, Any]],
        conversions: Iterable[tuple[int, str, str | None]],
        partition_of: Callable[[str], int],
        ruleset: Any,
    ) -> dict[int, dict[str, bytes]]:
        """Add a batch's published decisions (those with a ``variant``) and accepted conversions
        (of the rule set's messages with variants); the store writes of the partitions that changed."""
        changed: set[int] = set()
        with_variants = self._with_variants(ruleset)
        for record in messages:
            variant = record.get("variant")
            if not variant or record.get("holdout"):
                continue
            partition = partition_of(record["customer_id"])
            if partition in self.counts:
                self.counts[partition].setdefault((record["message"], variant), [0, 0])[0] += 1
                changed.add(partition)
        for partition, message, variant in conversions:
            known = with_variants.get(message)
            if partition not in self.counts or known is None:
                continue
            if not variant or variant not in known:  # no arm, or one the rules do not have
                self.unattributed += 1
                continue
            self.counts[partition].setdefault((message, variant), [0, 0])[1] += 1
            changed.add(partition)
        self.dirty |= changed
        return {p: {COUNTS_KEY: self._encoded(p)} for p in changed}

    def _encoded(self, partition: int) -> bytes:
        return orjson.dumps({f"{m}\x1f{v}": totals for (m, v), totals in sorted(self.counts[partition].items())})

    # -- 2. share -------------------------------------------------------------------------

    def to_publish(self) -> list[tuple[bytes, bytes]]:
        """The counts records of every owned partition that changed since the last call."""
        records = [counts_record(p, arm, totals) for p in sorted(self.dirty) if p in self.counts for arm, totals in sorted(self.counts[p].items())]
        self.dirty.clear()
        return records

    def merge(self, values: Iterable[bytes | None]) -> int:
        """Counts records read from the topic; bad ones are logged and skipped. Returns how many were bad."""
        bad = 0
        for value in values:
            if value is None:
                continue
            try:
                partition, arm, (decisions, conversions) = read_counts_record(value)
            except PosteriorRecordError as exc:
                bad += 1
                log.error("%s; skipped", exc)
                continue
            known = self.shared.get((partition, arm), (0, 0))
            self.shared[(partition, arm)] = (max(known[0], decisions), max(known[1], conversions))
        return bad

    # -- 3. cut ---------------------------------------------------------------------------

    def arms(self) -> dict[Arm, tuple[int, int]]:
        """The sum over partitions of the shared totals."""
        total: dict[Arm, list[int]] = {}
        for (_, arm), (decisions, conversions) in self.shared.items():
            cell = total.setdefault(arm, [0, 0])
            cell[0] += decisions
            cell[1] += conversions
        return {arm: (d, c) for arm, (d, c) in sorted(total.items())}

    def cut(self, now: float) -> bytes | None:
        """A new snapshot record effective at ``now + lead_s``, or None when the counts have not
        changed since the newest snapshot (or there are none)."""
        arms = self.arms()
        latest = self.history.latest()
        if not arms or (latest is not None and dict(latest[1].arms) == arms):
            return None
        effective_from = math.floor(now + self.lead_s)
        snapshot = PosteriorSnapshot(snapshot_version(effective_from, arms), MappingProxyType(arms))
        return orjson.dumps(snapshot_record(effective_from, snapshot, cut_at=now))

    def apply(self, values: Iterable[bytes | None], newest_event_t: float | None = None) -> list[str]:
        """Snapshot records read from the topic into the history; the versions added. A record read
        when this worker already processed events at or past its ``effective_from`` is counted as late
        (decisions made meanwhile read an older snapshot than replay will: docs/architecture.md)."""
        added = []
        for value in values:
            if value is None:
                continue
            try:
                effective_from, snapshot = read_snapshot_record(orjson.loads(value))
            except (orjson.JSONDecodeError, PosteriorRecordError) as exc:
                log.error("a published posterior snapshot is unreadable (%s); skipped", exc)
                continue
            if self.history.add(effective_from, snapshot):
                added.append(snapshot.version)
                if newest_event_t is not None and newest_event_t >= effective_from:
                    self.late += 1
                    log.warning("posterior %s arrived after events at its effective time were processed; see docs/architecture.md", snapshot.version)
        return added


# --- replay's side ---------------------------------------------------------------------------


def read_history_lines(lines: Iterable[bytes], where: str) -> PosteriorHistory:
    """Snapshot records, one JSON object per line (``{topic, key, value}`` lines of a dump are
    accepted too); ``MicrosegError`` naming the line for one that cannot be read."""
    history = PosteriorHistory()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            found = orjson.loads(line)
            if isinstance(found, dict) and isinstance(found.get("value"), dict) and "topic" in found:
                found = found["value"]
            history.add(*read_snapshot_record(found))
        except (orjson.JSONDecodeError, PosteriorRecordError) as exc:
            raise MicrosegError(f"{where}:{number}: not a posterior snapshot ({exc})") from None
    return history


# --- the worker's agents and timers ----------------------------------------------------------


def add_to_app(app: Any, settings: Any, runtime: Any) -> None:
    """The Faust side (``engine.worker.app``): agents reading the counts and snapshot topics from
    their start (the app's group is private to the process), a timer publishing this worker's
    totals and, on the owner of input partition 0, a timer cutting snapshots."""
    import time

    counts_topic = app.topic(settings.posterior_counts_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    snapshots_topic = app.topic(settings.posteriors_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    posteriors: Posteriors = runtime.posteriors
    metrics = runtime.metrics

    @app.agent(counts_topic, name="posterior-counts")
    async def _counts(stream: Any) -> None:
        async for events in stream.take_events(1000, within=1.0):
            posteriors.merge(event.value for event in events)

    @app.agent(snapshots_topic, name="posteriors")
    async def _snapshots(stream: Any) -> None:
        async for events in stream.take_events(1000, within=1.0):
            late = posteriors.late
            newest = max(runtime.tasks.pipeline.newest.values(), default=None)
            if posteriors.apply([event.value for event in events], newest):
                latest = posteriors.history.latest()
                assert latest is not None
                metrics.posterior_version.clear()
                metrics.posterior_version.labels(version=latest[1].version).set(latest[0])
                metrics.posterior_snapshots.set(len(posteriors.history))
                if posteriors.late > late:
                    metrics.posterior_late.inc(posteriors.late - late)
            runtime.health.posteriors_read = max(runtime.health.posteriors_read, events[-1].message.offset + 1)

    @app.timer(interval=settings.posterior_publish_s, on_leader=False)
    async def _publish() -> None:
        records = posteriors.to_publish()
        try:
            for key, value in records:
                await counts_topic.send(key=key, value=value)
        except Exception:  # noqa: BLE001 - published again at the next tick: totals are absolute
            posteriors.dirty |= {int(key.split(b"|", 1)[0]) for key, _ in records}
            log.warning("publishing posterior counts failed; retried at the next interval", exc_info=True)

    @app.timer(interval=settings.posterior_interval_s, on_leader=False)
    async def _cut() -> None:
        if 0 not in runtime.ready:  # one cutter: the owner of input partition 0
            return
        record = posteriors.cut(time.time())
        if record is not None:
            await snapshots_topic.send(key=b"posterior", value=record)
