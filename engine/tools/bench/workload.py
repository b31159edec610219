"""The bench's input: simulated event lines and their keys (customer ids), sized to the run."""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta, timezone

import orjson

__all__ = ["EVENTS_PER_CUSTOMER_DAY", "make_lines", "make_population_lines", "event_ids", "identity_mix"]


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


def identity_mix(
    lines: list[bytes], keys: list[bytes], anonymous: float = 0.2, identify: float = 0.05, *, visitor: str = "v"
) -> tuple[list[bytes], list[bytes], dict[str, int]]:
    """The bench's identity mix (issue 17): customers' first events become an anonymous visitor's
    (``anonymous_id`` ``v-<customer id>``, keyed by it), then an ``identify`` links the two (same
    instant as the visitor's last event), then the customer goes on as before. Enough customers,
    taken in order of first appearance, for about ``identify`` of the lines to be identifies and
    ``anonymous`` of them anonymous (``anonymous / identify`` events each, when they have that
    many and one more). ``visitor``: the prefix of the visitor ids (``<visitor>-<customer id>``).
    Returns the lines, their keys and the counts (``anonymous``, ``identifies``)."""
    loads, dumps = orjson.loads, orjson.dumps
    per_customer: dict[bytes, int] = {}
    for key in keys:
        per_customer[key] = per_customer.get(key, 0) + 1
    each = max(1, round(anonymous / identify)) if identify > 0 else 0
    wanted = round(identify / (1 - identify) * len(lines)) if identify < 1 else len(per_customer)  # of the lines with them
    chosen: dict[bytes, int] = {}
    for key, count in per_customer.items():  # dicts keep first-appearance order
        if len(chosen) >= wanted:
            break
        if count > each:
            chosen[key] = each
    out_lines: list[bytes] = []
    out_keys: list[bytes] = []
    left = dict(chosen)
    counts = {"anonymous": 0, "identifies": 0}
    for line, key in zip(lines, keys):
        remaining = left.get(key, 0)
        if not remaining:
            out_lines.append(line)
            out_keys.append(key)
            continue
        event = loads(line)
        customer = event.pop("customer_id")
        anonymous_id = f"{visitor}-{customer}"
        rewritten = {"event_id": event.pop("event_id"), "anonymous_id": anonymous_id, **event}
        out_lines.append(dumps(rewritten))
        out_keys.append(anonymous_id.encode())
        counts["anonymous"] += 1
        left[key] = remaining - 1
        if remaining == 1:
            link = {"event_id": f"idf-{anonymous_id}", "customer_id": customer, "anonymous_id": anonymous_id, "type": "identify", "ts": event["ts"], "props": {}}
            out_lines.append(dumps(link))
            out_keys.append(key)
            counts["identifies"] += 1
    return out_lines, out_keys, counts
