"""The bench's input from a file (``microseg bench --data FILE``), and what any bench input is: its
events, customers and time span, recorded in the result as ``data``.

A JSON-lines event file is used as it is, in file order (as ``microseg replay`` and a producer
would send it); a purchase history (CSV or the CDNOW layout) goes through ``microseg import``'s
reader first (``engine.tools.importer``: purchase events sorted by time, bad rows skipped and
counted). Times are epoch seconds; ``first_ts``/``last_ts`` are RFC 3339 in UTC.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from microseg.errors import ConfigError
from microseg.segments.view import iso

__all__ = ["load_data", "describe", "event_times"]


def _iso(t: float | None) -> str | None:
    return None if t is None else iso(t)


def describe(lines: list[bytes], keys: list[bytes], times: tuple[float | None, float | None], **about: Any) -> dict[str, Any]:
    """``{**about, events, customers, first_ts, last_ts, span_days}`` of ``lines`` keyed by ``keys``
    (customer ids) spanning ``times`` = (earliest, latest) event time."""
    first, last = times
    return {
        **about,
        "events": len(lines),
        "customers": len({k for k in keys if k}),
        "first_ts": _iso(first),
        "last_ts": _iso(last),
        "span_days": round((last - first) / 86_400, 1) if first is not None and last is not None else None,
    }


def event_times(lines: list[bytes]) -> tuple[float | None, float | None]:
    """Earliest and latest ``ts`` (epoch seconds) of the JSON lines that have a readable one."""
    loads = orjson.loads
    parse = datetime.fromisoformat
    seen: dict[str, float] = {}
    low: float | None = None
    high: float | None = None
    for line in lines:
        try:
            ts = loads(line).get("ts")
        except (orjson.JSONDecodeError, AttributeError):
            continue
        if not isinstance(ts, str):
            continue
        t = seen.get(ts)
        if t is None:
            try:
                moment = parse(ts.replace("Z", "+00:00"))
            except ValueError:
                continue
            if moment.tzinfo is None:
                continue
            t = seen[ts] = moment.timestamp()
        if low is None or t < low:
            low = t
        if high is None or t > high:
            high = t
    return low, high


def _keys(lines: list[bytes]) -> list[bytes]:
    keys = []
    for line in lines:
        try:
            customer = orjson.loads(line).get("customer_id")
        except (orjson.JSONDecodeError, AttributeError):
            customer = None
        keys.append(customer.encode() if isinstance(customer, str) else b"")
    return keys


def load_data(path: Path) -> tuple[list[bytes], list[bytes], dict[str, Any]]:
    """``(lines, keys, about)`` of a data file: event lines without newline, their customer ids
    (``b""`` for a line without one: produced unkeyed, the worker dead-letters it) and ``about``
    (``file``, ``path``, ``format``, and for an imported history ``imported_rows`` and
    ``skipped_rows``). Raises ``ConfigError`` when the file cannot be used."""
    from microseg.engine.tools.importer import ImportInputError, detect_layout, import_purchases

    try:
        layout = detect_layout(path)
        about: dict[str, Any] = {"source": "file", "file": path.name, "path": str(path), "format": layout}
        if layout == "events":
            with path.open("rb") as handle:
                lines = [line.rstrip(b"\r\n") for line in handle if line.strip()]
            return lines, _keys(lines), about
        imported = import_purchases(path)
    except ImportInputError as exc:
        raise ConfigError(f"--data: {exc}") from None
    if not imported.lines:
        raise ConfigError(f"--data {path}: no row could be imported ({len(imported.bad)} bad rows; see 'microseg import {path}')")
    about |= {"imported_rows": imported.rows, "skipped_rows": len(imported.bad), "converted_by": "microseg import (engine.tools.importer)"}
    return imported.lines, imported.keys, about
