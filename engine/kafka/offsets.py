"""The narrow fix for Tansu 0.6.0's wrong ListOffsets(latest).

Tansu answers ListOffsets(latest) with the base offset of the partition's last record batch + 1
instead of the log end offset; a Fetch response's high watermark is right. Anything that reads
"up to the end" (Faust table recovery, our store recovery, lag) would stop early. The fix: Fetch
from the reported offset and take the high watermark when it is higher. On a correct broker the
two agree, so the correction is a no-op there.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import aiokafka
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.offset import OffsetRequest

__all__ = [
    "PINNED_AIOKAFKA",
    "end_offsets_fix_installed",
    "fetch_high_watermarks",
    "install_end_offsets_fix",
    "list_end_offsets",
    "true_end_offsets",
    "uninstall_end_offsets_fix",
]

log = logging.getLogger(__name__)

PINNED_AIOKAFKA = "0.14.0"
_FETCH_WAIT_MS = 10
_LATEST = -1
_original_end_offsets: Callable[..., Awaitable[dict[TopicPartition, int]]] | None = None


def _client_of(consumer_or_client: AIOKafkaConsumer | AIOKafkaClient) -> AIOKafkaClient:
    if isinstance(consumer_or_client, AIOKafkaClient):
        return consumer_or_client
    return consumer_or_client._client  # noqa: SLF001 - the consumer exposes no public client


async def _leaders(client: AIOKafkaClient, partitions: Iterable[TopicPartition]) -> dict[int, list[TopicPartition]]:
    by_node: dict[int, list[TopicPartition]] = collections.defaultdict(list)
    for tp in partitions:
        node = client.cluster.leader_for_partition(tp)
        if node is None or node < 0:
            client.add_topic(tp.topic)
            await client.force_metadata_update()
            node = client.cluster.leader_for_partition(tp)
        if node is None or node < 0:
            raise kafka_errors.UnknownTopicOrPartitionError(f"no leader known for {tp}")
        by_node[node].append(tp)
    return by_node


async def list_end_offsets(client: AIOKafkaClient, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
    """What the broker's ListOffsets(latest) says, uncorrected (for a bare client without a consumer)."""
    result: dict[TopicPartition, int] = {}
    for node, tps in (await _leaders(client, partitions)).items():
        by_topic: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
        for tp in tps:
            by_topic[tp.topic].append((tp.partition, _LATEST))
        response = await client.send(node, OffsetRequest(-1, 0, list(by_topic.items())))
        for topic, parts in response.topics:
            for partition, error_code, *info in parts:
                if error_code:
                    raise kafka_errors.for_code(error_code)(f"ListOffsets {topic}[{partition}]")
                result[TopicPartition(topic, partition)] = info[1] if response.API_VERSION > 0 else info[0][0]
    return result


async def fetch_high_watermarks(
    client: AIOKafkaClient, offsets: Mapping[TopicPartition, int], *, max_wait_ms: int = _FETCH_WAIT_MS
) -> dict[TopicPartition, int]:
    """The high watermark of each partition as a Fetch from the given offset reports it.

    ``max_wait_ms`` must stay positive: Tansu answers a Fetch with ``max_wait=0`` with no topics.
    """
    result: dict[TopicPartition, int] = {}
    for node, tps in (await _leaders(client, offsets)).items():
        by_topic: dict[str, list[tuple[int, int, int]]] = collections.defaultdict(list)
        for tp in tps:
            by_topic[tp.topic].append((tp.partition, offsets[tp], 1))
        request = FetchRequest(max(1, max_wait_ms), 1, 1, 0, list(by_topic.items()))
        response = await client.send(node, request)
        for topic, parts in response.topics:
            for partition, error_code, highwater, *_ in parts:
                if not error_code:
                    result[TopicPartition(topic, partition)] = highwater
    return result


async def true_end_offsets(
    consumer_or_client: AIOKafkaConsumer | AIOKafkaClient, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """End offsets corrected by a Fetch high watermark: the offset after the last record, also on Tansu."""
    tps = list(partitions)
    if not tps:
        return {}
    if isinstance(consumer_or_client, AIOKafkaConsumer):
        raw = _original_end_offsets or AIOKafkaConsumer.end_offsets
        reported = await raw(consumer_or_client, tps)
    else:
        reported = await list_end_offsets(consumer_or_client, tps)
    watermarks = await fetch_high_watermarks(_client_of(consumer_or_client), reported)
    corrected = {tp: max(off, watermarks.get(tp, off)) for tp, off in reported.items()}
    changed = {tp: (reported[tp], corrected[tp]) for tp in tps if corrected.get(tp) != reported.get(tp)}
    if changed:
        log.debug("end offsets corrected from fetch high watermarks: %s", changed)
    return corrected


async def _fixed_end_offsets(self: AIOKafkaConsumer, partitions: Any) -> dict[TopicPartition, int]:
    return await true_end_offsets(self, partitions)


def install_end_offsets_fix() -> bool:
    """Patch ``AIOKafkaConsumer.end_offsets`` (the seam Faust's recovery uses); True if installed.

    Pinned to aiokafka ``PINNED_AIOKAFKA``: other versions get a warning and no patch, so an upgrade
    is looked at instead of silently relying on private internals.
    """
    global _original_end_offsets
    if _original_end_offsets is not None:
        return True
    if aiokafka.__version__ != PINNED_AIOKAFKA:
        log.warning(
            "not installing the embedded-broker end-offsets fix: written for aiokafka %s, found %s; "
            "table recovery on the embedded broker may stop early (see microseg.engine.kafka.offsets)",
            PINNED_AIOKAFKA,
            aiokafka.__version__,
        )
        return False
    _original_end_offsets = AIOKafkaConsumer.end_offsets
    AIOKafkaConsumer.end_offsets = _fixed_end_offsets  # type: ignore[method-assign]
    log.info("installed the embedded-broker (Tansu) end-offsets fix on aiokafka %s", aiokafka.__version__)
    return True


def uninstall_end_offsets_fix() -> None:
    """Restore aiokafka's own ``end_offsets`` (tests use it to show the defect)."""
    global _original_end_offsets
    if _original_end_offsets is not None:
        AIOKafkaConsumer.end_offsets = _original_end_offsets  # type: ignore[method-assign]
        _original_end_offsets = None


def end_offsets_fix_installed() -> bool:
    """Whether ``install_end_offsets_fix`` is in effect."""
    return _original_end_offsets is not None
