"""Computed traits: analyst-defined DNA fields folded from events (CONTRACT §7).

A ``Trait`` is one ``traits:`` entry of a rule file, compiled: which event types it reads, an
optional ``where`` filter and a ``value`` over the event (compiled expressions over an
``EventContext``), an aggregate and a window. Its state is stored in the DNA record under
``dna.traits[trait.id]`` as ``[fingerprint, data, oldest bucket]`` (plain lists, dicts, ints, floats and strings:
msgpack stores it as is), with the oldest bucket kept as a third element when there is data (so
the next expiry is found without a scan while that bucket is in the window). A state whose fingerprint is not the trait's (the trait was redefined
under the same id) reads as empty and is replaced by the next event.

Windows are buckets: ``<n>d`` windows bucket by UTC day (``unit`` 86 400 s), ``<n>h`` by UTC
hour (3 600 s), lifetime keeps one bucket (``0``). At instant ``now`` a bucket ``b`` is in the
window while ``b > floor(now / unit) - span``, so an event leaves it at ``(b + span) * unit``, the
start of the first day (hour) that no longer covers it, whatever the order events came in.

Pure: ``fold_trait`` never changes its input (it returns a new state, or the same object when
nothing changed), and no function here reads a clock.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from microseg.schemas.events import Event
from microseg.segments.dna_record import cents_mean, tie_key, to_cents

__all__ = [
    "AGGREGATES",
    "MAX_VALUES",
    "DAY_UNIT",
    "HOUR_UNIT",
    "Trait",
    "EventContext",
    "event_prop",
    "trait_reader",
    "fold_trait",
    "trait_value",
    "next_expiry",
]

AGGREGATES: Final = ("count", "sum", "avg", "min", "max", "distinct_count", "first", "last", "most_frequent")
MAX_VALUES: Final = 64
"""``distinct_count`` and ``most_frequent`` remember at most this many values per customer and trait."""
DAY_UNIT: Final = 86_400
HOUR_UNIT: Final = 3_600


@dataclass(frozen=True, slots=True)
class Trait:
    """One computed trait.

    ``where(ctx)`` and ``value(ctx)`` are compiled expressions over an ``EventContext`` (``where``
    counts the event only when it returns ``True``; ``value`` is None for ``count``). ``unit`` is
    the bucket length in seconds (``DAY_UNIT``, ``HOUR_UNIT``; 0 for lifetime) and ``span`` the
    window in buckets (1..400 days, 1..168 hours; 0 for lifetime). ``money``: the value is a money
    prop (``amount``, ``cart_value``, ``price``), summed and averaged in integer cents.
    ``fingerprint``: a hash of the definition (stored states of another definition read as empty).
    """

    id: str
    events: frozenset[str]
    aggregate: str
    where: Callable[[Any], Any] | None
    value: Callable[[Any], Any] | None
    unit: int
    span: int
    money: bool
    fingerprint: int
    description: str = ""

    @property
    def lifetime(self) -> bool:
        return self.span == 0


class EventContext(dict[str, Any]):
    """What ``where`` and ``value`` read of the event being folded: ``type``, ``channel``,
    ``device`` as names, ``prop(name)`` as a function (None for a prop the event does not carry)."""

    __slots__ = ("props",)
    props: Any

    def __init__(self, event: Event) -> None:
        # Item by item: a keyword call to dict.__init__ costs several times as much, per event
        self["type"] = event.type
        self["channel"] = event.channel
        self["device"] = event.device
        self.props = event.props

    def prop(self, name: str) -> Any:
        return getattr(self.props, name, None)


def event_prop(ctx: EventContext, name: str) -> Any:
    """``prop(name)`` as the rule language calls it (``FunctionSpec.impl``)."""
    return getattr(ctx.props, name, None)


def trait_reader(trait: Trait) -> Callable[[Any], Any]:
    """The trait's ``FieldSpec.compute``: its value in a DNA view (``segments.view.DnaView``) at
    the view's instant."""
    name = trait.id

    def read(view: Any) -> Any:
        return trait_value(view.dna.traits.get(name), trait, view.now)

    return read


def fold_trait(stored: list[Any] | None, trait: Trait, event: Event, ctx: EventContext) -> tuple[list[Any] | None, bool]:
    """Fold one event (of one of ``trait.events``) into the stored state; returns ``(state,
    overflowed)``. ``state`` is ``stored`` itself when the event does not count (``where`` not
    true, a null value, a bucket already out of the window), else a new list (``stored`` is never
    changed). ``overflowed``: a distinct value was dropped for ``MAX_VALUES``."""
    where = trait.where
    if where is not None and where(ctx) is not True:
        return stored, False
    aggregate = trait.aggregate
    value: Any = None
    if aggregate != "count":
        compute = trait.value
        if compute is None:
            return stored, False
        value = compute(ctx)
        if value is None:
            return stored, False
    data: dict[Any, Any] = _data(stored, trait)
    span = trait.span
    bucket = int(event.t // trait.unit) if span else 0
    if aggregate == "distinct_count":
        return _fold_distinct(stored, trait, data, bucket, _value_hash(value))
    if aggregate == "most_frequent":
        return _fold_frequent(stored, trait, data, bucket, value)
    entry: Any
    old: Any = data.get(bucket)
    if aggregate == "count":
        entry = 1 if old is None else old + 1
    elif aggregate == "sum":
        amount: Any = to_cents(float(value)) if trait.money else value
        entry = amount if old is None else old + amount
    elif aggregate == "avg":
        amount = to_cents(float(value)) if trait.money else value
        entry = [amount, 1] if old is None else [old[0] + amount, old[1] + 1]
    elif aggregate == "min":
        if old is not None and not (value < old or (value == old and tie_key(value) < tie_key(old))):
            return stored, False
        entry = value
    elif aggregate == "max":
        if old is not None and not (value > old or (value == old and tie_key(value) < tie_key(old))):
            return stored, False
        entry = value
    elif aggregate == "first":
        t = event.t
        if old is not None and not (t < old[0] or (t == old[0] and tie_key(value) < tie_key(old[1]))):
            return stored, False
        entry = [t, value]
    elif aggregate == "last":
        t = event.t
        if old is not None and not (t > old[0] or (t == old[0] and tie_key(value) < tie_key(old[1]))):
            return stored, False
        entry = [t, value]
    else:
        raise ValueError(f"unknown aggregate {aggregate!r}")
    new: dict[Any, Any]
    low = _low(stored, data, bucket)
    if old is not None or not span or not data:
        # The bucket is already kept (so in the window) or there is nothing to drop.
        new = dict(data)
    else:
        top = max(data)
        if bucket <= top - span:
            return stored, False
        if bucket > top:
            cut = bucket - span
            new = {b: e for b, e in data.items() if b > cut}
            low = min(new) if new else bucket
        else:
            new = dict(data)
    new[bucket] = entry
    return [trait.fingerprint, new, bucket if bucket < low else low], False


def trait_value(stored: list[Any] | None, trait: Trait, now: float) -> Any:
    """The trait's value at ``now`` (epoch seconds): see the aggregates in docs/traits.md."""
    data = _data(stored, trait)
    aggregate = trait.aggregate
    # Buckets above ``low`` are in the window (lifetime traits keep bucket 0 only). Buckets are
    # ints (typed so that the compiled loops compare them natively).
    low: int = int(now // trait.unit) - trait.span if trait.span else -1
    b: int
    if aggregate == "count" or aggregate == "sum":
        total: Any = 0
        for b, n in data.items():
            if b > low:
                total += n
        return total / 100 if trait.money and aggregate == "sum" else total
    if aggregate == "avg":
        total = 0
        count = 0
        for b, pair in data.items():
            if b > low:
                total += pair[0]
                count += pair[1]
        if count == 0:
            return None
        return cents_mean(total, count) / 100 if trait.money else total / count
    if aggregate == "min" or aggregate == "max":
        smallest = aggregate == "min"
        best: Any = None
        for b, value in data.items():
            if b > low and (
                best is None
                or (value < best if smallest else value > best)
                or (value == best and tie_key(value) < tie_key(best))
            ):
                best = value
        return best
    if aggregate == "first" or aggregate == "last":
        # Buckets cover disjoint spans of time: the earliest (newest) kept bucket holds the answer.
        earliest = aggregate == "first"
        found = False
        chosen = 0
        for b in data:
            if b > low and (not found or (b < chosen if earliest else b > chosen)):
                chosen, found = b, True
        return data[chosen][1] if found else None
    if aggregate == "distinct_count":
        distinct = 0
        newest: dict[Any, int] = data
        for b in newest.values():
            if b > low:
                distinct += 1
        return distinct
    if aggregate == "most_frequent":
        winner: Any = None
        most = 0
        counts: dict[int, int]
        k: int
        for value, counts in data.items():
            n = 0
            for b, k in counts.items():
                if b > low:
                    n += k
            if n > 0 and (n > most or (n == most and tie_key(value) < tie_key(winner))):
                winner = value
                most = n
        return winner
    raise ValueError(f"unknown aggregate {aggregate!r}")


def next_expiry(stored: list[Any] | None, trait: Trait, now: float) -> float | None:
    """The earliest instant after ``now`` at which something counted leaves the window (epoch
    seconds; a multiple of ``trait.unit``); None for lifetime traits and empty states."""
    span = trait.span
    if not span:
        return None
    data = _data(stored, trait)
    if not data:
        return None
    assert stored is not None
    cached: int = stored[2]
    if (cached + span) * trait.unit > now:  # the oldest kept bucket is still in the window
        return float((cached + span) * trait.unit)
    # Bucket b leaves at (b + span) * unit, which is after now exactly when b > floor(now / unit) - span.
    low: int = int(now // trait.unit) - span
    earliest = 0
    found = False
    b: int
    aggregate = trait.aggregate
    if aggregate == "distinct_count":
        newest: dict[Any, int] = data
        for b in newest.values():
            if b > low and (not found or b < earliest):
                earliest, found = b, True
    elif aggregate == "most_frequent":
        counts: dict[int, int]
        for counts in data.values():
            for b in counts:
                if b > low and (not found or b < earliest):
                    earliest, found = b, True
    else:
        for b in data:
            if b > low and (not found or b < earliest):
                earliest, found = b, True
    if not found:
        return None
    return float((earliest + span) * trait.unit)


def _low(stored: list[Any] | None, data: dict[Any, Any], bucket: int) -> int:
    """The oldest bucket kept in ``stored`` (its third element), ``bucket`` when there is none."""
    if not data:
        return bucket
    assert stored is not None
    low: int = stored[2]
    return low


def _data(stored: list[Any] | None, trait: Trait) -> dict[Any, Any]:
    """The data of a stored state of this trait's definition; an empty dict (not to be changed) else."""
    if stored is None or stored[0] != trait.fingerprint:
        return {}
    data: dict[Any, Any] = stored[1]
    return data


def _value_hash(value: Any) -> int:
    """Stable 32-bit hash of a value for ``distinct_count`` (1 and 1.0 are one value, as are -0.0 and 0.0)."""
    encoded: bytes
    if value is True:
        encoded = b"b1"
    elif value is False:
        encoded = b"b0"
    elif isinstance(value, str):
        encoded = b"s" + value.encode("utf-8", "surrogatepass")
    elif isinstance(value, (int, float)):
        try:
            encoded = b"n" + repr(float(value) + 0.0).encode()
        except OverflowError:  # an integer beyond the float range
            encoded = b"n" + repr(value).encode()
    else:  # a list of strings
        encoded = b"l" + repr(value).encode("utf-8", "surrogatepass")
    return zlib.crc32(encoded)


def _fold_distinct(
    stored: list[Any] | None, trait: Trait, data: dict[Any, Any], bucket: int, key: int
) -> tuple[list[Any] | None, bool]:
    """``distinct_count``: data is {hash: newest bucket seen}. When full, the value with the
    smallest (bucket, hash) among the kept ones and the new one is evicted (or not added): so the
    values kept are the ``MAX_VALUES`` newest in any order of events."""
    seen = data.get(key)
    if seen is not None and seen >= bucket:
        return stored, False
    span = trait.span
    new: dict[Any, Any]
    low = _low(stored, data, bucket)
    exact = seen is None or seen != low  # else the oldest entry moves: find the new oldest below
    if span and data:
        top = max(data.values())
        if bucket <= top - span:
            return stored, False
        if bucket > top:
            cut = bucket - span
            new = {k: b for k, b in data.items() if b > cut}
            exact = False
        else:
            new = dict(data)
    else:
        new = dict(data)
    overflowed = False
    if key not in new and len(new) >= MAX_VALUES:
        overflowed = True
        victim = -1
        victim_bucket = 0
        for k, b in new.items():
            if victim < 0 or b < victim_bucket or (b == victim_bucket and k < victim):
                victim, victim_bucket = k, b
        if bucket < victim_bucket or (bucket == victim_bucket and key < victim):
            return stored, True  # the new value is the oldest: dropped (nothing was pruned then)
        del new[victim]
        exact = False
    new[key] = bucket
    if exact:
        low = bucket if bucket < low else low
    else:
        low = min(new.values())
    return [trait.fingerprint, new, low], overflowed


def _fold_frequent(
    stored: list[Any] | None, trait: Trait, data: dict[Any, Any], bucket: int, value: Any
) -> tuple[list[Any] | None, bool]:
    """``most_frequent``: data is {value: {bucket: n}}; inner dicts not changed are shared."""
    if isinstance(value, list):
        return stored, False  # not a key msgpack can store; the rule compiler refuses list values
    counts: dict[Any, Any] | None = data.get(value)
    span = trait.span
    new: dict[Any, Any]
    low = _low(stored, data, bucket)
    exact = True
    if counts is not None and bucket in counts:
        new = dict(data)  # a kept bucket is in the window: nothing to drop
    elif span and data:
        top = bucket
        for kept in data.values():
            newest = max(kept)
            if newest > top:
                top = newest
        if bucket <= top - span:
            return stored, False
        if bucket == top:  # maybe a new top bucket: drop what it pushes out of the window
            cut = bucket - span
            new = {}
            for v, kept in data.items():
                if min(kept) > cut:
                    new[v] = kept
                else:
                    pruned = {b: n for b, n in kept.items() if b > cut}
                    if pruned:
                        new[v] = pruned
            counts = new.get(value)
            exact = False
        else:
            new = dict(data)
    else:
        new = dict(data)
    overflowed = False
    if counts is None:
        if len(new) >= MAX_VALUES:
            overflowed = True
            victim = _frequent_victim(new)
            kept = new[victim]
            newest = max(kept)
            total = sum(kept.values())
            if bucket < newest or (
                bucket == newest and (total > 1 or (total == 1 and tie_key(value) > tie_key(victim)))
            ):
                return stored, True  # the new value ranks below every kept one: dropped
            del new[victim]
            exact = False
        new[value] = {bucket: 1}
    else:
        changed = dict(counts)
        changed[bucket] = changed.get(bucket, 0) + 1
        new[value] = changed
    if exact:
        low = bucket if bucket < low else low
    else:
        low = min(min(kept) for kept in new.values())
    return [trait.fingerprint, new, low], overflowed


def _frequent_victim(data: dict[Any, Any]) -> Any:
    """The value to evict: the oldest newest bucket, then the fewest events, then the larger ``tie_key``."""
    victim: Any = None
    victim_newest = 0
    victim_total = 0
    first = True
    for value, counts in data.items():
        newest = max(counts)
        total = sum(counts.values())
        if (
            first
            or newest < victim_newest
            or (newest == victim_newest and total < victim_total)
            or (newest == victim_newest and total == victim_total and tie_key(value) > tie_key(victim))
        ):
            victim, victim_newest, victim_total, first = value, newest, total, False
    return victim
