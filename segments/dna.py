"""Behavioral DNA: the fold that keeps a customer's record current, and what an event can change.

``fold(dna, event)`` is a pure step: it copies the record (``segments.dna_record.Dna``), applies
one event (its type's declaration in ``segments.event_types`` plus the effects every event has),
returns the copy; the input is never changed. Everything time-relative is computed at read time
by the field declarations, so the record only changes when an event arrives. Duplicate event ids
are recognised over the last ``RECENT_IDS`` events of a customer (stable 32-bit hashes), which
covers redelivery after a crash. ``touched`` says which DNA names an event can change, from the
fields' ``touched_by`` declarations, so only the rules reading them are evaluated again.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from microseg.schemas.events import Event
from microseg.segments import windows as w
from microseg.segments.builtin_fields import BUILTINS
from microseg.segments.dna_record import (
    ABANDON_AFTER_S,
    AFFINITY_HALF_LIFE_DAYS,
    RECENT_IDS,
    Dna,
    most_used_channel,
    to_cents,
    top_key,
)
from microseg.segments.event_types import (
    CHANNEL_CHANGED,
    CHANNEL_USED,
    EVENTS,
    FIRST_SEEN_EARLIER,
    NEW_CHANNEL_DAY,
    NOT_ACTIVITY,
    OPEN_CART,
    RECENCY,
    settle_cart,
    use_channel,
)
from microseg.segments.fields import Registry
from microseg.segments.traits import EventContext, Trait, fold_trait

__all__ = [
    "Dna",
    "fold",
    "fold_traits",
    "to_cents",
    "is_duplicate",
    "touched",
    "most_used_channel",
    "top_key",
    "ABANDON_AFTER_S",
    "AFFINITY_HALF_LIFE_DAYS",
    "RECENT_IDS",
    "NOT_ACTIVITY",
]

_APPLY: dict[str, Callable[[Dna, Event], None]] = {e.name: e.apply for e in EVENTS.values() if e.apply is not None}
_WRITES: dict[str, tuple[str, ...]] = {e.name: e.writes for e in EVENTS.values() if e.writes}
_EMPTY: frozenset[str] = frozenset()


def _id_hash(event_id: str) -> int:
    return zlib.crc32(event_id.encode())


def is_duplicate(dna: Dna | None, event: Event) -> bool:
    """True when ``event``'s id is among the customer's last ``RECENT_IDS`` event ids."""
    return dna is not None and _id_hash(event.event_id) in dna.recent_ids


def _fresh(event: Event) -> Dna:
    return Dna(first_seen=event.t, last_seen=event.t, affinity_at=event.t)


def _clone(dna: Dna, event: Event) -> Dna:
    """A copy sharing what this event cannot write (its type's ``writes``: a property test holds
    the fold to never changing its input, for every event type)."""
    new = dna.shallow_copy()
    new.windows = dna.windows.copy()
    if event.channel is not None and event.type not in NOT_ACTIVITY:
        new.channel_days = dict(dna.channel_days)
        new.channel_uses = dict(dna.channel_uses)
    for name in _WRITES.get(event.type, ()):
        if name == "campaigns":
            new.campaigns = {k: v[:] for k, v in dna.campaigns.items()}
        elif name == "engaged_hours":
            new.engaged_hours = list(dna.engaged_hours)
        else:
            setattr(new, name, dict(getattr(dna, name)))
    new.recent_ids = list(dna.recent_ids)
    return new


def touched(before: Dna, event: Event, evaluated_at: float, registry: Registry | None = None) -> frozenset[str]:
    """Names whose value folding ``event`` into ``before`` can change, time standing still at
    ``evaluated_at`` (epoch seconds; the caller makes sure no time-driven change is pending).

    ``{"*"}`` when no declaration names the event's type: evaluate everything. ``registry``
    defaults to the built-in fields.
    """
    touches = BUILTINS.touches if registry is None else registry.touches
    names = touches.get(event.type)
    if names is None:
        return frozenset({"*"})
    extra: set[str] = set()
    t = event.t
    if event.type not in NOT_ACTIVITY:
        since = before.last_activity if before.last_activity is not None else before.first_seen
        if (evaluated_at - since) // w.DAY != 0 or t < since:
            extra |= touches.get(RECENCY, _EMPTY)
        channel = event.channel
        if channel is not None:
            if channel != before.last_channel:
                extra |= touches.get(CHANNEL_CHANGED, _EMPTY)
            if before.channel_days.get(channel) != w.day_of(t):
                extra |= touches.get(NEW_CHANNEL_DAY, _EMPTY)
            if before.preferred_channel is None and channel != most_used_channel(before):
                extra |= touches.get(CHANNEL_USED, _EMPTY)
    if t < before.first_seen:
        extra |= touches.get(FIRST_SEEN_EARLIER, _EMPTY)
    if before.cart_at is not None:
        extra |= touches.get(OPEN_CART, _EMPTY)
    return names | extra if extra else names


def fold_traits(dna: Dna, event: Event, traits: tuple[Trait, ...]) -> int:
    """Fold ``event`` into the computed traits that read its type (``traits``), on ``dna``, a copy
    ``fold`` returned (its ``traits`` table is replaced, never changed in place). Returns how many
    values were dropped for ``traits.MAX_VALUES``."""
    table = dna.traits
    changed: dict[str, list[Any]] | None = None
    dropped = 0
    ctx = EventContext(event)
    for trait in traits:
        stored = table.get(trait.id)
        new, overflowed = fold_trait(stored, trait, event, ctx)
        if overflowed:
            dropped += 1
        if new is not stored and new is not None:
            if changed is None:
                changed = dict(table)
            changed[trait.id] = new
    if changed is not None:
        dna.traits = changed
    return dropped


def fold(dna: Dna | None, event: Event) -> Dna:
    """Apply one validated event; ``dna`` is None for a customer never seen before."""
    new = _fresh(event) if dna is None else _clone(dna, event)
    t = event.t
    settle_cart(new, t)
    if event.type not in NOT_ACTIVITY:
        use_channel(new, event)
        if new.last_activity is None or t > new.last_activity:
            new.last_activity = t
    apply = _APPLY.get(event.type)
    if apply is not None:
        apply(new, event)
    if t < new.first_seen:
        new.first_seen = t
    if t > new.last_seen:
        new.last_seen = t
    new.recent_ids.append(_id_hash(event.event_id))
    if len(new.recent_ids) > RECENT_IDS:
        del new.recent_ids[0]
    return new
