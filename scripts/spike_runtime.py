"""Spike: how fast can one worker do a read-modify-write per event with rocksdict + batched changelog?

Pre-loads N events (C customers, P partitions) on the embedded broker, then runs one variant:

- ``aiokafka``: the hot path on a plain group-managed AIOKafkaConsumer (rebalance listener
  recovers/closes store partitions; manual commit after outputs and state are flushed).
- ``faust-shell``: the ``aiokafka`` variant running inside a started Faust App (web + a timer).
- ``faust``: a Faust agent over ``stream.take_events(N, within=...)`` calling the same hot path
  (store partitions recovered in ``on_partitions_assigned``; Faust commits what was acked, which is
  after the batch's flush returned).

Usage: .venv/bin/python scripts/spike_runtime.py --variant aiokafka|faust-shell|faust [--events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError

from microseg.engine.kafka.broker import EmbeddedBroker, ensure_topics, free_port
from microseg.engine.kafka.offsets import install_end_offsets_fix
from microseg.engine.settings import Settings
from microseg.engine.state.rocksdb import RocksChangelogStore

__all__: list[str] = []

log = logging.getLogger("spike")


def quiet_logs() -> None:
    """Debug records are built and discarded per message otherwise (11% of a Faust profile)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in ("aiokafka", "kafka", "faust", "mode", "microseg"):
        logging.getLogger(name).setLevel(logging.WARNING)
    log.setLevel(logging.INFO)


async def preload(bootstrap: str, topic: str, events: int, customers: int, partitions: int) -> float:
    """Fill the input topic with pre-built batches (keyed like the product: partition by customer)."""
    rng = random.Random(7)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        batches = {p: producer.create_batch() for p in range(partitions)}
        futures = []
        for i in range(events):
            customer = f"c-{rng.randrange(customers)}"
            partition = hash(customer) % partitions
            value = orjson.dumps({"event_id": f"e-{i}", "customer_id": customer, "type": "page_view", "ts": 1_700_000_000 + i, "props": {"page": "/p"}})
            if batches[partition].append(key=customer.encode(), value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(batches[partition], topic, partition=partition))
                batches[partition] = producer.create_batch()
                batches[partition].append(key=customer.encode(), value=value, timestamp=None)
        for partition, batch in batches.items():
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return events / (time.perf_counter() - started)


class HotPath:
    """Decode, one state read/write per customer per batch, ~3% outputs, flush, then let offsets go."""

    def __init__(self, store: RocksChangelogStore, output_topic: str) -> None:
        self.store = store
        self.output_topic = output_topic
        self.processed = 0
        self.first_at: float | None = None
        self.last_at = 0.0

    async def process(self, records: list[tuple[int, bytes, bytes]]) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for partition, key, value in records:
            by_partition[partition].append((key, value))
        producer = self.store.producer
        outputs = []
        for partition, items in by_partition.items():
            keys = {k.decode() for k, _ in items}
            states = {k: orjson.loads(v) for k, v in self.store.get_many(partition, keys).items()}
            for key, value in items:
                event = orjson.loads(value)
                customer = event["customer_id"]
                state = states.get(customer)
                if state is None:
                    state = states[customer] = {"n": 0, "first": event["ts"], "seen": []}
                state["n"] += 1
                state["last"] = event["ts"]
                state["seen"] = ([event["event_id"]] + state["seen"])[:8]
                if state["n"] % 32 == 1:
                    outputs.append(producer.send(self.output_topic, orjson.dumps({"customer_id": customer, "n": state["n"]}), key=key, partition=partition))
            self.store.put_many(partition, {k: orjson.dumps(v) for k, v in states.items()})
        if outputs:
            await asyncio.gather(*[await f for f in outputs])
        await self.store.flush()
        self.processed += len(records)
        self.last_at = time.perf_counter()


class _Listener(ConsumerRebalanceListener):
    """aiokafka runs these in its coordinator task, concurrently with the poll loop: share its lock."""

    def __init__(self, store: RocksChangelogStore, lock: asyncio.Lock) -> None:
        self.store = store
        self.lock = lock
        self.rebalances = 0

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.lock:
            await self.store.flush()
            for tp in revoked:
                self.store.close(tp.partition)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        async with self.lock:
            self.rebalances += 1
            for tp in assigned:
                await self.store.recover(tp.partition)


async def run_aiokafka(bootstrap: str, settings: Settings, hot: HotPath, total: int) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"spike-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=8000,
        heartbeat_interval_ms=1000,
        max_poll_records=20_000,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=32 << 20,
    )
    lock = asyncio.Lock()
    listener = _Listener(hot.store, lock)
    consumer.subscribe([settings.input_topic], listener=listener)
    await consumer.start()
    try:
        while hot.processed < total:
            batch = await consumer.getmany(timeout_ms=200, max_records=20_000)
            async with lock:
                owned = hot.store.partitions
                for tp, rs in batch.items():
                    if rs and tp.partition not in owned and tp in consumer.assignment():
                        consumer.seek(tp, rs[0].offset)  # arrived before its state was recovered: read again
                batch = {tp: rs for tp, rs in batch.items() if rs and tp.partition in owned}
                records = [(tp.partition, r.key, r.value) for tp, rs in batch.items() for r in rs]
                if not records:
                    continue
                await hot.process(records)
                try:
                    await consumer.commit({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
                except CommitFailedError as exc:
                    log.warning("commit refused after a rebalance (records will be re-read): %s", exc)
    finally:
        await consumer.stop()
    log.info("rebalances seen: %d", listener.rebalances)


async def run_faust(bootstrap: str, settings: Settings, hot: HotPath, total: int, take: int, within: float) -> None:
    import faust

    app = faust.App(
        f"spike-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,
        broker_session_timeout=8,
        broker_heartbeat_interval=1,
        broker_commit_interval=1.0,
        broker_max_poll_records=20_000,
        consumer_max_fetch_size=8 << 20,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=50_000,
        stream_wait_empty=False,
        producer_linger_ms=5,
    )
    topic = app.topic(settings.input_topic, key_serializer="raw", value_serializer="raw", partitions=settings.partitions)
    done = asyncio.Event()

    @app.agent(topic)
    async def agent(stream: Any) -> None:
        async for events in stream.take_events(take, within=within):
            await hot.process([(e.message.partition, e.message.key, e.message.value) for e in events])
            if hot.processed >= total:
                done.set()

    @app.on_partitions_revoked.connect
    async def _revoked(app: Any, revoked: Any, **kwargs: Any) -> None:
        await hot.store.flush()
        for tp in revoked:
            if tp.topic == settings.input_topic:
                hot.store.close(tp.partition)

    @app.on_partitions_assigned.connect
    async def _assigned(app: Any, assigned: Any, **kwargs: Any) -> None:
        for tp in assigned:
            if tp.topic == settings.input_topic:
                await hot.store.recover(tp.partition)

    await app.start()
    try:
        await done.wait()
    finally:
        await app.stop()


async def run_faust_shell(bootstrap: str, settings: Settings, hot: HotPath, total: int) -> None:
    """Faust App as shell (web, timers, lifecycle) with the aiokafka hot path as a task on its loop."""
    import faust

    app = faust.App(
        f"spike-shell-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        web_enabled=True,
        web_host="127.0.0.1",
        web_port=free_port(),
        topic_allow_declare=False,
        broker_session_timeout=8,
        broker_heartbeat_interval=1,
    )
    ticks = 0

    @app.timer(interval=0.5)
    async def _tick() -> None:
        nonlocal ticks
        ticks += 1

    await app.start()
    try:
        await run_aiokafka(bootstrap, settings, hot, total)
    finally:
        await app.stop()
    log.info("faust timer ticked %d times while the hot path ran", ticks)


async def main_async(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    settings = Settings(partitions=args.partitions, input_topic=f"spike-in-{uuid.uuid4().hex[:6]}", changelog_topic=f"spike-cl-{uuid.uuid4().hex[:6]}", changes_topic=f"spike-out-{uuid.uuid4().hex[:6]}")
    ensure_topics(bootstrap, settings)
    produce_rate = await preload(bootstrap, settings.input_topic, args.events, args.customers, args.partitions)
    store = RocksChangelogStore(Path(tempfile.mkdtemp(prefix="spike-")), bootstrap=bootstrap, changelog_topic=settings.changelog_topic)
    await store.start()
    hot = HotPath(store, settings.changes_topic)
    started = time.perf_counter()
    try:
        if args.variant == "aiokafka":
            await run_aiokafka(bootstrap, settings, hot, args.events)
        elif args.variant == "faust-shell":
            await run_faust_shell(bootstrap, settings, hot, args.events)
        else:
            await run_faust(bootstrap, settings, hot, args.events, args.take, args.within)
    finally:
        await store.stop()
    assert hot.first_at is not None
    return {
        "variant": args.variant,
        "events": hot.processed,
        "events_per_s": round(hot.processed / (hot.last_at - hot.first_at)),
        "startup_s": round(hot.first_at - started, 2),
        "produce_per_s": round(produce_rate),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=["aiokafka", "faust", "faust-shell"], default="aiokafka")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--take", type=int, default=10_000)
    parser.add_argument("--within", type=float, default=0.2)
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    quiet_logs()
    if args.uvloop:
        import uvloop

        uvloop.install()
    install_end_offsets_fix()
    with EmbeddedBroker() as broker:
        result = asyncio.run(main_async(args, broker.bootstrap))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
