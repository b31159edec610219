"""The latency phase's tools: a paced producer that stamps each record with its send time, and percentiles.

Latency is from an input record's produce timestamp to the timestamp of a segment change it caused
(both Kafka record timestamps, epoch milliseconds).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import orjson

from microseg.engine.settings import Settings

__all__ = ["paced_produce", "percentile", "latencies_ms"]


async def paced_produce(settings: Settings, bootstrap: str, lines: list[bytes], keys: list[bytes], rate: float,
                        on_sent: Callable[[int], None] | None = None) -> dict[int, int]:
    """Send ``lines`` at ``rate`` per second in 5 ms slices, each record stamped with its send time (ms).

    Returns the stamp of every line by index.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap.split(","), acks=1, linger_ms=0, enable_idempotence=False, **settings.aiokafka_kwargs())
    await producer.start()
    stamps: dict[int, int] = {}
    futures = []
    try:
        started = time.perf_counter()
        sent = 0
        while sent < len(lines):
            due = min(len(lines), int((time.perf_counter() - started) * rate) + 1)
            while sent < due:
                stamp = int(time.time() * 1000)
                futures.append(await producer.send(settings.input_topic, value=lines[sent], key=keys[sent], timestamp_ms=stamp))
                stamps[sent] = stamp
                sent += 1
            if on_sent is not None:
                on_sent(sent)
            await asyncio.sleep(0.005)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return stamps


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0-100) of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def latencies_ms(changes: list[tuple[int, bytes]], sent_at: dict[str, int]) -> list[int]:
    """Milliseconds from each input's send stamp to each segment change whose ``cause`` is that
    input's event id (``changes`` as ``(timestamp ms, value)``; negative gaps count as 0)."""
    latencies = []
    for ts, value in changes:
        cause = orjson.loads(value).get("cause")
        if cause in sent_at:
            latencies.append(max(ts - sent_at[cause], 0))
    return latencies
