"""The bench's Kafka side: a broker (configured or embedded), fresh topics, filling them and reading them back.

Timestamps are Kafka record timestamps in epoch milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from microseg.engine.settings import Settings

__all__ = ["bench_broker", "bench_settings", "preload", "raw_consume", "read_topics", "delete_topics"]


@contextlib.contextmanager
def bench_broker(base: Settings) -> Iterator[tuple[str, bool]]:
    """``(bootstrap, embedded)``: the configured broker, else an embedded one for the duration."""
    from microseg.engine.kafka.broker import broker_for

    with broker_for(base, create_topics=False) as endpoint:
        yield endpoint.bootstrap, endpoint.embedded


def bench_settings(base: Settings, prefix: str, partitions: int) -> Settings:
    """``base`` with topics and group named ``<prefix>-...`` and ``partitions`` partitions."""
    return base.model_copy(
        update={
            "input_topic": f"{prefix}-events",
            "changes_topic": f"{prefix}-changes",
            "messages_topic": f"{prefix}-messages",
            "dlq_topic": f"{prefix}-dlq",
            "rules_topic": f"{prefix}-rules",
            "models_topic": f"{prefix}-models",
            "changelog_topic": f"{prefix}-changelog",
            "identity_topic": f"{prefix}-identity",
            "erasure_audit_topic": f"{prefix}-erasures-audit",
            "memberships_topic": f"{prefix}-memberships",
            "group_id": f"{prefix}-group",
            "partitions": partitions,
        }
    )


async def preload(settings: Settings, bootstrap: str, lines: list[bytes], keys: list[bytes], on_sent: Callable[[int], None] | None = None) -> float:
    """Fill the input topic with pre-built batches keyed by customer; returns seconds taken."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap.split(","), acks=1, linger_ms=5, max_batch_size=1 << 20,
        max_request_size=8 << 20, enable_idempotence=False, **settings.aiokafka_kwargs(),
    )
    await producer.start()
    topic = settings.input_topic
    try:
        count = len(await producer.partitions_for(topic))
        every = list(range(count))
        partitioner = DefaultPartitioner()
        by_partition: dict[int, list[int]] = {p: [] for p in every}
        for index, key in enumerate(keys):
            by_partition[partitioner(key, every, every)].append(index)
        started = time.perf_counter()
        futures = []
        sent = 0
        for partition, indexes in by_partition.items():
            batch = producer.create_batch()
            for index in indexes:
                if batch.append(key=keys[index], value=lines[index], timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=keys[index], value=lines[index], timestamp=None)
                sent += 1
                if on_sent is not None and sent % 20_000 == 0:
                    on_sent(sent)
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def _consumer(settings: Settings, bootstrap: str, **extra: Any) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_bytes=64 << 20, max_partition_fetch_bytes=8 << 20, fetch_max_wait_ms=100, **extra, **settings.aiokafka_kwargs(),
    )


async def raw_consume(settings: Settings, bootstrap: str, expected: int) -> float:
    """Seconds for a plain consumer (no group, no decoding) to read ``expected`` records of the input topic."""
    from aiokafka import TopicPartition

    consumer = _consumer(settings, bootstrap, max_poll_records=20_000)
    await consumer.start()
    try:
        partitions = await _partitions_of(consumer, settings.input_topic)
        consumer.assign([TopicPartition(settings.input_topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        got = 0
        started = time.perf_counter()
        deadline = started + 300
        while got < expected and time.perf_counter() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            got += sum(len(messages) for messages in batches.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def _partitions_of(consumer: Any, topic: str) -> list[int]:
    for _ in range(100):
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no partitions")


async def read_topics(settings: Settings, bootstrap: str, topics: list[str], *, idle_s: float = 1.5) -> dict[str, list[tuple[int, bytes]]]:
    """Every record of ``topics`` as (timestamp ms, value), read from the start until the end."""
    from aiokafka import TopicPartition

    consumer = _consumer(settings, bootstrap, max_poll_records=50_000)
    await consumer.start()
    out: dict[str, list[tuple[int, bytes]]] = {t: [] for t in topics}
    try:
        tps = [TopicPartition(t, p) for t in topics for p in await _partitions_of(consumer, t)]
        consumer.assign(tps)
        await consumer.seek_to_beginning()
        idle_since = time.monotonic()
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=50_000)
            if any(batches.values()):
                idle_since = time.monotonic()
                for tp, messages in batches.items():
                    out[tp.topic].extend((m.timestamp, m.value) for m in messages)
                continue
            caught_up = True
            for tp in tps:
                highwater = consumer.highwater(tp)
                if highwater is None or await consumer.position(tp) < highwater:
                    caught_up = False
                    break
            if caught_up or time.monotonic() - idle_since > idle_s:
                break
        return out
    finally:
        await consumer.stop()


def delete_topics(settings: Settings, bootstrap: str) -> None:
    """Best effort: the embedded broker keeps every topic in memory."""
    from kafka import KafkaAdminClient

    with contextlib.suppress(Exception):
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="microseg-bench", **({} if not settings.broker else settings.kafka_python_kwargs()))
        try:
            admin.delete_topics([*settings.topic_names, settings.rules_topic, settings.models_topic])
            admin.delete_topics([settings.erasure_audit_topic, settings.memberships_topic])
        finally:
            admin.close()
