"""A customer's stored state: the DNA plus what the engine decided about it last time.

Memberships, the DNA code, the contact history and the next wake-up are kept with the DNA so
that one read and one write per customer serve the whole step, and so that a restarted worker
diffs against exactly what it emitted before. ``encode``/``decode`` give the compact msgpack form
that goes to RocksDB and the changelog (positional, versioned; typically 0.3-1 KiB).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import msgpack

from microseg.errors import MicrosegError
from microseg.segments.dna import Dna
from microseg.segments.windows import METRICS, Windows

__all__ = ["CustomerState", "encode", "decode", "StateFormatError", "FORMAT"]

FORMAT = 1
_DNA_FIELDS = tuple(f.name for f in fields(Dna))


class StateFormatError(MicrosegError):
    """Stored state this version cannot read (written by a newer microseg, or corrupted)."""


@dataclass(slots=True, init=False)
class CustomerState:
    """Everything kept per customer. ``erased`` marks a forgotten customer: nothing about them is
    kept but this mark, so later events (already in flight, or replayed) cannot bring them back and
    no message reaches them again. ``held`` is the last few decisions held back, as
    ``[t, message, reason]``: what explain shows."""

    dna: Dna
    segments: tuple[str, ...]
    code: str | None
    rules_version: str
    evaluated_at: float
    wake: float | None
    sends: list[list[float | str]]
    last_sent: dict[str, float]
    offset: int
    erased: bool
    held: list[list[float | str]]

    def __init__(
        self,
        dna: Dna,
        segments: tuple[str, ...] = (),
        code: str | None = None,
        rules_version: str = "",
        evaluated_at: float = 0.0,
        wake: float | None = None,
        sends: list[list[float | str]] | None = None,
        last_sent: dict[str, float] | None = None,
        offset: int = -1,
        erased: bool = False,
        held: list[list[float | str]] | None = None,
    ) -> None:
        """Written out rather than generated: a compiled ``__init__`` is several times faster."""
        self.dna = dna
        self.segments = segments
        self.code = code
        self.rules_version = rules_version
        self.evaluated_at = evaluated_at
        self.wake = wake
        self.sends = [] if sends is None else sends
        self.last_sent = {} if last_sent is None else last_sent
        self.offset = offset
        self.erased = erased
        self.held = [] if held is None else held


_WINDOWS = _DNA_FIELDS.index("windows")
_RECENT = _DNA_FIELDS.index("recent_ids")


def _pack_row(row: list[int], out: list[int]) -> None:
    mask = 0
    values = []
    for index, value in enumerate(row):
        if value:
            mask |= 1 << index
            values.append(value)
    out.append(mask)
    out.extend(values)


def _unpack_row(flat: list[int], i: int) -> tuple[list[int], int]:
    mask = int(flat[i])
    i += 1
    row = [0] * METRICS
    index = 0
    while mask:
        if mask & 1:
            row[index] = flat[i]
            i += 1
        mask >>= 1
        index += 1
    return row, i


def _pack_windows(windows: Windows) -> list[int]:
    """``[day, totals x3 as (mask, values), then rows as (days back, mask, values)]``: small ints throughout."""
    flat: list[int] = [windows.day]
    for totals in windows.totals:
        _pack_row(totals, flat)
    for day in sorted(windows.rows, reverse=True):
        flat.append(windows.day - day)
        _pack_row(windows.rows[day], flat)
    return flat


def _unpack_windows(flat: list[int]) -> Windows:
    day = int(flat[0])
    i = 1
    totals = []
    for _ in range(3):
        row, i = _unpack_row(flat, i)
        totals.append(row)
    rows: dict[int, list[int]] = {}
    while i < len(flat):
        back = int(flat[i])
        row, i = _unpack_row(flat, i + 1)
        rows[day - back] = row
    return Windows(rows, totals, day)


def encode(state: CustomerState) -> bytes:
    dna = [getattr(state.dna, name) for name in _DNA_FIELDS]
    dna[_WINDOWS] = _pack_windows(state.dna.windows)
    dna[_RECENT] = b"".join(h.to_bytes(4, "big") for h in state.dna.recent_ids)
    return msgpack.packb(
        [
            FORMAT,
            dna,
            list(state.segments),
            state.code,
            state.rules_version,
            state.evaluated_at,
            state.wake,
            state.sends,
            state.last_sent,
            state.offset,
            state.erased,
            state.held,
        ],
        use_bin_type=True,
    )


def decode(data: bytes) -> CustomerState:
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise StateFormatError(f"stored customer state is not readable msgpack: {exc}") from None
    if not isinstance(raw, list) or not raw or raw[0] != FORMAT:
        version = raw[0] if isinstance(raw, list) and raw else None
        raise StateFormatError(f"stored customer state has format {version!r}; this microseg reads format {FORMAT}")
    _, dna_values, segments, code, version, evaluated_at, wake, sends, last_sent, offset, *rest = raw
    dna_values[_WINDOWS] = _unpack_windows(dna_values[_WINDOWS])
    blob = dna_values[_RECENT]
    dna_values[_RECENT] = [int.from_bytes(blob[i : i + 4], "big") for i in range(0, len(blob), 4)]
    dna = Dna(*dna_values)
    erased = bool(rest and rest[0])
    held = rest[1] if len(rest) > 1 else []
    return CustomerState(dna, tuple(segments), code, version, evaluated_at, wake, sends, last_sent, offset, erased, held)
