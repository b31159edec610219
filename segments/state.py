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


def encode(state: CustomerState) -> bytes:
    dna = [getattr(state.dna, name) for name in _DNA_FIELDS]
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
    dna = Dna(*dna_values)
    return CustomerState(dna, tuple(segments), code, version, evaluated_at, wake, sends, last_sent, offset)
