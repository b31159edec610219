"""The purchase history in the input topic, for ``microseg fit --from-topic``.

Every partition of the input topic is read from its beginning up to the end offset it had when
the read started (records produced meanwhile are left for the next fit), with a plain group-less
consumer (``kafka.clients.state_reader``): nothing is committed and the workers' group is not
touched. End offsets are asked before ``assign()`` and, on the embedded broker, corrected as the
worker corrects them (``kafka.offsets``; docs/runtime-notes.md).

Each record is validated as the worker validates it, with the rule set's event catalog (or the
built-in one): a record the worker would dead-letter is skipped and counted with its reason.
Purchases then give (customer_id, date of ``ts`` as written, amount) exactly as
``fit --from-events`` reads a file (``fit.purchase_fields``), duplicate ``event_id``s count
once, and customers with an ``erasure_requested`` event are left out altogether: the worker
forgets them, so does the fit. The result is fit's ``TransactionLog``: the same file produced
to the topic fits to the same parameters.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import orjson
from aiokafka import TopicPartition

from microseg.errors import MicrosegError
from microseg.schemas.event_catalog import DEFAULT_CATALOG, EventCatalog
from microseg.schemas.event_models import InvalidEvent

from microseg.engine.kafka.broker import BrokerError, check_reachable
from microseg.engine.kafka.clients import state_reader
from microseg.engine.settings import Settings
from microseg.engine.tools.fit import RowProblem, TransactionBuilder, TransactionLog, purchase_fields

__all__ = ["TopicRead", "read_topic_purchases", "STALL_S"]

STALL_S = 30.0
"""A partition that yields nothing for this long before its end offset is reached stops the read
(``BrokerError``): the broker is gone, or the records below the end are no longer fetchable."""

_MAX_PROBLEMS_KEPT = 100_000
"""Skipped records kept with their reason (all are counted)."""


@dataclass
class TopicRead:
    """What a read of the input topic found: the log to fit and the counts the command prints."""

    log: TransactionLog
    records: int = 0
    purchases: int = 0
    skipped: int = 0
    duplicates: int = 0
    erased_customers: int = 0
    ends: dict[int, int] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)


class _Fold:
    """Folds decoded records into transactions as they arrive."""

    def __init__(self, topic: str, catalog: EventCatalog, now: float) -> None:
        self.topic = topic
        self.decode = catalog.decode
        self.now = now
        self.out = TransactionBuilder()
        self.seen: set[str] = set()
        self.erased: set[str] = set()
        self.records = 0
        self.purchases = 0
        self.skipped = 0
        self.duplicates = 0
        self.reasons: Counter[str] = Counter()

    def _skip(self, partition: int, offset: int, reason: str) -> None:
        self.skipped += 1
        self.reasons[reason.split(":")[0][:40]] += 1
        if len(self.out.problems) < _MAX_PROBLEMS_KEPT:
            self.out.problems.append(RowProblem(offset + 1, reason, where=f"{self.topic}[{partition}]@{offset}"))

    def add(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.records += 1
        if value is None:
            self._skip(partition, offset, "a record without a value (tombstone)")
            return
        try:
            event = self.decode(value, reference_t=self.now, key=key)
        except InvalidEvent as exc:
            self._skip(partition, offset, str(exc))
            return
        if event.type == "erasure_requested":
            self.erased.add(event.customer_id)
            return
        if event.type != "purchase":
            return
        try:
            found = purchase_fields(orjson.loads(value))
        except ValueError as exc:  # validated above, so only a value the fit refuses
            self._skip(partition, offset, str(exc))
            return
        if found is None:
            return
        if event.event_id in self.seen:
            self.duplicates += 1
            return
        self.seen.add(event.event_id)
        self.purchases += 1
        self.out.add(*found)

    def result(self, ends: dict[int, int]) -> TopicRead:
        log = self.out.build(f"topic {self.topic}")
        erased_codes = [code for customer_id, code in self.out.codes.items() if customer_id in self.erased]
        if erased_codes:
            keep = ~np.isin(log.customer, np.asarray(erased_codes, dtype=np.int64))
            log = replace(log, customer=log.customer[keep], day=log.day[keep], amount=log.amount[keep])
        return TopicRead(
            log, self.records, self.purchases, self.skipped, self.duplicates, len(self.erased), ends, self.reasons
        )


async def _read(settings: Settings, bootstrap: str, topic: str, fold: _Fold, on_progress: Callable[[int], None] | None) -> dict[int, int]:
    consumer = state_reader(bootstrap, settings.aiokafka_kwargs(), client_id=f"{settings.group_id}-fit")
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            raise BrokerError(f"topic {topic} does not exist on {bootstrap}; set MICROSEG_INPUT_TOPIC to the workers' input topic")
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = await consumer.end_offsets(tps)  # before assign(): see docs/runtime-notes.md
        starts = await consumer.beginning_offsets(tps)
        left = {tp: ends[tp] for tp in tps if ends[tp] > starts[tp]}
        if not left:
            return {tp.partition: ends[tp] for tp in tps}
        consumer.assign(list(left))
        await consumer.seek_to_beginning(*left)
        progress = time.monotonic()
        while left:
            batches = await consumer.getmany(*left, timeout_ms=1000, max_records=10_000)
            for tp, messages in batches.items():
                end = ends[tp]
                for message in messages:
                    if message.offset < end:
                        fold.add(tp.partition, message.offset, message.key, message.value)
                if on_progress is not None:
                    on_progress(len(messages))
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    del left[tp]
                    progress = time.monotonic()
            if batches:
                progress = time.monotonic()
            elif time.monotonic() - progress > STALL_S:
                behind = ", ".join(f"{tp.partition} at {await consumer.position(tp)} of {end}" for tp, end in sorted(left.items()))
                raise BrokerError(f"reading {topic} stalled for {STALL_S:.0f} s before its end offsets (partitions {behind})")
        return {tp.partition: ends[tp] for tp in tps}
    finally:
        await consumer.stop()


def read_topic_purchases(
    settings: Settings,
    bootstrap: str,
    *,
    catalog: EventCatalog | None = None,
    now: float | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> TopicRead:
    """The purchases of ``settings.input_topic`` as a ``TransactionLog`` (see the module).

    ``catalog``: the rule set's event catalog (default: the built-in types); ``now``: the clock of
    the future-time check, epoch seconds (default: the wall clock). Raises ``BrokerError`` (one
    line) when the broker cannot be reached, the topic does not exist or the read stalls.
    """
    check_reachable(bootstrap, settings)
    if settings.fix_end_offsets:
        from microseg.engine.kafka.offsets import install_end_offsets_fix

        install_end_offsets_fix()
    topic = settings.input_topic
    fold = _Fold(topic, catalog or DEFAULT_CATALOG, time.time() if now is None else now)
    try:
        ends = asyncio.run(_read(settings, bootstrap, topic, fold, on_progress))
    except MicrosegError:
        raise
    except Exception as exc:  # noqa: BLE001 - a client error is one line, like every broker problem
        raise BrokerError(f"cannot read {topic} on {bootstrap}: {type(exc).__name__}: {exc}") from None
    return fold.result(ends)
