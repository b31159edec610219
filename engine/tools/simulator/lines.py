"""The simulator's events as JSON lines, optionally with deliberately malformed lines mixed in."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import orjson

from microseg.engine.tools.simulator.streams import simulate
from microseg.errors import ConfigError

__all__ = ["simulate_lines", "corrupt_line"]


def simulate_lines(customers: int, days: int, seed: int, start: datetime,
                   personas: Mapping[str, float] | None = None, inject_bad: float = 0.0, *, anonymous: bool = False) -> Iterator[bytes]:
    """JSON lines (each ending in ``\\n``) of ``simulate``; ``inject_bad`` mixes in that share of malformed ones.

    Bad lines come from their own random source, so the good lines are the same with or without them.
    """
    if not 0.0 <= inject_bad <= 1.0:
        raise ConfigError(f"inject_bad must be within 0..1, got {inject_bad}")
    dumps = orjson.dumps
    nl = orjson.OPT_APPEND_NEWLINE
    events = simulate(customers, days, seed, start, personas, anonymous=anonymous)
    if inject_bad <= 0.0:
        for ev in events:
            yield dumps(ev, option=nl)
        return
    bad_rng = random.Random(f"bad:{seed}")
    for ev in events:
        yield dumps(ev, option=nl)
        if bad_rng.random() < inject_bad:
            yield corrupt_line(ev, bad_rng) + b"\n"


_BAD_KINDS = ("truncated", "unknown_type", "negative_amount", "missing_field", "bad_ts", "not_object")


def corrupt_line(ev: dict[str, Any], rng: random.Random) -> bytes:
    """A deliberately invalid record derived from a good one (its id suffixed so it never shadows it)."""
    bad = dict(ev, event_id=ev["event_id"] + "-bad")
    kind = _BAD_KINDS[int(rng.random() * len(_BAD_KINDS))]
    if kind == "truncated":
        raw = orjson.dumps(bad)
        return raw[: max(1, len(raw) // 2)]
    if kind == "unknown_type":
        bad["type"] = "teleported"
    elif kind == "negative_amount":
        bad["type"] = "purchase"
        bad["props"] = {"order_id": "o-bad", "amount": -round(1 + rng.random() * 100, 2), "currency": "EUR"}
    elif kind == "missing_field":
        del bad["customer_id" if rng.random() < 0.5 else "ts"]
    elif kind == "bad_ts":
        bad["ts"] = "yesterday at noon"
    else:
        return b"[1, 2, 3]"
    return orjson.dumps(bad)
