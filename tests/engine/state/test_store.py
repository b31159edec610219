"""The DNA store: round trips, exact recovery (same and wiped data dir), tombstones, offset bookkeeping."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from kafka import KafkaAdminClient

from microseg.engine.state import DnaStore, MemoryStore, StoreError
from microseg.engine.state.rocksdb import RocksChangelogStore

T = TypeVar("T")
PARTITIONS = 2


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def changelog(broker: str) -> str:
    topic = f"changelog-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:
        admin.create_topics(
            {topic: {"num_partitions": PARTITIONS, "replication_factor": 1, "configs": {"cleanup.policy": "compact", "retention.ms": "-1", "retention.bytes": "-1"}}}
        )
    finally:
        admin.close()
    return topic


def _rocks(path: Path, broker: str, topic: str, **kwargs: object) -> RocksChangelogStore:
    return RocksChangelogStore(path, bootstrap=broker, changelog_topic=topic, **kwargs)  # type: ignore[arg-type]


async def _with(store: RocksChangelogStore, body: Callable[[RocksChangelogStore], Awaitable[T]]) -> T:
    await store.start()
    try:
        return await body(store)
    finally:
        await store.stop()


def test_memory_store_round_trip() -> None:
    store = MemoryStore()
    assert isinstance(store, DnaStore)
    run(store.recover(0))
    store.put_many(0, {"a": b"1", "b": b"2"})
    assert store.get_many(0, ["a", "b", "c"]) == {"a": b"1", "b": b"2"}
    store.put_many(0, {"a": None})
    run(store.flush())
    assert store.get_many(0, ["a", "b"]) == {"b": b"2"}
    assert store.get_many(1, ["b"]) == {}
    assert dict(store.items(0)) == {"b": b"2"}


@pytest.mark.broker
def test_rocks_round_trip_and_tombstones(broker: str, changelog: str, tmp_data_dir: Path) -> None:
    async def body(store: RocksChangelogStore) -> None:
        assert isinstance(store, DnaStore)
        with pytest.raises(StoreError, match=r"recover\(0\)"):
            store.get_many(0, ["a"])
        assert await store.recover(0) == 0
        store.put_many(0, {"a": b"1", "b": b"2", "ü-ß": b"3"})
        assert store.get_many(0, ["a", "b", "ü-ß", "zz"]) == {"a": b"1", "b": b"2", "ü-ß": b"3"}, "staged writes are visible"
        await store.flush()
        store.put_many(0, {"a": None, "b": b"22"})
        assert store.get_many(0, ["a", "b"]) == {"b": b"22"}
        await store.flush()
        assert store.get_many(0, ["a", "b", "ü-ß"]) == {"b": b"22", "ü-ß": b"3"}
        assert dict(store.items(0)) == {"b": b"22", "ü-ß": b"3"}

    run(_with(_rocks(tmp_data_dir, broker, changelog), body))

    async def wiped(store: RocksChangelogStore) -> dict[str, bytes]:
        assert await store.recover(0) == 5, "3 puts + 1 tombstone + 1 update"
        return dict(store.items(0))

    assert run(_with(_rocks(tmp_data_dir / "wiped", broker, changelog), wiped)) == {"b": b"22", "ü-ß": b"3"}


def _batches(keys: int, batch: int, rounds: int) -> tuple[list[dict[str, bytes | None]], dict[str, bytes]]:
    """Rounds of overlapping writes with some deletions; returns the batches and the final state."""
    batches: list[dict[str, bytes | None]] = []
    final: dict[str, bytes] = {}
    for r in range(rounds):
        for start in range(0, keys, batch):
            items: dict[str, bytes | None] = {}
            for i in range(start, min(start + batch, keys)):
                key = f"customer-{i}"
                if r == rounds - 1 and i % 97 == 0:
                    items[key] = None
                    final.pop(key, None)
                else:
                    value = f"{key}:round-{r}:".encode() + b"x" * (i % 300)
                    items[key] = value
                    final[key] = value
            batches.append(items)
    return batches, final


def _put(store: DnaStore, items: dict[str, bytes | None]) -> None:
    by_partition: dict[int, dict[str, bytes | None]] = {}
    for key, value in items.items():
        by_partition.setdefault(hash(key) % PARTITIONS, {})[key] = value
    for partition, part_items in by_partition.items():
        store.put_many(partition, part_items)


def _everything(store: RocksChangelogStore) -> dict[str, bytes]:
    return {k: v for p in range(PARTITIONS) for k, v in store.items(p)}


@pytest.mark.broker
def test_wiped_data_dir_restores_everything(broker: str, changelog: str, tmp_data_dir: Path) -> None:
    batches, final = _batches(keys=20_000, batch=2_500, rounds=3)

    async def write(store: RocksChangelogStore) -> None:
        for p in range(PARTITIONS):
            await store.recover(p)
        for items in batches:
            _put(store, items)
            await store.flush()
        assert _everything(store) == final

    run(_with(_rocks(tmp_data_dir / "first", broker, changelog), write))

    async def restore(store: RocksChangelogStore) -> dict[str, bytes]:
        applied = sum([await store.recover(p) for p in range(PARTITIONS)])
        assert applied == sum(len(b) for b in batches), "every changelog record, up to the true end"
        return _everything(store)

    restored = run(_with(_rocks(tmp_data_dir / "wiped", broker, changelog), restore))
    assert len(restored) == len(final) == 20_000 - len(range(0, 20_000, 97))
    assert restored == final


@pytest.mark.broker
def test_same_data_dir_catches_up_after_more_writes(broker: str, changelog: str, tmp_data_dir: Path) -> None:
    batches, final = _batches(keys=6_000, batch=1_000, rounds=2)
    half = len(batches) // 2
    dir_a, dir_b = tmp_data_dir / "a", tmp_data_dir / "b"

    async def first_half(store: RocksChangelogStore) -> None:
        for p in range(PARTITIONS):
            await store.recover(p)
        for items in batches[:half]:
            _put(store, items)
            await store.flush()

    run(_with(_rocks(dir_a, broker, changelog), first_half))

    async def reopen_unchanged(store: RocksChangelogStore) -> int:
        return sum([await store.recover(p) for p in range(PARTITIONS)])

    assert run(_with(_rocks(dir_a, broker, changelog), reopen_unchanged)) == 0, "the stored offset is at the end"

    async def second_half_elsewhere(store: RocksChangelogStore) -> None:
        for p in range(PARTITIONS):
            await store.recover(p)
        for items in batches[half:]:
            _put(store, items)
            await store.flush()

    run(_with(_rocks(dir_b, broker, changelog), second_half_elsewhere))

    async def catch_up(store: RocksChangelogStore) -> tuple[int, dict[str, bytes]]:
        applied = sum([await store.recover(p) for p in range(PARTITIONS)])
        return applied, _everything(store)

    applied, state = run(_with(_rocks(dir_a, broker, changelog), catch_up))
    assert applied == sum(len(b) for b in batches[half:]), "only what was written since"
    assert state == final


@pytest.mark.broker
def test_unflushed_writes_are_not_durable(broker: str, changelog: str, tmp_data_dir: Path) -> None:
    async def body(store: RocksChangelogStore) -> None:
        await store.recover(0)
        store.put_many(0, {"kept": b"1"})
        await store.flush()
        store.put_many(0, {"lost": b"2", "kept": b"changed"})
        store.close(0)

    run(_with(_rocks(tmp_data_dir, broker, changelog), body))

    async def reopen(store: RocksChangelogStore) -> dict[str, bytes]:
        await store.recover(0)
        return dict(store.items(0))

    assert run(_with(_rocks(tmp_data_dir, broker, changelog), reopen)) == {"kept": b"1"}


@pytest.mark.broker
def test_local_state_ahead_of_changelog(broker: str, changelog: str, tmp_data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A data dir kept across an embedded-broker restart (memory storage) must not survive as truth."""

    async def fill(store: RocksChangelogStore) -> None:
        await store.recover(0)
        store.put_many(0, {f"k{i}": b"v" for i in range(10)})
        await store.flush()

    run(_with(_rocks(tmp_data_dir / "old", broker, changelog), fill))
    stale = tmp_data_dir / "stale"
    shutil.copytree(tmp_data_dir / "old", stale)
    other = f"{changelog}-new"
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics({other: {"num_partitions": PARTITIONS, "replication_factor": 1}})
    admin.close()

    async def strict(store: RocksChangelogStore) -> None:
        await store.recover(0)

    with pytest.raises(StoreError, match="beyond the changelog's end 0"):
        run(_with(_rocks(stale, broker, other, on_changelog_behind="error"), strict))

    async def reset(store: RocksChangelogStore) -> dict[str, bytes]:
        await store.recover(0)
        return dict(store.items(0))

    with caplog.at_level(logging.WARNING):
        assert run(_with(_rocks(stale, broker, other), reset)) == {}
    assert "wiping local state" in caplog.text
