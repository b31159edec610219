"""The bench's input: simulated event lines and their keys (customer ids), sized to the run."""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta, timezone

import orjson

__all__ = ["EVENTS_PER_CUSTOMER_DAY", "make_lines", "make_population_lines", "event_ids"]


EVENTS_PER_CUSTOMER_DAY = 2.8
"""About what the simulator's personas produce per customer per simulated day (measured: ~3.1)."""


def make_lines(total: int, customers: int, seed: int = 7) -> tuple[list[bytes], list[bytes]]:
    """``total`` simulated event lines (no newline) for ``customers`` and their keys (customer ids).

    The simulated period is chosen so that the whole population is active (about
    ``total / customers`` events each) and ends a day before now, so no event is in the future.
    """
    from microseg.engine.tools.simulator import simulate_lines

    days = max(1, math.ceil(total / max(customers, 1) / EVENTS_PER_CUSTOMER_DAY))
    loads = orjson.loads
    while True:
        midnight = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        start = midnight - timedelta(days=days + 1)
        lines: list[bytes] = []
        keys: list[bytes] = []
        for line in simulate_lines(customers, days, seed, start):
            line = line.rstrip(b"\n")
            lines.append(line)
            keys.append(loads(line)["customer_id"].encode())
            if len(lines) >= total:
                return lines, keys
        days *= 2


def make_population_lines(total: int, customers: int, seed: int = 7, chunk: int = 10_000) -> tuple[list[bytes], list[bytes]]:
    """About ``total`` lines in which every one of ``customers`` appears: for large populations with few
    events each (``make_lines`` would cut the simulation off before late-starting customers arrive).

    The population is simulated in chunks of ``chunk`` customers over one day, each chunk with its
    own seed and customer-id prefix; each customer keeps its first ``ceil(total / customers)``
    events, and the chunks are interleaved line by line.
    """
    from microseg.engine.tools.simulator import simulate_lines

    cap = max(1, math.ceil(total / max(customers, 1)))
    midnight = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight - timedelta(days=2)
    streams: list[list[tuple[bytes, bytes]]] = []
    for index in range(math.ceil(customers / chunk)):
        size = min(chunk, customers - index * chunk)
        kept: list[tuple[bytes, bytes]] = []
        seen: dict[str, int] = {}
        for line in simulate_lines(size, 1, seed + index, start):
            event = orjson.loads(line)
            customer = f"p{index}-{event['customer_id']}"
            if seen.get(customer, 0) >= cap:
                continue
            seen[customer] = seen.get(customer, 0) + 1
            event["customer_id"] = customer
            kept.append((orjson.dumps(event), customer.encode()))
        streams.append(kept)
    lines: list[bytes] = []
    keys: list[bytes] = []
    for row in itertools.zip_longest(*streams):
        for item in row:
            if item is not None:
                lines.append(item[0])
                keys.append(item[1])
    return lines[:total] if len(lines) > total else lines, keys[:total] if len(keys) > total else keys


def event_ids(lines: list[bytes]) -> list[str]:
    """The ``event_id`` of each JSON line, in order."""
    return [orjson.loads(line)["event_id"] for line in lines]
