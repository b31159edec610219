"""When can time alone change a customer's memberships?

From a rule set, ``TimeDependence`` collects which time-dependent DNA fields the rules read and
the numbers they compare them with. ``next_wake`` then gives the earliest instant after ``now``
at which one of those fields takes a value that could flip a rule: a ``days_since`` counter
reaching a threshold, a day's counts leaving a window, an open cart turning abandoned. A customer
with nothing pending gets None and costs nothing until its next event.

A model score the rules only compare with numbers wakes a customer at the 24 h steps where it
crosses one of them, solved once per purchase history (``segments.crossing``); read any other way
(arithmetic, a function's argument), at every 24 h step.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from microseg.segments import windows as w
from microseg.segments.builtin_fields import BUILTINS
from microseg.segments.crossing import Crossings, Watched, day_step
from microseg.segments.dna_record import ABANDON_AFTER_S, Dna, instant
from microseg.segments.fields import CartTimer, ChannelDays, DaysSince, Follows, Registry, Rescored, TraitWindow, Windowed
from microseg.segments.ruleset import CasesDimension, CutsDimension, Expr, RuleSet
from microseg.segments.predictive import PredictiveModel
from microseg.segments.traits import Trait, next_expiry
from microseg.segments.view import DnaView

__all__ = ["TimeDependence", "time_dependence", "next_wake", "due"]

_NO_NAMES: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TimeDependence:
    """What of time a rule set can see; built once per rule set from the rules and the registry.

    ``counters``: (field, whole-day counts at which a rule can flip or None for every day, the
    record's instant it counts from, ``dna_record.instant``); ``spans``: the window lengths in days the rules read,
    ``span_metrics`` the counters read over each (a day leaving a window wakes only if it has one); ``carts``,
    ``channel_days``, ``rescored``: the other ways time changes what they read; ``traits``: the
    windowed computed traits they read, each with the names its expiries can change. The name sets say
    which DNA names each kind of wake-up can change (the incremental evaluation of a tick).
    ``scores``: the model scores the rules only compare with numbers, as (record's instant they
    count from, helper naming their history, record's instant of its newest fact, the scores):
    woken at their crossings, which ``crossings`` solves and remembers, computing the scores with
    ``compute``.
    """

    spans: tuple[int, ...] = ()
    span_metrics: tuple[tuple[int, ...], ...] = ()
    counters: tuple[tuple[str, tuple[int, ...] | None, int], ...] = ()
    carts: bool = False
    channel_days: tuple[int, ...] = ()
    rescored: tuple[int, ...] = ()
    traits: tuple[tuple[Trait, frozenset[str]], ...] = ()
    scores: tuple[tuple[int, str, int | None, tuple[Watched, ...]], ...] = ()
    followers: dict[str, frozenset[str]] = field(default_factory=dict)
    window_names: frozenset[str] = _NO_NAMES
    cart_names: frozenset[str] = _NO_NAMES
    channel_names: frozenset[str] = _NO_NAMES
    rescored_names: frozenset[str] = _NO_NAMES
    crossings: Crossings = field(default_factory=Crossings, compare=False, repr=False)
    compute: dict[str, Callable[[DnaView], Any]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def empty(self) -> bool:
        return not (self.spans or self.counters or self.carts or self.channel_days or self.rescored or self.traits or self.scores)


def _expressions(ruleset: RuleSet) -> Iterable[Expr]:
    for segment in ruleset.segments:
        yield segment.when
    for dimension in ruleset.dimensions:
        if isinstance(dimension, CasesDimension):
            yield from (expr for _, expr in dimension.cases)
        else:
            yield dimension.of
    for message in ruleset.messages:
        if message.when is not None:
            yield message.when


def time_dependence(ruleset: RuleSet, registry: Registry | None = None, *, solve_crossings: bool = True) -> TimeDependence:
    """What of time the rules of ``ruleset`` read, from the fields' ``time`` declarations
    (``registry``: the built-in fields by default). ``solve_crossings=False``: model scores wake
    a customer at every 24 h step, as before their crossings were solved (to compare with)."""
    reg = BUILTINS if registry is None else registry
    timed = reg.time_dependent
    comparisons: dict[str, set[tuple[str, float]]] = {}
    opaque: set[str] = set()
    used: set[str] = set()
    for expr in _expressions(ruleset):
        used |= expr.fields & timed
        opaque |= expr.opaque & timed
        for name, compared in expr.comparisons.items():
            comparisons.setdefault(name, set()).update(compared)
    for dimension in ruleset.dimensions:
        if isinstance(dimension, CutsDimension) and dimension.of.fields & timed:
            bare = _bare_name(dimension.of)
            if bare is not None and dimension.of.opaque == {bare} and not _read_elsewhere(ruleset, dimension, bare):
                opaque.discard(bare)  # a band changes only when the value reaches one of the cuts
            if bare is not None:
                comparisons.setdefault(bare, set()).update((">=", cut) for cut in dimension.cuts)
    followers: dict[str, set[str]] = {}
    for spec, change in reg.timed():
        if isinstance(change, Follows):
            for source, crossings in change.inputs:
                followers.setdefault(source, set()).add(spec.name)
                if spec.name in used and source not in opaque:
                    used.add(source)
                    comparisons.setdefault(source, set()).update((">", c) for c in crossings)
    counters: list[tuple[str, tuple[int, ...] | None, int]] = []
    spans: dict[int, set[int]] = {}
    channel_days: set[int] = set()
    rescored: list[int] = []
    watched: dict[tuple[int, str, int | None], list[Watched]] = {}
    traits: list[tuple[Trait, frozenset[str]]] = []
    by_id = {trait.id: trait for trait in ruleset.traits}
    carts = False
    names: dict[type, set[str]] = {}
    for spec, change in reg.timed():
        names.setdefault(type(change), set()).add(spec.name)
        if spec.name not in used:
            continue
        if isinstance(change, DaysSince):
            steps = None if spec.name in opaque or spec.name not in comparisons else _crossing_days(comparisons[spec.name])
            counters.append((spec.name, steps, change.since))
        elif isinstance(change, Windowed):
            spans.setdefault(change.days, set()).add(change.metric)
        elif isinstance(change, CartTimer):
            carts = True
        elif isinstance(change, ChannelDays):
            channel_days.add(change.days)
        elif isinstance(change, Rescored):
            if solve_crossings and change.trend != 0 and change.history is not None and spec.name in comparisons and spec.name not in opaque:
                watched.setdefault((change.since, change.history, change.latest), []).append(Watched(spec.name, change.trend, tuple(sorted({c for _, c in comparisons[spec.name]}))))
            elif change.since not in rescored:
                rescored.append(change.since)
        elif isinstance(change, TraitWindow) and change.trait in by_id:
            traits.append((by_id[change.trait], frozenset({spec.name}) | frozenset(followers.get(spec.name, ()))))
    return TimeDependence(
        spans=tuple(sorted(spans)),
        span_metrics=tuple(tuple(sorted(spans[span])) for span in sorted(spans)),
        counters=tuple(counters),
        carts=carts,
        channel_days=tuple(sorted(channel_days)),
        rescored=tuple(rescored),
        traits=tuple(traits),
        scores=tuple((since, history, latest, tuple(found)) for (since, history, latest), found in watched.items() if since not in rescored),
        followers={name: frozenset(found) for name, found in followers.items()},
        window_names=frozenset(names.get(Windowed, ())),
        cart_names=frozenset(names.get(CartTimer, ())),
        channel_names=frozenset(names.get(ChannelDays, ())),
        rescored_names=frozenset(names.get(Rescored, ())),
        compute=reg.compute,
    )


def _next_day_step(base: float, now: float) -> float:
    """The first instant after ``now`` at which one more whole day has passed since ``base``."""
    return day_step(base, int((now - base) // w.DAY) + 1)


def _crossing_days(comparisons: Iterable[tuple[str, float]]) -> tuple[int, ...]:
    """Whole-day counts at which ``days OP c`` can flip: the first whole number on the other side
    of c (``> c`` and ``<= c`` flip at floor(c) + 1, ``>= c`` and ``< c`` at ceil(c)); ``== c``
    and ``!= c`` at c and c + 1 for a whole c, never otherwise."""
    steps: set[int] = set()
    for op, c in comparisons:
        if op in (">", "<="):
            found: tuple[int, ...] = (math.floor(c) + 1,)
        elif op in (">=", "<"):
            found = (math.ceil(c),)
        else:
            found = (int(c), int(c) + 1) if c == math.floor(c) else ()
        steps.update(step for step in found if step >= 0)
    return tuple(sorted(steps))


def _bare_name(expr: Expr) -> str | None:
    """The field an expression is, when it is nothing but a field name."""
    return expr.source.strip() if expr.fields == expr.opaque and len(expr.fields) == 1 and expr.source.strip() in expr.fields else None


def _read_elsewhere(ruleset: RuleSet, dimension: CutsDimension, name: str) -> bool:
    """Whether ``name`` is read as a bare value by another rule than ``dimension``."""
    return any(name in expr.opaque for expr in _expressions(ruleset) if expr is not dimension.of)


def _next_crossing(base: float, now: float, steps: tuple[int, ...]) -> float | None:
    position = bisect_right(steps, (now - base) // w.DAY)
    return day_step(base, steps[position]) if position < len(steps) else None


def _score_crossing(dep: TimeDependence, dna: Dna, now: float, model: PredictiveModel | None) -> float | None:
    """The next 24 h step after ``now`` at which a watched model score crosses one of its numbers
    (every step where ``segments.crossing`` cannot tell, or without ``model``)."""
    best: float | None = None
    for since, history, latest, watched in dep.scores:
        base = instant(dna, since)
        if base is None:
            continue
        newest = instant(dna, latest) if latest is not None else None
        start = 0 if newest is None else max(int((newest - base) // w.DAY), 0)
        steps = None
        if model is not None and (now - base) / w.DAY >= start:
            steps = dep.crossings.steps(watched, history, dna, base, start, model, dep.compute)
        at = None if steps is None else _next_crossing(base, now, steps)
        if at is None:
            at = _next_day_step(base, now)
        if best is None or at < best:
            best = at
    return best


def _instants(
    dep: TimeDependence, dna: Dna, now: float, has_model: bool, model: PredictiveModel | None = None
) -> list[tuple[float, frozenset[str]]]:
    """Each pending time-driven change after ``now`` with the DNA names it can change."""
    found: list[tuple[float, frozenset[str]]] = []
    for name, steps, since in dep.counters:
        base = instant(dna, since)
        if base is None:
            continue
        at = _next_day_step(base, now) if steps is None else _next_crossing(base, now, steps)
        if at is not None:
            found.append((at, frozenset({name}) | dep.followers.get(name, _NO_NAMES)))
    if dep.spans and dna.windows.rows:
        at = dna.windows.next_expiry(now, dep.spans, dep.span_metrics or None)
        if at is not None:
            found.append((at, dep.window_names))
    if dep.carts and dna.cart_at is not None:
        deadline = dna.cart_at + ABANDON_AFTER_S
        at = deadline if deadline > now else float((w.day_of(deadline) + 30) * w.DAY)
        if at > now:
            found.append((at, dep.cart_names))
    for days in dep.channel_days:
        later = [(day + days) * w.DAY for day in dna.channel_days.values() if (day + days) * w.DAY > now]
        if later:
            found.append((min(later), dep.channel_names))
    if has_model:
        for since in dep.rescored:
            base = instant(dna, since)
            if base is not None:
                found.append((_next_day_step(base, now), dep.rescored_names))
        if dep.scores:
            at = _score_crossing(dep, dna, now, model)
            if at is not None:
                found.append((at, dep.rescored_names))
    if dep.traits and dna.traits:
        for trait, names in dep.traits:
            expiry = next_expiry(dna.traits.get(trait.id), trait, now)
            if expiry is not None:
                found.append((expiry, names))
    return found


def next_wake(dep: TimeDependence, dna: Dna, now: float, *, has_model: bool, model: PredictiveModel | None = None) -> float | None:
    """Earliest instant (epoch seconds) after ``now`` at which the rules could see a different DNA.
    ``model``: the model scoring (its crossings are solved with it; ``has_model`` alone: every 24 h).

    The same instants as ``_instants``, without building the name sets: this runs on every event.
    """
    best = math.inf
    day = w.DAY
    base: float | None
    for _, steps, since in dep.counters:
        base = instant(dna, since)
        if base is None:
            continue
        if steps is None:
            at = day_step(base, int((now - base) // day) + 1)
        else:
            position = bisect_right(steps, (now - base) // day)
            if position == len(steps):
                continue
            at = day_step(base, steps[position])
        if at < best:
            best = at
    if dep.spans and dna.windows.rows:
        expiry = dna.windows.next_expiry(now, dep.spans, dep.span_metrics or None)
        if expiry is not None and expiry < best:
            best = expiry
    if dep.carts and dna.cart_at is not None:
        deadline = dna.cart_at + ABANDON_AFTER_S
        at = deadline if deadline > now else float((int(deadline // day) + 30) * day)
        if now < at < best:
            best = at
    if dep.channel_days and dna.channel_days:
        first = min(dna.channel_days.values())
        for days in dep.channel_days:
            limit = int(now // day) - days
            later = [d for d in dna.channel_days.values() if d > limit] if first <= limit else None
            oldest = first if later is None else (min(later) if later else None)
            if oldest is not None:
                at = float((oldest + days) * day)
                if now < at < best:
                    best = at
    if has_model:
        for since in dep.rescored:
            base = instant(dna, since)
            if base is not None:
                at = day_step(base, int((now - base) // day) + 1)
                if at < best:
                    best = at
        if dep.scores:
            crossing = _score_crossing(dep, dna, now, model)
            if crossing is not None and crossing < best:
                best = crossing
    if dep.traits and dna.traits:
        table = dna.traits
        for trait, _ in dep.traits:
            stored = table.get(trait.id)
            if stored is not None:
                expiry = next_expiry(stored, trait, now)
                if expiry is not None and expiry < best:
                    best = expiry
    return None if best == math.inf else best


def due(dep: TimeDependence, dna: Dna, since: float, at: float, *, has_model: bool, model: PredictiveModel | None = None) -> frozenset[str]:
    """The DNA names that time can change at ``at``, the first wake-up after ``since``."""
    names: frozenset[str] = frozenset()
    for when, changed in _instants(dep, dna, since, has_model, model):
        if when == at:
            names |= changed
    return names
