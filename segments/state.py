"""A customer's stored state: the DNA plus what the engine decided about it last time.

Memberships, the DNA code, the contact history and the next wake-up are kept with the DNA so
that one read and one write per customer serve the whole step, and so that a restarted worker
diffs against exactly what it emitted before. ``encode``/``decode`` give the compact msgpack form
that goes to RocksDB and the changelog (positional, versioned; typically 0.3-1 KiB).

The form is ``[FORMAT, dna, segments, code, rules_version, evaluated_at, wake, sends, last_sent,
offset, erased, held, pending]`` with ``dna`` the values of ``DNA_LAYOUT`` in that order (windows and
recent event ids packed, below). A state of an older format is upgraded one version at a time
by ``MIGRATIONS`` before it is read; a newer one is refused (``StateFormatError``). To change the
layout: bump ``FORMAT``, add ``MIGRATIONS[old]`` turning an old raw list into the new one, and
keep ``tests/fixtures/state_v1`` decoding (``tests/segments/test_state_format.py``).

Formats: 1, the first; 2 (``MIGRATIONS[1]``) adds the instant of each "last" value (last
channel, timezone, declared preferred channel, attributes) and keeps consent as signed instants,
so those values are the newest by event time (docs/dna.md); 3 (``MIGRATIONS[2]``) adds the
computed traits' states (``traits``, docs/traits.md); 4 (``MIGRATIONS[3]``) adds the engagement
by local hour of day (``engaged_hours``, the best send hour of messages). ``pending`` (the decisions held for a
re-decision, ``segments.decide``) was appended to format 3 as an optional last element: a state
without it reads as nothing pending, and an older microseg reading a state with it ignores it, so
no new format (and a rollback keeps working).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

import msgpack

from microseg.errors import MicrosegError
from microseg.segments.dna import Dna
from microseg.segments.dna_record import LEGACY_T
from microseg.segments.windows import METRICS, Windows

__all__ = [
    "CustomerState", "encode", "decode", "upgrade", "StateFormatError", "FORMAT", "DNA_LAYOUT", "DNA_LAYOUT_V1", "DNA_LAYOUT_V2", "DNA_LAYOUT_V3", "MIGRATIONS",
    "ERASED_PREFIX", "erasure_key", "erasure_writes",
]

FORMAT: Final = 4
"""The format ``encode`` writes, first element of the list."""

DNA_LAYOUT_V1: Final = (
    "first_seen", "last_seen", "last_activity", "acquired", "first_purchase", "last_purchase",
    "purchases_total", "purchase_days", "gross_cents", "first_day_cents", "refunded_cents",
    "windows", "session_start", "session_views", "cart_at", "cart_value", "affinity_at",
    "affinity", "channel_days", "channel_uses", "last_channel", "consent", "unsubscribed",
    "campaigns", "last_message", "voice", "open_support", "reviews", "referrals", "timezone",
    "preferred_channel", "attributes", "recent_ids",
)
"""The DNA's positions in format 1 (``consent`` as ``{channel: granted}``, ``unsubscribed`` a
list of channels, ``attributes`` bare values)."""

DNA_LAYOUT_V2: Final = DNA_LAYOUT_V1 + ("last_channel_at", "timezone_at", "preferred_channel_at", "attributes_at")
"""The DNA's positions in format 2."""

DNA_LAYOUT_V3: Final = DNA_LAYOUT_V2 + ("traits",)
"""The DNA's positions in format 3."""

DNA_LAYOUT: Final = DNA_LAYOUT_V3 + ("engaged_hours",)
"""The DNA's positions in the current format: stated here, not taken from the ``Dna`` class, so
that adding, removing or reordering a ``Dna`` field cannot silently shift stored states. A field
added or removed needs a new format and its migration (a test holds the names to the class); a
mere reordering of the class is read by name, a little slower, until the layout follows it in a
new format."""

def _v1_to_v2(raw: list[Any]) -> list[Any]:
    """Format 1 -> 2: the "last" values get the instant ``LEGACY_T`` (1970-01-01T00:00:01Z,
    before any event can be), so any event processed after the upgrade overrides them, as it did
    in format 1. Consent becomes signed instants (``+LEGACY_T`` granted, ``-LEGACY_T`` revoked or
    unsubscribed), the unsubscribed channels ``{channel: +LEGACY_T}``; attributes stay bare
    values, all set at ``attributes_at = LEGACY_T``."""
    old = raw[1]
    if not isinstance(old, list) or len(old) != len(DNA_LAYOUT_V1):
        return [2, *raw[1:]]  # not a format-1 DNA: decode says so
    dna = dict(zip(DNA_LAYOUT_V1, old))
    unsubscribed = list(dna["unsubscribed"] or [])
    consent: dict[str, float] = {}
    for channel, granted in (dna["consent"] or {}).items():
        consent[channel] = LEGACY_T if granted and channel not in unsubscribed else -LEGACY_T
    for channel in unsubscribed:
        consent[channel] = -LEGACY_T
    dna["consent"] = consent
    dna["unsubscribed"] = {channel: LEGACY_T for channel in unsubscribed}
    dna["last_channel_at"] = None if dna["last_channel"] is None else LEGACY_T
    dna["timezone_at"] = None if dna["timezone"] is None else LEGACY_T
    dna["preferred_channel_at"] = None if dna["preferred_channel"] is None else LEGACY_T
    dna["attributes_at"] = LEGACY_T if dna["attributes"] else None
    return [2, [dna[name] for name in DNA_LAYOUT_V2], *raw[2:]]


def _v2_to_v3(raw: list[Any]) -> list[Any]:
    """Format 2 -> 3: the computed traits' states (``traits``), none yet: a trait starts from the
    first event after it is published."""
    old = raw[1]
    if not isinstance(old, list) or len(old) != len(DNA_LAYOUT_V2):
        return [3, *raw[1:]]  # not a format-2 DNA: decode says so
    return [3, [*old, {}], *raw[2:]]


def _v3_to_v4(raw: list[Any]) -> list[Any]:
    """Format 3 -> 4: engagement by local hour of day (``engaged_hours``), none yet: counted from
    the first session, open or click after the upgrade."""
    old = raw[1]
    if not isinstance(old, list) or len(old) != len(DNA_LAYOUT_V3):
        return [4, *raw[1:]]  # not a format-3 DNA: decode says so
    return [4, [*old, []], *raw[2:]]


MIGRATIONS: dict[int, Callable[[list[Any]], list[Any]]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}
"""``MIGRATIONS[v]`` turns the raw list of a format-``v`` state into a format-``v + 1`` one
(first element included). Pure functions of the list; never removed while that format may
still be stored."""


ERASED_PREFIX: Final = "\x00erased:"
"""Store keys of erased marks. A key that begins with NUL is never a customer id (ids come from
JSON text and hosts skip such keys when they list customers)."""


def erasure_key(secret: bytes, customer_id: str) -> str:
    """Where an erased customer's mark is stored: a keyed hash of the id (HMAC-SHA256 with the
    deployment's erasure secret, 128 bits in hex), never the id. Whoever holds the id and the
    secret finds the mark again; the stored key alone does not give the id back, even for ids as
    guessable as ``c-000042``, without the secret."""
    return ERASED_PREFIX + hmac.digest(secret, customer_id.encode(), "sha256")[:16].hex()


def erasure_writes(
    encoded: Mapping[str, bytes], states: Mapping[str, CustomerState], key: Callable[[str], str]
) -> Mapping[str, bytes | None]:
    """The store writes for a batch's ``encoded`` states: an erased customer's own key is deleted
    (a tombstone in the changelog) and its mark goes under ``key(customer_id)`` instead. ``encoded``
    itself when nobody in it was erased (the common case costs one flag test per customer)."""
    writes: dict[str, bytes | None] | None = None
    for customer_id, data in encoded.items():
        if states[customer_id].erased:
            if writes is None:
                writes = dict(encoded)
            writes[customer_id] = None
            writes[key(customer_id)] = data
    return encoded if writes is None else writes


class StateFormatError(MicrosegError):
    """Stored state this version cannot read (written by a newer microseg, or corrupted)."""


@dataclass(slots=True, init=False)
class CustomerState:
    """Everything kept per customer. ``erased`` marks a forgotten customer: nothing about them is
    kept but this mark, so later events (already in flight, or replayed) cannot bring them back and
    no message reaches them again. ``held`` is the last few decisions held back, as
    ``[t, message, reason]``: what explain shows. ``pending``: decisions held back that are
    re-decided later, message id -> ``[expires_at, due]`` (``segments.decide``)."""

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
    pending: dict[str, list[float]]

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
        pending: dict[str, list[float]] | None = None,
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
        self.pending = {} if pending is None else pending


_WINDOWS: Final = DNA_LAYOUT.index("windows")
_RECENT: Final = DNA_LAYOUT.index("recent_ids")
_DNA_IN_ORDER: Final = DNA_LAYOUT == tuple(f.name for f in fields(Dna))
"""The common case: ``Dna(*values)`` takes the stored values as they are."""


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
    """The state in the current ``FORMAT``."""
    dna = [getattr(state.dna, name) for name in DNA_LAYOUT]
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
            state.pending,
        ],
        use_bin_type=True,
    )


def decode(data: bytes) -> CustomerState:
    """A stored state of format ``FORMAT``, or of an older one that ``MIGRATIONS`` upgrades. Raises ``StateFormatError`` for a newer format, or bytes that are not a state."""
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise StateFormatError(f"stored customer state is not readable msgpack: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise StateFormatError(f"stored customer state is not a list with its format first: {type(raw).__name__}")
    if raw[0] != FORMAT:
        raw = upgrade(raw)
    try:
        return _read(raw)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise StateFormatError(f"stored customer state does not fit format {FORMAT}: {exc!r}") from None


def upgrade(raw: list[Any], migrations: dict[int, Callable[[list[Any]], list[Any]]] | None = None, current: int = FORMAT) -> list[Any]:
    """A raw (decoded msgpack) state list brought to format ``current`` through ``migrations``
    (``MIGRATIONS``), one version at a time. Raises ``StateFormatError`` for a format newer than
    ``current``, older than any migration reaches, or not a format number at all."""
    table = MIGRATIONS if migrations is None else migrations
    version = raw[0] if raw else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise StateFormatError(f"stored customer state has no format number (found {version!r}); this microseg reads format {current}")
    if version > current:
        raise StateFormatError(
            f"stored customer state has format {version}, written by a newer microseg; this microseg reads formats up to {current}"
        )
    while version < current:
        step = table.get(version)
        if step is None:
            raise StateFormatError(f"stored customer state has format {version}; this microseg reads format {current} and cannot migrate from {version}")
        raw = step(raw)
        if not raw or raw[0] != version + 1:
            found = raw[0] if raw else None
            raise StateFormatError(f"migration of a stored customer state from format {version} gave format {found!r}, not {version + 1}")
        version += 1
    return raw


def _read(raw: list[Any]) -> CustomerState:
    """A current-format list as a state. Format 1 states written before ``erased`` and ``held``
    were kept end after ``offset`` (and still do, migrated): they read as not erased, nothing held."""
    _, dna_values, segments, code, version, evaluated_at, wake, sends, last_sent, offset, *rest = raw
    if len(dna_values) != len(DNA_LAYOUT):
        raise ValueError(f"{len(dna_values)} DNA values for {len(DNA_LAYOUT)} fields")
    dna_values[_WINDOWS] = _unpack_windows(dna_values[_WINDOWS])
    blob = dna_values[_RECENT]
    dna_values[_RECENT] = [int.from_bytes(blob[i : i + 4], "big") for i in range(0, len(blob), 4)]
    if _DNA_IN_ORDER:
        dna = Dna(*dna_values)
    else:
        dna = Dna(**dict(zip(DNA_LAYOUT, dna_values)))
    erased = bool(rest and rest[0])
    held = rest[1] if len(rest) > 1 else []
    pending = rest[2] if len(rest) > 2 else {}
    return CustomerState(dna, tuple(segments), code, version, evaluated_at, wake, sends, last_sent, offset, erased, held, pending)
