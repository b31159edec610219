"""The worker's DNA store: RocksDB per partition with a batched, compacted changelog topic.

Writes go to an in-memory overlay; ``flush()`` sends the last value per key to the changelog
(partition = input partition), waits for delivery, and only then writes the same batch, with the
next changelog offset, atomically into RocksDB. Local state therefore never runs ahead of the
changelog, and a restart (same or wiped data dir) recovers exactly what the changelog holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from microseg.engine.kafka.clients import SharedProducer, state_reader
from microseg.engine.kafka.offsets import true_end_offsets
from microseg.engine.state.base import StoreError

__all__ = ["RocksChangelogStore", "RocksTuning"]

log = logging.getLogger(__name__)

_META_CF = "microseg-meta"
_OFFSET_KEY = b"changelog-next-offset"


class RocksTuning:
    """RocksDB options for many small partitions sharing one process: one cache, one memtable budget."""

    def __init__(self, *, block_cache_mb: int = 128, write_buffer_mb: int = 8, total_write_buffers_mb: int = 128) -> None:
        import rocksdict

        self._rocksdict = rocksdict
        self.cache = rocksdict.Cache(block_cache_mb << 20)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(total_write_buffers_mb << 20, False, self.cache)
        self.write_buffer_mb = write_buffer_mb

    def options(self) -> Any:
        """Options for one partition's database (raw bytes keys and values)."""
        r = self._rocksdict
        opts = r.Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        opts.set_atomic_flush(True)
        opts.set_max_background_jobs(2)
        opts.set_max_open_files(64)
        opts.set_keep_log_file_num(2)
        opts.set_write_buffer_size(self.write_buffer_mb << 20)
        opts.set_max_write_buffer_number(2)
        opts.set_compression_type(r.DBCompressionType.lz4())
        opts.set_write_buffer_manager(self.write_buffers)
        table = r.BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_bloom_filter(10, False)
        table.set_cache_index_and_filter_blocks(True)
        opts.set_block_based_table_factory(table)
        return opts


class _Partition:
    """One partition's open database and its metadata column family."""

    def __init__(self, path: Path, options: Any) -> None:
        import rocksdict

        meta_options = rocksdict.Options(raw_mode=True)
        self.path = path
        self.db = rocksdict.Rdict(str(path), options, column_families={_META_CF: meta_options})
        self.meta = self.db.get_column_family_handle(_META_CF)
        self._meta_view = self.db.get_column_family(_META_CF)
        write_options = rocksdict.WriteOptions()
        write_options.disable_wal = True
        self.db.set_write_options(write_options)

    @property
    def next_offset(self) -> int:
        raw = self._meta_view.get(_OFFSET_KEY)
        return 0 if raw is None else int(raw)

    def write(self, items: Mapping[bytes, bytes | None], next_offset: int | None) -> None:
        import rocksdict

        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in items.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if next_offset is not None:
            batch.put(_OFFSET_KEY, str(next_offset).encode(), self.meta)
        self.db.write(batch)

    def close(self) -> None:
        # column-family objects keep the database (and its LOCK) alive: drop them first
        self.meta = self._meta_view = None
        with contextlib.suppress(Exception):
            self.db.flush()
        self.db.close()


class RocksChangelogStore:
    """rocksdict per partition under ``data_dir/partition-N`` with a compacted changelog topic.

    One ``AIOKafkaProducer`` (shared: ``producer`` may carry the worker's outputs too) delivers
    changelog records in pre-built batches; aiokafka keeps one batch in flight per partition, so
    order holds without the idempotent producer, which Tansu rejects (InitProducerId fails) — turn
    ``idempotent_producer`` on for real Kafka. Re-sending a state value is harmless: the changelog
    is compacted and only the last value per key counts. Call ``flush`` after the outputs of a
    batch are delivered and before committing input offsets.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        bootstrap: str,
        changelog_topic: str,
        client_kwargs: Mapping[str, Any] | None = None,
        producer: AIOKafkaProducer | SharedProducer | None = None,
        tuning: RocksTuning | None = None,
        on_changelog_behind: Literal["reset", "error"] = "reset",
        recovery_stall_s: float = 30.0,
        idempotent_producer: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.bootstrap = bootstrap
        self.topic = changelog_topic
        self._client_kwargs = dict(client_kwargs or {})
        self._own_producer = producer is None
        self._shared = producer if isinstance(producer, SharedProducer) else None
        self._producer = None if isinstance(producer, SharedProducer) else producer
        self._tuning = tuning
        self._on_behind = on_changelog_behind
        self._stall_s = recovery_stall_s
        self._idempotent = idempotent_producer
        self._parts: dict[int, _Partition] = {}
        self._pending: dict[int, dict[bytes, bytes | None]] = {}
        self._inflight: dict[int, dict[bytes, bytes | None]] = {}
        self._flush_lock = asyncio.Lock()

    @property
    def producer(self) -> AIOKafkaProducer:
        """The shared producer (started by ``start``)."""
        if self._producer is None:
            raise StoreError("the store is not started; call 'await store.start()' first")
        return self._producer

    @property
    def partitions(self) -> frozenset[int]:
        """Partitions currently open."""
        return frozenset(self._parts)

    async def start(self) -> None:
        """Create and start the changelog producer unless one was given."""
        if self._tuning is None:
            self._tuning = RocksTuning()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._shared is not None:
            self._producer = await self._shared.start()
        elif self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap.split(","),
                client_id="microseg-store",
                enable_idempotence=self._idempotent,
                acks="all",
                linger_ms=5,
                max_batch_size=1 << 20,
                max_request_size=8 << 20,
                **self._client_kwargs,
            )
            await self._producer.start()

    async def stop(self) -> None:
        """Close every partition and the producer it owns."""
        for partition in list(self._parts):
            self.close(partition)
        if self._own_producer and self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def _part(self, partition: int) -> _Partition:
        part = self._parts.get(partition)
        if part is None:
            msg = f"partition {partition} is not open in the DNA store; call 'await store.recover({partition})' on assignment"
            raise StoreError(msg)
        return part

    def _path(self, partition: int) -> Path:
        return self.data_dir / f"partition-{partition}"

    def _open(self, partition: int) -> _Partition:
        part = self._parts.get(partition)
        if part is None:
            assert self._tuning is not None
            try:
                part = _Partition(self._path(partition), self._tuning.options())
            except Exception as exc:
                raise StoreError(f"cannot open the DNA store at {self._path(partition)}: {exc}") from exc
            self._parts[partition] = part
        return part

    def get_many(self, partition: int, keys: Iterable[str]) -> dict[str, bytes]:
        """Values present for ``keys``: staged, then in flight, then on disk."""
        part = self._part(partition)
        pending = self._pending.get(partition, {})
        inflight = self._inflight.get(partition, {})
        found: dict[str, bytes] = {}
        missing: list[str] = []
        for key in keys:
            raw = key.encode()
            if raw in pending:
                value = pending[raw]
            elif raw in inflight:
                value = inflight[raw]
            else:
                missing.append(key)
                continue
            if value is not None:
                found[key] = value
        if missing:
            for key, value in zip(missing, part.db[[k.encode() for k in missing]], strict=True):
                if value is not None:
                    found[key] = value
        return found

    def put_many(self, partition: int, items: Mapping[str, bytes | None]) -> None:
        """Stage writes; the last value per key wins until ``flush``."""
        self._part(partition)
        pending = self._pending.setdefault(partition, {})
        for key, value in items.items():
            pending[key.encode()] = value

    async def flush(self) -> None:
        """Deliver staged writes to the changelog, then write them and the next offset to RocksDB."""
        async with self._flush_lock:
            staged = {p: items for p, items in self._pending.items() if items}
            self._pending = {}
            if not staged:
                return
            self._inflight = staged
            try:
                sent = [(p, await self._send(p, items)) for p, items in staged.items()]
                for partition, futures in sent:
                    next_offset = 0
                    for count, future in futures:
                        metadata = await future
                        next_offset = max(next_offset, metadata.offset + count)
                    part = self._parts.get(partition)
                    if part is not None:
                        part.write(staged[partition], next_offset)
            except KafkaError as exc:
                msg = f"changelog delivery to {self.topic} failed ({exc}); restart the worker so input is re-read from the last commit"
                raise StoreError(msg) from exc
            finally:
                self._inflight = {}

    async def _send(self, partition: int, items: Mapping[bytes, bytes | None]) -> list[tuple[int, asyncio.Future[Any]]]:
        producer = self.producer
        futures: list[tuple[int, asyncio.Future[Any]]] = []
        batch = producer.create_batch()
        count = 0
        for key, value in items.items():
            if batch.append(key=key, value=value, timestamp=None) is None:
                futures.append((count, await producer.send_batch(batch, self.topic, partition=partition)))
                batch, count = producer.create_batch(), 0
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise StoreError(f"state for key {key!r} ({len(value or b'')} bytes) exceeds the producer batch size")
            count += 1
        if count:
            futures.append((count, await producer.send_batch(batch, self.topic, partition=partition)))
        return futures

    async def recover(self, partition: int) -> int:
        """Open ``partition`` and apply its changelog from the stored offset to the true end."""
        started = time.monotonic()
        part = self._open(partition)
        tp = TopicPartition(self.topic, partition)
        # offsets are asked before assign(): once assigned, the fetcher's long polls share the
        # connection and Tansu answers in order, adding up to fetch_max_wait_ms per request
        consumer = state_reader(self.bootstrap, self._client_kwargs, client_id=f"microseg-recovery-{partition}")
        await consumer.start()
        try:
            end = (await true_end_offsets(consumer, [tp]))[tp]
            begin = (await consumer.beginning_offsets([tp]))[tp]
            consumer.assign([tp])
            stored = part.next_offset
            if stored > end:
                part = self._reset(partition, f"stored changelog offset {stored} is beyond the changelog's end {end}")
                stored = 0
            start = max(stored, begin)
            applied = await self._replay(consumer, tp, part, start, end) if start < end else 0
        except KafkaError as exc:
            raise StoreError(f"cannot recover {tp} from the changelog: {exc}") from exc
        finally:
            await consumer.stop()
        log.info("recovered %s: %d changelog records applied (from %d to %d) in %.2f s", tp, applied, start, end, time.monotonic() - started)
        return applied

    def _reset(self, partition: int, reason: str) -> _Partition:
        if self._on_behind == "error":
            msg = f"DNA store partition {partition}: {reason}; the changelog was recreated or truncated. Delete {self._path(partition)} to rebuild from it."
            raise StoreError(msg)
        log.warning("DNA store partition %d: %s; wiping local state and rebuilding from the changelog", partition, reason)
        self._parts.pop(partition).close()
        shutil.rmtree(self._path(partition), ignore_errors=True)
        return self._open(partition)

    async def _replay(self, consumer: AIOKafkaConsumer, tp: TopicPartition, part: _Partition, start: int, end: int) -> int:
        consumer.seek(tp, start)
        applied = 0
        position = start
        last_progress = time.monotonic()
        while position < end:
            records = (await consumer.getmany(tp, timeout_ms=500, max_records=20_000)).get(tp, [])
            if not records:
                if time.monotonic() - last_progress > self._stall_s:
                    raise StoreError(f"recovery of {tp} stalled at offset {position} of {end} for {self._stall_s:.0f} s")
                continue
            items: dict[bytes, bytes | None] = {}
            for record in records:
                if record.offset >= end:
                    break
                items[record.key] = record.value
                position = record.offset + 1
                applied += 1
            part.write(items, position)
            last_progress = time.monotonic()
        return applied

    def close(self, partition: int) -> None:
        """Close ``partition``'s database; its unflushed staged writes are dropped (with a warning)."""
        dropped = self._pending.pop(partition, None)
        if dropped:
            log.warning("closing DNA store partition %d with %d unflushed writes; they will be re-derived from input", partition, len(dropped))
        part = self._parts.pop(partition, None)
        if part is not None:
            part.close()

    def items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        """Every durable key and value of ``partition`` (staged writes excluded)."""
        for key, value in self._part(partition).db.items():
            yield key.decode(), value

    def scan(self, partition: int, prefix: str, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        """Durable keys with ``prefix`` after ``after`` (a range scan from the seek key), at most ``limit``."""
        start = (after if after is not None else prefix).encode()
        raw_prefix = prefix.encode()
        found: list[tuple[str, bytes]] = []
        if limit <= 0:
            return found
        for key, value in self._part(partition).db.items(from_key=start):
            if not key.startswith(raw_prefix):
                break
            if after is not None and key == start:
                continue
            found.append((key.decode(), value))
            if len(found) >= limit:
                break
        return found
