"""The in-memory DNA store: dicts per partition, for tests, replay and the runtime's unit tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

__all__ = ["MemoryStore"]


class MemoryStore:
    """Dicts per partition: the store for tests and replay, where nothing needs to survive."""

    def __init__(self) -> None:
        self._data: dict[int, dict[str, bytes]] = {}

    async def start(self) -> None:
        """Nothing to acquire."""

    async def stop(self) -> None:
        """Nothing to release."""

    def get_many(self, partition: int, keys: Iterable[str]) -> dict[str, bytes]:
        """Values present for ``keys``."""
        data = self._data.get(partition, {})
        return {k: data[k] for k in keys if k in data}

    def put_many(self, partition: int, items: Mapping[str, bytes | None]) -> None:
        """Apply at once (nothing to stage)."""
        data = self._data.setdefault(partition, {})
        for key, value in items.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value

    async def flush(self) -> None:
        """Writes are already applied."""

    async def recover(self, partition: int) -> int:
        """Open the partition; there is no changelog to read."""
        self._data.setdefault(partition, {})
        return 0

    def close(self, partition: int) -> None:
        """Keep the data: in memory a revoked partition may come back."""

    def items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        """Every key and value of ``partition``."""
        return iter(list(self._data.get(partition, {}).items()))

    def scan(self, partition: int, prefix: str, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        """Keys with ``prefix`` after ``after``, in UTF-8 byte order (RocksDB's), at most ``limit``."""
        low = (after or prefix).encode()
        data = self._data.get(partition, {})
        keys = sorted((k.encode() for k in data if k.startswith(prefix) and (after is None or k.encode() > low)))
        return [(k.decode(), data[k.decode()]) for k in keys[:limit]]
