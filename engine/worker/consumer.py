"""The hot path: one aiokafka consumer in the worker's consumer group, feeding ``Runtime.handle``.

Measured here (docs/runtime-notes.md): a Faust agent spends most of its time handing over and
acknowledging one message at a time (about 11k events/s at best), while a plain consumer
fetching whole batches lets the same work run at the core's speed. Faust remains the process
shell (web, timers, lifecycle); group membership for the input topic is Kafka's, through this
consumer. Offsets are committed inside the runtime's lock, after outputs and state are durable.
At start, input waits until the published rules and model have been read (at most ``RULES_WAIT_S``):
input read under a stale rules directory would dead-letter custom event types and restart traits,
and under the local model would be scored and re-scored at once by the published one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from microseg.engine.kafka.assignor import CopartitionedAssignor
from microseg.engine.kafka.clients import input_consumer
from microseg.engine.settings import Settings
from microseg.engine.worker.runtime import Runtime

__all__ = ["consume_forever"]

log = logging.getLogger(__name__)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: Runtime, topic: str) -> None:
        self.runtime = runtime
        self.topic = topic

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.runtime.health.joined = False
        await self.runtime.on_revoked([tp.partition for tp in revoked if tp.topic == self.topic])

    async def on_partitions_assigned(self, assigned: Any) -> None:
        partitions = sorted(tp.partition for tp in assigned if tp.topic == self.topic)
        log.info("assigned input partitions %s", partitions)
        await self.runtime.on_assigned(partitions)
        self.runtime.health.joined = True
        await self.runtime.prepare(partitions)


async def _rules_end(consumer: Any, topic: str) -> int | None:
    """A one-partition topic's end offset now (the rules or models topic: what its agent must read
    before the worker is ready)."""
    try:
        ends = await asyncio.wait_for(consumer.end_offsets([TopicPartition(topic, 0)]), timeout=10)
    except (KafkaError, asyncio.TimeoutError) as exc:
        log.warning("cannot read the end of topic %s (%s); readiness waits for it", topic, exc)
        return None
    return int(ends.get(TopicPartition(topic, 0), 0))


RULES_WAIT_S = 30.0
"""How long the input waits at start for the published rules and model to be read."""


def _rules_caught_up(runtime: Runtime) -> bool:
    health = runtime.health
    return (
        health.rules_end is not None and health.rules_read >= health.rules_end
        and health.models_end is not None and health.models_read >= health.models_end
        and health.posteriors_end is not None and health.posteriors_read >= health.posteriors_end
    )


async def consume_forever(settings: Settings, bootstrap: str, runtime: Runtime, *, ready: asyncio.Event | None = None) -> None:
    """Consume the input topic in the worker group until cancelled."""
    topic = settings.input_topic
    assignor = CopartitionedAssignor(settings.web_url())
    runtime.routes = assignor  # who owns which partition: requests for others are routed there
    consumer = input_consumer(settings, bootstrap, assignor)
    # the identity topic is co-partitioned with the input (the assignor deals partition numbers):
    # partition p of both, and the DNA store's partition p, are one task (engine.worker.resolution)
    consumer.subscribe([topic, settings.identity_topic], listener=_Rebalance(runtime, topic))
    await runtime.start()
    await consumer.start()
    runtime.highwater = lambda partition: consumer.highwater(TopicPartition(topic, partition))
    runtime.health.rules_end = await _rules_end(consumer, settings.rules_topic)
    runtime.health.models_end = await _rules_end(consumer, settings.models_topic)
    runtime.health.posteriors_end = await _rules_end(consumer, settings.posteriors_topic)
    retry_rules_end = time.monotonic() + 5

    async def commit(offsets: dict[int, int], side: dict[int, int] | None = None) -> None:
        """The input's next offsets, and ``side``: the identity topic's."""
        try:
            committed = {TopicPartition(topic, p): o for p, o in offsets.items()}
            if side:
                committed.update({TopicPartition(settings.identity_topic, p): o for p, o in side.items()})
            await consumer.commit(committed)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("offset commit refused during a rebalance (%s); the new owner re-reads those records", exc)

    if ready is not None:
        ready.set()
    rules_wait_until = time.monotonic() + RULES_WAIT_S
    try:
        while True:
            if (runtime.health.rules_end is None or runtime.health.models_end is None or runtime.health.posteriors_end is None) and time.monotonic() > retry_rules_end:
                if runtime.health.posteriors_end is None:
                    runtime.health.posteriors_end = await _rules_end(consumer, settings.posteriors_topic)
                if runtime.health.rules_end is None:
                    runtime.health.rules_end = await _rules_end(consumer, settings.rules_topic)
                if runtime.health.models_end is None:
                    runtime.health.models_end = await _rules_end(consumer, settings.models_topic)
                retry_rules_end = time.monotonic() + 5
            if rules_wait_until and not _rules_caught_up(runtime):
                # Input read under stale rules would dead-letter custom event types and restart traits
                if time.monotonic() < rules_wait_until:
                    await asyncio.sleep(0.05)
                    continue
                log.warning(
                    "the rules topic %s and models topic %s were not read within %.0f s; processing input under rules %s and model %s",
                    settings.rules_topic, settings.models_topic, RULES_WAIT_S, runtime.ruleset.version, runtime.model.version if runtime.model else "none",
                )
            rules_wait_until = 0.0
            try:
                batches = await consumer.getmany(timeout_ms=int(settings.batch_within_s * 1000), max_records=settings.max_batch)
            except KafkaError as exc:
                log.warning("fetch failed (%s); retrying", exc)
                await asyncio.sleep(1)
                continue
            records = [m for messages in batches.values() for m in messages]
            if records:
                log.debug("batch of %d records from partitions %s", len(records), sorted(tp.partition for tp in batches))
                await runtime.handle(records, commit=commit)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("the input consumer stopped on an unexpected error")
        raise
    finally:
        await consumer.stop()
