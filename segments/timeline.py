"""When can time alone change a customer's memberships?

From a rule set, ``TimeDependence`` collects which time-dependent DNA fields the rules read and
the numbers they compare them with. ``next_wake`` then gives the earliest instant after ``now``
at which one of those fields takes a value that could flip a rule: a ``days_since`` counter
reaching a threshold, a day's counts leaving a window, an open cart turning abandoned. A customer
with nothing pending gets None and costs nothing until its next event.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from microseg.segments import windows as w
from microseg.segments.dna import ABANDON_AFTER_S, Dna
from microseg.segments.fields import TIME_DEPENDENT
from microseg.segments.ruleset import CasesDimension, Expr, RuleSet
from microseg.segments.view import STAGE_THRESHOLDS

__all__ = ["TimeDependence", "time_dependence", "next_wake", "due"]

_WINDOWED: dict[str, tuple[int, int]] = {
    "sessions_7d": (w.SESSIONS, 7),
    "sessions_30d": (w.SESSIONS, 30),
    "page_views_30d": (w.PAGE_VIEWS, 30),
    "app_sessions_30d": (w.APP_SESSIONS, 30),
    "web_sessions_30d": (w.WEB_SESSIONS, 30),
    "bounces_30d": (w.BOUNCES, 30),
    "purchases_30d": (w.PURCHASES, 30),
    "purchases_90d": (w.PURCHASES, 90),
    "spend_30d": (w.SPEND, 30),
    "spend_90d": (w.SPEND, 90),
    "refunds_90d": (w.REFUNDS, 90),
    "carts_abandoned_30d": (w.ABANDONED, 30),
    "channel_switches_30d": (w.SWITCHES, 30),
    "messages_received_30d": (w.MESSAGES, 30),
    "conversions_90d": (w.CONVERSIONS, 90),
    "support_contacts_30d": (w.SUPPORT, 30),
}
_COUNTERS = ("days_since_last_activity", "days_since_last_purchase", "days_since_last_message", "tenure_days")
_PREDICTIVE = frozenset({"p_alive", "churn_risk", "expected_purchases_90d", "clv_12m"})


@dataclass(frozen=True, slots=True)
class TimeDependence:
    """What of time a rule set can see; built once per rule set."""

    spans: tuple[int, ...] = ()
    counters: tuple[tuple[str, tuple[int, ...] | None], ...] = ()
    carts: bool = False
    channels: bool = False
    predictive: bool = False

    @property
    def empty(self) -> bool:
        return not (self.spans or self.counters or self.carts or self.channels or self.predictive)


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


def time_dependence(ruleset: RuleSet) -> TimeDependence:
    thresholds: dict[str, set[float]] = {}
    opaque: set[str] = set()
    used: set[str] = set()
    for expr in _expressions(ruleset):
        used |= expr.fields & TIME_DEPENDENT
        opaque |= expr.opaque & TIME_DEPENDENT
        for name, values in expr.thresholds.items():
            thresholds.setdefault(name, set()).update(values)
    if "journey_stage" in used:
        for name, stage_values in STAGE_THRESHOLDS.items():
            if name not in opaque:
                used.add(name)
                thresholds.setdefault(name, set()).update(stage_values)
    counters = tuple(
        (name, None if name in opaque or name not in thresholds else _crossing_days(thresholds[name]))
        for name in _COUNTERS
        if name in used
    )
    spans = tuple(sorted({_WINDOWED[name][1] for name in used if name in _WINDOWED}))
    return TimeDependence(
        spans=spans,
        counters=counters,
        carts=bool(used & {"carts_abandoned_30d", "open_cart_value"}),
        channels="channels_30d" in used,
        predictive=bool(used & _PREDICTIVE),
    )


def _counter_base(dna: Dna, name: str) -> float | None:
    if name == "days_since_last_activity":
        return dna.last_activity if dna.last_activity is not None else dna.first_seen
    if name == "days_since_last_purchase":
        return dna.last_purchase
    if name == "days_since_last_message":
        return dna.last_message
    return dna.first_seen


def _next_day_step(base: float, now: float) -> float:
    return base + (math.floor((now - base) / w.DAY) + 1) * w.DAY


def _crossing_days(thresholds: Iterable[float]) -> tuple[int, ...]:
    """Whole-day counts at which ``days OP c`` can flip, for every threshold c: floor(c) and floor(c)+1."""
    steps: set[int] = set()
    for c in thresholds:
        k = math.floor(c)
        steps.update(step for step in (k, k + 1) if step >= 0)
    return tuple(sorted(steps))


def _next_crossing(base: float, now: float, steps: tuple[int, ...]) -> float | None:
    position = bisect_right(steps, (now - base) / w.DAY)
    return base + steps[position] * w.DAY if position < len(steps) else None


_STAGE_INPUTS = frozenset({"days_since_last_activity", "tenure_days"})
_WINDOW_NAMES = frozenset(_WINDOWED)


def _instants(dep: TimeDependence, dna: Dna, now: float, has_model: bool) -> list[tuple[float, frozenset[str]]]:
    """Each pending time-driven change after ``now`` with the DNA names it can change."""
    found: list[tuple[float, frozenset[str]]] = []
    for name, steps in dep.counters:
        base = _counter_base(dna, name)
        if base is None:
            continue
        at = _next_day_step(base, now) if steps is None else _next_crossing(base, now, steps)
        if at is not None:
            found.append((at, frozenset({name, "journey_stage"}) if name in _STAGE_INPUTS else frozenset({name})))
    if dep.spans and dna.windows.rows:
        at = dna.windows.next_expiry(now, dep.spans)
        if at is not None:
            found.append((at, _WINDOW_NAMES))
    if dep.carts and dna.cart_at is not None:
        deadline = dna.cart_at + ABANDON_AFTER_S
        at = deadline if deadline > now else float((w.day_of(deadline) + 30) * w.DAY)
        if at > now:
            found.append((at, frozenset({"carts_abandoned_30d", "open_cart_value"})))
    if dep.channels:
        later = [(day + 30) * w.DAY for day in dna.channel_days.values() if (day + 30) * w.DAY > now]
        if later:
            found.append((min(later), frozenset({"channels_30d"})))
    if dep.predictive and has_model and dna.first_purchase is not None:
        found.append((_next_day_step(dna.first_purchase, now), _PREDICTIVE))
    return found


def next_wake(dep: TimeDependence, dna: Dna, now: float, *, has_model: bool) -> float | None:
    """Earliest instant after ``now`` at which the rules could see a different DNA.

    The same instants as ``_instants``, without building the name sets: this runs on every event.
    """
    best = math.inf
    day = w.DAY
    base: float | None
    for name, steps in dep.counters:
        if name == "days_since_last_activity":
            base = dna.last_activity if dna.last_activity is not None else dna.first_seen
        elif name == "days_since_last_purchase":
            base = dna.last_purchase
        elif name == "days_since_last_message":
            base = dna.last_message
        else:
            base = dna.first_seen
        if base is None:
            continue
        if steps is None:
            at = base + (math.floor((now - base) / day) + 1) * day
        else:
            position = bisect_right(steps, (now - base) / day)
            if position == len(steps):
                continue
            at = base + steps[position] * day
        if at < best:
            best = at
    if dep.spans and dna.windows.rows:
        expiry = dna.windows.next_expiry(now, dep.spans)
        if expiry is not None and expiry < best:
            best = expiry
    if dep.carts and dna.cart_at is not None:
        deadline = dna.cart_at + ABANDON_AFTER_S
        at = deadline if deadline > now else float((int(deadline // day) + 30) * day)
        if now < at < best:
            best = at
    if dep.channels and dna.channel_days:
        first = min(dna.channel_days.values())
        limit = int(now // day) - 30
        later = [d for d in dna.channel_days.values() if d > limit] if first <= limit else None
        oldest = first if later is None else (min(later) if later else None)
        if oldest is not None:
            at = float((oldest + 30) * day)
            if now < at < best:
                best = at
    if dep.predictive and has_model and dna.first_purchase is not None:
        first_purchase = dna.first_purchase
        at = first_purchase + (math.floor((now - first_purchase) / day) + 1) * day
        if at < best:
            best = at
    return None if best == math.inf else best


def due(dep: TimeDependence, dna: Dna, since: float, at: float, *, has_model: bool) -> frozenset[str]:
    """The DNA names that time can change at ``at``, the first wake-up after ``since``."""
    names: frozenset[str] = frozenset()
    for instant, changed in _instants(dep, dna, since, has_model):
        if instant == at:
            names |= changed
    return names
