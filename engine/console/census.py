"""The console's reads of the customers stored on this worker: a segment's members (paged),
and micro-segment cells and their sizes.

Members are a range scan of the member index. Cells are one pass over the worker's ready
partitions in the DNA store. A partition's keys and values
are copied under the runtime's lock (so no batch changes them mid-scan), then decoded outside it,
yielding to the event loop every ``CHUNK`` customers so the hot path is never held for a whole scan.
A scan is kept for ``FRESH_S`` seconds and reused by the pages read in that time.

Erased customers and store keys that are not customer ids (``\\x00`` marks) are skipped; a state
that cannot be read is counted, not shown.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from microseg.segments.state import StateFormatError, decode

from microseg.engine.worker.member_index import members_page, profile_of
from microseg.engine.worker.routing import decode_cursor, encode_cursor

__all__ = ["CHUNK", "FRESH_S", "CELL_BANDS", "Census", "Scan", "cell_histogram", "members"]

CHUNK = 2_000
FRESH_S = 15.0
CELL_BANDS = (("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6-20", 6, 20), ("21-100", 21, 100), ("101-1000", 101, 1000), ("1001+", 1001, 10**12))
"""Cell-size bands of the micro-segment histogram (customers per cell), as ``rules preview`` prints them."""


@dataclass
class Scan:
    """One pass over the stored customers: ``cells`` (customers per micro-segment code),
    ``customers`` counted, ``unreadable`` states, at ``t`` (the census clock's seconds)."""

    t: float
    customers: int = 0
    unreadable: int = 0
    cells: Counter[str] = field(default_factory=Counter)


def cell_histogram(cells: Counter[str]) -> list[tuple[str, int]]:
    """(band, number of cells whose size falls in it) for every band of ``CELL_BANDS``."""
    return [(name, sum(1 for n in cells.values() if lo <= n <= hi)) for name, lo, hi in CELL_BANDS]


async def _states(runtime: Any) -> Any:
    """(customer id, decoded state or None) for every customer of the ready partitions."""
    done = 0
    for partition in sorted(runtime.ready):
        async with runtime.lock:
            if partition not in runtime.ready:
                continue
            rows = [(k, v) for k, v in runtime.store.items(partition) if not k.startswith("\x00")]
        for customer_id, raw in rows:
            try:
                state = decode(raw)
            except StateFormatError:
                yield customer_id, None
                continue
            if not state.erased:
                yield customer_id, state
            done += 1
            if done % CHUNK == 0:
                await asyncio.sleep(0)


class Census:
    """Scans of the worker's stored customers, each reused for ``FRESH_S`` seconds."""

    def __init__(self, runtime: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.clock = clock
        self._scan: Scan | None = None
        self._key: tuple[Any, ...] = ()
        self._busy = asyncio.Lock()

    async def scan(self) -> Scan:
        key = (self.runtime.ruleset.version, tuple(sorted(self.runtime.ready)))
        async with self._busy:
            if self._scan is not None and key == self._key and self.clock() - self._scan.t < FRESH_S:
                return self._scan
            found = Scan(self.clock())
            async for _, state in _states(self.runtime):
                if state is None:
                    found.unreadable += 1
                    continue
                found.customers += 1
                if state.code:
                    found.cells[state.code] += 1
            self._scan, self._key = found, key
            return found


async def members(runtime: Any, segment: str, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """A page of ``segment``'s members on this worker's ready partitions, from the member index
    (``engine.worker.member_index.members_page``, what ``GET /segments/{id}/members`` reads), with
    the same opaque cursors (``engine.worker.routing``); and the next cursor (None at the end).
    Raises ``ValueError`` on a cursor no worker made."""
    partitions = sorted(runtime.ready)
    start, after = decode_cursor(cursor) if cursor else (partitions[0] if partitions else 0, None)
    found: list[dict[str, Any]] = []
    for partition in [p for p in partitions if p >= start]:
        if partition != start:
            after = None
        async with runtime.lock:  # no batch writes the index mid-page
            if partition not in runtime.ready:
                continue
            page, more = members_page(runtime.store, partition, segment, after, limit - len(found))
        found += page
        if len(found) >= limit:
            if more:
                return found, encode_cursor(partition, profile_of(found[-1]))
            later = [p for p in partitions if p > partition]
            return found, encode_cursor(later[0], None) if later else None
    return found, None
