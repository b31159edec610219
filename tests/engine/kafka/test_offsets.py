"""Tansu's ListOffsets(latest) defect, reproduced, and the fix proven at aiokafka's end_offsets seam."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import aiokafka
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaAdminClient

from microseg.engine.kafka import offsets
from microseg.engine.kafka.offsets import (
    end_offsets_fix_installed,
    install_end_offsets_fix,
    list_end_offsets,
    true_end_offsets,
    uninstall_end_offsets_fix,
)

pytestmark = pytest.mark.broker

BATCHES = 4
BATCH_SIZE = 50
TOTAL = BATCHES * BATCH_SIZE


@pytest.fixture(autouse=True)
def _no_fix() -> Iterator[None]:
    uninstall_end_offsets_fix()
    yield
    uninstall_end_offsets_fix()


@pytest.fixture(scope="module")
def batched_topic(broker: str) -> str:
    """A 2-partition topic whose partition 0 holds four 50-record batches; partition 1 is empty."""
    topic = f"offsets-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1, "configs": {"retention.ms": "-1", "retention.bytes": "-1"}}})
    admin.close()

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker)
        await producer.start()
        try:
            for b in range(BATCHES):
                batch = producer.create_batch()
                for i in range(BATCH_SIZE):
                    batch.append(key=f"k{i}".encode(), value=f"{b}:{i}".encode(), timestamp=None)
                await (await producer.send_batch(batch, topic, partition=0))
        finally:
            await producer.stop()

    asyncio.run(produce())
    return topic


async def _with_consumer(broker: str, body):  # type: ignore[no-untyped-def]
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    await consumer.start()
    try:
        return await body(consumer)
    finally:
        await consumer.stop()


async def _read_until(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> int:
    """Read ``tp`` from the start until the position reaches ``end``, as a recovery loop does."""
    consumer.assign([tp])
    consumer.seek(tp, 0)
    seen = 0
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=500, max_records=1000)
        seen += sum(1 for r in batch.get(tp, []) if r.offset < end)
    return seen


def test_tansu_still_misreports_end_offsets(broker: str, batched_topic: str) -> None:
    """Fails once the broker reports the true end: then delete microseg/engine/offsets.py's workaround."""
    tp = TopicPartition(batched_topic, 0)
    raw = asyncio.run(_with_consumer(broker, lambda c: c.end_offsets([tp])))[tp]
    assert raw < TOTAL, (
        f"the embedded broker now reports end offset {raw} == {TOTAL}: Tansu's ListOffsets(latest) is fixed; "
        "remove install_end_offsets_fix and its callers (microseg/engine/offsets.py, broker_for)"
    )
    assert raw == TOTAL - BATCH_SIZE + 1, "ListOffsets(latest) = base offset of the last batch + 1"


def test_unfixed_recovery_stops_early(broker: str, batched_topic: str) -> None:
    tp = TopicPartition(batched_topic, 0)

    async def body(consumer: AIOKafkaConsumer) -> int:
        end = (await consumer.end_offsets([tp]))[tp]
        return await _read_until(consumer, tp, end)

    assert asyncio.run(_with_consumer(broker, body)) < TOTAL


def test_true_end_offsets(broker: str, batched_topic: str) -> None:
    tps = [TopicPartition(batched_topic, 0), TopicPartition(batched_topic, 1)]
    expected = {tps[0]: TOTAL, tps[1]: 0}

    async def body(consumer: AIOKafkaConsumer) -> tuple[dict, dict, dict]:
        return (
            await true_end_offsets(consumer, tps),
            await true_end_offsets(consumer._client, tps),
            await list_end_offsets(consumer._client, tps),
        )

    from_consumer, from_client, listed = asyncio.run(_with_consumer(broker, body))
    assert from_consumer == expected
    assert from_client == expected
    assert listed[tps[0]] < TOTAL


def test_installed_fix_makes_recovery_complete(broker: str, batched_topic: str) -> None:
    tp = TopicPartition(batched_topic, 0)
    assert install_end_offsets_fix() and end_offsets_fix_installed()
    assert install_end_offsets_fix(), "installing twice is harmless"

    async def body(consumer: AIOKafkaConsumer) -> tuple[int, int]:
        end = (await consumer.end_offsets([tp]))[tp]
        return end, await _read_until(consumer, tp, end)

    assert asyncio.run(_with_consumer(broker, body)) == (TOTAL, TOTAL)
    uninstall_end_offsets_fix()
    assert not end_offsets_fix_installed()


def test_fix_is_pinned_to_aiokafka_version(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(aiokafka, "__version__", "0.99.0")
    with caplog.at_level(logging.WARNING, logger=offsets.__name__):
        assert install_end_offsets_fix() is False
    assert not end_offsets_fix_installed()
    assert "written for aiokafka 0.14.0, found 0.99.0" in caplog.text


def test_faust_reads_end_offsets_through_the_patched_seam() -> None:
    """Faust's recovery highwaters come from AIOKafkaConsumer.end_offsets, the method we patch."""
    import inspect

    from faust.transport.drivers import aiokafka as faust_driver

    assert "await consumer.end_offsets(partitions)" in inspect.getsource(faust_driver.AIOKafkaConsumerThread._highwaters)
