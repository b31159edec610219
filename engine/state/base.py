"""The DNA store seam: per-partition key/value state, values opaque bytes.

Two backends with the same shape: ``memory.MemoryStore`` (tests, replay, the runtime's unit
tests) and ``rocksdb.RocksChangelogStore`` (the worker: RocksDB per partition with a compacted
changelog topic). The runtime and the pipeline's hosts do not know which one they hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol, runtime_checkable

from microseg.errors import MicrosegError

__all__ = ["DnaStore", "StoreError"]


class StoreError(MicrosegError):
    """State could not be read, written, delivered to the changelog or recovered."""


@runtime_checkable
class DnaStore(Protocol):
    """Per-partition DNA state; values are opaque bytes, ``None`` in ``put_many`` deletes (GDPR)."""

    async def start(self) -> None:
        """Acquire clients and resources before first use."""

    async def stop(self) -> None:
        """Flush nothing, release everything (call ``flush`` first to keep pending writes)."""

    def get_many(self, partition: int, keys: Iterable[str]) -> dict[str, bytes]:
        """The stored values of those ``keys`` that exist, pending writes included."""

    def put_many(self, partition: int, items: Mapping[str, bytes | None]) -> None:
        """Stage writes (``None`` = delete); durable only after ``flush``."""

    async def flush(self) -> None:
        """Make every staged write durable (changelog delivered), before input offsets are committed."""

    async def recover(self, partition: int) -> int:
        """Open ``partition`` and catch up with its changelog; returns the records applied."""

    def close(self, partition: int) -> None:
        """Release ``partition`` (on revocation); staged writes not flushed are dropped."""

    def items(self, partition: int) -> Iterator[tuple[str, bytes]]:
        """Every key and value of an open ``partition`` (a snapshot: safe to write while iterating)."""

    def scan(self, partition: int, prefix: str, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` durable keys starting with ``prefix`` and sorting after ``after`` (UTF-8
        byte order, ``None``: from the first), with their values, in key order (secondary indexes)."""
