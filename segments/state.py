"""A customer's stored state: the DNA plus what the engine decided about it last time.

Memberships, the DNA code, the contact history and the next wake-up are kept with the DNA so
that one read and one write per customer serve the whole step, and so that a restarted worker
diffs against exactly what it emitted before. ``encode``/``decode`` give the compact msgpack form
that goes to RocksDB and the changelog (positional, versioned, typically a few hundred bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import msgpack

from microseg.errors import MicrosegError
from microseg.segments.dna import Dna
from microseg.segments.windows import METRICS

__all__ = ["CustomerState", "encode", "decode", "StateFormatError", "FORMAT"]

FORMAT = 1
_DNA_FIELDS = tuple(f.name for f in fields(Dna))


class StateFormatError(MicrosegError):
    """Stored state this version cannot read (written by a newer microseg, or corrupted)."""


@dataclass(slots=True)
class CustomerState:
    dna: Dna
    segments: tuple[str, ...] = ()
    code: str | None = None
    rules_version: str = ""
    evaluated_at: float = 0.0
    wake: float | None = None
    sends: list[list[float | str]] = field(default_factory=list)
    last_sent: dict[str, float] = field(default_factory=dict)
    offset: int = -1


_BUCKETS = _DNA_FIELDS.index("buckets")
_RECENT = _DNA_FIELDS.index("recent_ids")


def _compact(value: float) -> float:
    return int(value) if value == int(value) else value


def _pack_buckets(buckets: dict[int, list[float]]) -> list[float]:
    """Sparse rows as ``[day, bitmask, non-zero values..., day, ...]``: a quiet day costs 4 bytes."""
    flat: list[float] = []
    for day in sorted(buckets):
        row = buckets[day]
        mask = 0
        values = []
        for index, value in enumerate(row):
            if value:
                mask |= 1 << index
                values.append(_compact(value))
        if mask:
            flat.append(day)
            flat.append(mask)
            flat.extend(values)
    return flat


def _unpack_buckets(flat: list[float]) -> dict[int, list[float]]:
    buckets: dict[int, list[float]] = {}
    i = 0
    while i < len(flat):
        day, mask = int(flat[i]), int(flat[i + 1])
        i += 2
        row = [0] * METRICS
        index = 0
        while mask:
            if mask & 1:
                row[index] = flat[i]
                i += 1
            mask >>= 1
            index += 1
        buckets[day] = row
    return buckets


def encode(state: CustomerState) -> bytes:
    dna = [getattr(state.dna, name) for name in _DNA_FIELDS]
    dna[_BUCKETS] = _pack_buckets(state.dna.buckets)
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
    _, dna_values, segments, code, version, evaluated_at, wake, sends, last_sent, offset = raw
    dna_values[_BUCKETS] = _unpack_buckets(dna_values[_BUCKETS])
    blob = dna_values[_RECENT]
    dna_values[_RECENT] = [int.from_bytes(blob[i : i + 4], "big") for i in range(0, len(blob), 4)]
    dna = Dna(*dna_values)
    return CustomerState(dna, tuple(segments), code, version, evaluated_at, wake, sends, last_sent, offset)
