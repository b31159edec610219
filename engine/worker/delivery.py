"""Delivering a batch's outputs: keyed records to their topics, in pre-built producer batches.

Partitions follow Kafka's default keyed partitioner (murmur2 of the customer id), so consumers
of ``segment-changes`` and ``next-best-messages`` see each customer's records in order on one
partition, as they would from any Kafka producer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

__all__ = ["OutputWriter"]


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

    async def send(self, topic: str, records: Iterable[tuple[bytes | None, dict[str, Any]]]) -> list[asyncio.Future[Any]]:
        """Queue records (key, value) for ``topic``; the futures resolve when the broker has them."""
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
        count = 0
        for key, value in records:
            if count == 0:
                count = await self._partitions(topic)
            if key is None:
                partition = 0
            else:
                placed = self._placed.get((key, count))
                if placed is None:
                    if len(self._placed) > 200_000:
                        self._placed.clear()
                    placed = self._placed[(key, count)] = self._partitioner(key, list(range(count)), [])
                partition = placed
            by_partition.setdefault(partition, []).append((key, orjson.dumps(value)))
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
