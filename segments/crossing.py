"""When does a model score cross a rule's threshold? Solved once per purchase history.

A model score (``fields.Rescored``) is a function of the customer's purchase history and of the
age in **whole days** since the record's instant ``since`` (the first purchase: docs/dna.md,
``T = max(whole days / unit, t_x)``), so between two events it can only change at the instants
``base + k·DAY``, k = 1, 2, ... — the daily wake-ups the timeline used to fire. For a fixed history
the BG/NBD scores are monotone in the age (Fader, Hardie & Lee 2005: P(alive), eq. 12, and the
conditional expected purchases, eq. 10, fall as T grows; CLV is a positive combination of the
latter at fixed spend; ``churn_risk = 1 − P(alive)`` rises), so a rule comparing a score with a
number ``c`` can flip at no more than two ages: the first day the score reaches ``c`` and the
first day it passes it. ``Crossings.steps`` finds those days for every (field, number) the rules
read, by bracketing on whole days with the real field computations (so a day found is the daily
wake-up at which the daily schedule would have seen the flip), and keeps them per history.

Monotonicity is relied on between the probed days, and checked on them: every value probed for a
field, in day order, must follow the field's declared trend, and none may be null. Where that
fails (a fit whose scores fall back to quadrature and wobble, a score that cannot be computed),
the history is marked daily: the timeline wakes it every day as before (``stats()['daily']``
counts them). The result is a function of the history alone, never of when it was asked for or of
what is remembered, so a worker and a replay agree whatever their memo holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from microseg.segments import windows as w
from microseg.segments.dna_record import Dna
from microseg.segments.predictive import PredictiveModel
from microseg.segments.view import DnaView

__all__ = ["Watched", "Crossings", "NotMonotone", "HORIZON_DAYS", "MEMO_SIZE", "day_step"]

HORIZON_DAYS: Final = 65_536
"""Ages (whole days after ``since``, about 179 years) over which crossings are solved; the horizon
itself is a wake-up too, and the daily schedule takes over after it."""
MEMO_SIZE: Final = 1 << 15
"""Histories remembered (per rule set and model); the memo is emptied when full."""
FIRST_STEP: Final = 64
"""Days of the first step right of the history's newest fact when looking for a crossing."""
NEIGHBOUR_DAYS: Final = 3
"""Two guesses this close: the second is taken as the crossing day and its neighbour probed too."""
PATIENCE: Final = 4
"""Interpolation steps in a row that may fail to halve the bracket before it is bisected."""


def day_step(base: float, k: int) -> float:
    """The first instant (epoch seconds) at which ``k`` whole days have passed since ``base`` as the
    fields count them (``(t - base) // DAY``): ``base + k·DAY``, or the next float after it where
    that sum rounds down (``base`` and the sum on either side of a power of two, e.g. 2^30 s,
    2004-01-10, or 2^31 s, 2038: a wake-up there would otherwise land on its own instant again)."""
    at = base + k * w.DAY
    while (at - base) // w.DAY < k:
        at = math.nextafter(at, math.inf)
    return at


@dataclass(frozen=True, slots=True)
class Watched:
    """A score the rules compare only with numbers: its DNA name, its trend in the age (-1: never
    rises, +1: never falls, for a fixed history) and the numbers it is compared with."""

    name: str
    trend: int
    thresholds: tuple[float, ...]


class NotMonotone(Exception):
    """The probed values of a score do not follow its trend, or one is null: wake daily.
    ``reason``: the field and what was seen, for ``Crossings.stats``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Probe:
    """The values of a history's scores at whole-day ages, each computed once, through the same
    field computations the rules read (a ``DnaView`` at ``base + k·DAY``)."""

    __slots__ = ("dna", "base", "model", "compute", "scale", "history", "known", "views", "seen", "count")

    def __init__(self, dna: Dna, base: float, model: PredictiveModel, compute: dict[str, Callable[[DnaView], Any]]) -> None:
        self.dna = dna
        self.base = base
        self.model = model
        self.compute = compute
        self.scale = max(model.bgnbd.alpha * model.unit_days, 1.0)
        """The model's time scale in days (BG/NBD alpha): the scores are smooth in log(scale + age)."""
        self.history = ""
        self.known: Any = None
        """The history helper's name and value, the same at every age: given to each view."""
        self.views: dict[int, DnaView] = {}
        self.seen: dict[str, dict[int, float]] = {}
        self.count = 0

    def view(self, k: int) -> DnaView:
        found = self.views.get(k)
        if found is None:
            found = DnaView(self.dna, day_step(self.base, k), self.model, self.compute)
            if self.history:
                found[self.history] = self.known
            self.views[k] = found
        return found

    def value(self, name: str, k: int) -> float:
        seen = self.seen.get(name)
        if seen is None:
            seen = {}
            self.seen[name] = seen
        found = seen.get(k)
        if found is not None:
            return found
        raw = self.view(k)[name]
        self.count += 1
        if raw is None or isinstance(raw, bool) or not isinstance(raw, (int, float)) or math.isnan(raw):
            raise NotMonotone(f"{name}: null" if raw is None else f"{name}: not a number")
        value = float(raw)
        seen[k] = value
        return value

    def check(self, watched: Watched) -> None:
        """Every probed value of ``watched``, in age order, follows its trend (or raise)."""
        seen = self.seen.get(watched.name)
        if not seen:
            return
        previous: float | None = None
        for k in sorted(seen):
            value = seen[k]
            if previous is not None and (value - previous) * watched.trend < 0.0:
                raise NotMonotone(f"{watched.name}: against its trend")
            previous = value


def _passed(value: float, c: float, trend: int, strict: bool) -> bool:
    """Has a score moving with ``trend`` reached (``strict``: gone past) ``c``?"""
    if trend < 0:
        return value < c if strict else value <= c
    return value > c if strict else value >= c


_LINEAR: Final = 0
_LOG: Final = 1
_LOGIT: Final = 2


def _space(c: float) -> int:
    """The space the bracketing interpolates a score's distance to ``c`` in: log-odds for a
    number between 0 and 1 (P(alive) is linear in log age there), log for a positive one."""
    if 0.0 < c < 1.0:
        return _LOGIT
    return _LOG if c > 0.0 else _LINEAR


def _gap(value: float, c: float, space: int) -> float:
    """Distance from ``c`` to ``value`` in ``space`` (infinite at the edges of the space)."""
    if space == _LINEAR:
        return value - c
    if value <= 0.0:
        return -math.inf
    if space == _LOG:
        return math.log(value / c)
    if value >= 1.0:
        return math.inf
    return math.log(value / (1.0 - value)) - math.log(c / (1.0 - c))


def _first_passed(probe: _Probe, watched: Watched, c: float, strict: bool, lo: int, hi: int) -> int | None:
    """The first age in (lo, hi] at which ``watched`` has passed ``c``, given it had not at ``lo``;
    None when it has not by ``hi``.

    The gap to ``c`` (``_gap``) is followed in log(scale + age): first marching right by secant
    extrapolation (at least ``FIRST_STEP`` days, then at least doubling) until it has passed, then
    closing the bracket by interpolation (Illinois rule), probing a guess's neighbour once two
    guesses agree, and bisecting geometrically after ``PATIENCE`` steps in a row that did not
    halve the bracket. Only the number of probes depends on how well this guesses; the answer is
    the bracket's edge."""
    name, trend = watched.name, watched.trend
    space = _space(c)
    scale = probe.scale
    y_lo = _gap(probe.value(name, lo), c, space)
    x_lo = math.log(scale + lo)
    x_prev, y_prev = x_lo, math.nan
    step = FIRST_STEP
    while True:
        k = lo + step
        if math.isfinite(y_prev) and math.isfinite(y_lo) and y_prev != y_lo:
            x = x_lo - y_lo * (x_lo - x_prev) / (y_lo - y_prev)
            if x_lo < x < 700.0:
                k = max(k, int(math.ceil(math.exp(x) - scale)))
        k = min(k, hi)
        value = probe.value(name, k)
        if _passed(value, c, trend, strict):
            break
        if k == hi:
            return None
        step = max(step, 2 * (k - lo))
        x_prev, y_prev = x_lo, y_lo
        lo, y_lo, x_lo = k, _gap(value, c, space), math.log(scale + k)
    hi, y_hi, x_hi = k, _gap(value, c, space), math.log(scale + k)
    side = 0
    slow = 0
    last = -1
    while hi - lo > 1:
        width = hi - lo
        k = -1
        if slow < PATIENCE and math.isfinite(y_lo) and math.isfinite(y_hi) and y_lo != y_hi:
            x = x_lo + (x_hi - x_lo) * y_lo / (y_lo - y_hi)
            if x < 700.0:
                k = min(max(int(math.ceil(math.exp(x) - scale)), lo + 1), hi - 1)
        guessed = k >= 0
        if not guessed:
            k = min(max(int(round(math.sqrt((lo + scale) * (hi + scale)) - scale)), lo + 1), hi - 1)
        neighbour = guessed and last >= 0 and abs(k - last) <= NEIGHBOUR_DAYS
        last = k if guessed else -1
        for _ in range(2):
            value = probe.value(name, k)
            if _passed(value, c, trend, strict):
                hi, y_hi, x_hi = k, _gap(value, c, space), math.log(scale + k)
                if side > 0:
                    y_lo /= 2.0
                side = 1
                k -= 1
            else:
                lo, y_lo, x_lo = k, _gap(value, c, space), math.log(scale + k)
                if side < 0:
                    y_hi /= 2.0
                side = -1
                k += 1
            if not neighbour or hi - lo <= 1:
                break
        slow = slow + 1 if 2 * (hi - lo) > width else 0
    return hi


def _field_steps(probe: _Probe, watched: Watched, start: int, found: set[int]) -> None:
    """The ages in (start, HORIZON_DAYS] at which ``watched`` moves across one of its numbers."""
    name, trend = watched.name, watched.trend
    for c in watched.thresholds:
        reached: int | None = start
        if not _passed(probe.value(name, start), c, trend, False):
            reached = _first_passed(probe, watched, c, False, start, HORIZON_DAYS)
            if reached is not None:
                found.add(reached)
        if reached is not None and not _passed(probe.value(name, reached), c, trend, True):
            beyond = _first_passed(probe, watched, c, True, reached, HORIZON_DAYS)
            if beyond is not None:
                found.add(beyond)


class Crossings:
    """The crossing ages of each purchase history, solved once and remembered.

    ``steps`` answers for one customer; ``stats`` counts the histories solved, those left to the
    daily schedule (not monotone, or a null score), the score computations spent and the answers
    taken from the memo. Held by a rule set's ``TimeDependence``; the memo belongs to one model
    and is emptied for another. A record is never changed once folded (``dna.fold`` returns a new
    one), so the last record asked about is answered again without computing its key: a wake-up
    asks twice (which names are due, then the next wake-up).
    """

    __slots__ = ("model", "memo", "groups", "solved", "daily", "probes", "reused", "reasons", "last_dna", "last_key", "last")

    def __init__(self) -> None:
        self.model: PredictiveModel | None = None
        self.memo: dict[Any, tuple[int, ...] | None] = {}
        self.groups: dict[int, tuple[Watched, ...]] = {}
        """The watched groups by id, kept so that no other group can take an id the memo uses."""
        self.solved = 0
        self.daily = 0
        self.probes = 0
        self.reused = 0
        self.reasons: dict[str, int] = {}
        self.last_dna: Dna | None = None
        self.last_key: tuple[int, float, int] = (0, 0.0, 0)
        self.last: tuple[int, ...] | None = None

    def steps(
        self,
        watched: tuple[Watched, ...],
        history: str,
        dna: Dna,
        base: float,
        start: int,
        model: PredictiveModel,
        compute: dict[str, Callable[[DnaView], Any]],
    ) -> tuple[int, ...] | None:
        """Sorted whole-day ages after ``start`` (days after ``base``, the record's instant the
        scores count from; ``start``: the age of the history's newest fact, none of the ages before
        it is asked for) at which one of ``watched`` moves across one of its numbers, ending with
        ``HORIZON_DAYS``; None: wake daily. ``history`` names the helper holding everything but the
        age that the scores depend on (the memo key, with ``base`` and ``start``)."""
        if model is not self.model:
            self.model = model
            self.memo = {}
            self.last_dna = None
        group = id(watched)
        if self.groups.get(group) is not watched:
            self.groups[group] = watched
            self.memo = {}
            self.last_dna = None
        if dna is self.last_dna and self.last_key == (group, base, start):
            self.reused += 1
            return self.last
        probe = _Probe(dna, base, model, compute)
        known = probe.view(start)[history]
        key = (group, base, start, known)
        result: tuple[int, ...] | None
        if key in self.memo:
            self.reused += 1
            result = self.memo[key]
        else:
            result = self._solve(probe, watched, history, known, start)
            if len(self.memo) >= MEMO_SIZE:
                self.memo = {}
            self.memo[key] = result
        self.last_dna, self.last_key, self.last = dna, (group, base, start), result
        return result

    def _solve(self, probe: _Probe, watched: tuple[Watched, ...], history: str, known: Any, start: int) -> tuple[int, ...] | None:
        probe.history = history
        probe.known = known
        found: set[int] = {HORIZON_DAYS}
        result: tuple[int, ...] | None
        try:
            for item in watched:
                _field_steps(probe, item, start, found)
            for item in watched:
                probe.check(item)
            result = tuple(sorted(found))
        except NotMonotone as why:
            result = None
            self.daily += 1
            self.reasons[why.reason] = self.reasons.get(why.reason, 0) + 1
        self.solved += 1
        self.probes += probe.count
        return result

    def stats(self) -> dict[str, Any]:
        """Histories solved, left daily (and why), score computations, answers from the memo."""
        return {"solved": self.solved, "daily": self.daily, "probes": self.probes, "reused": self.reused, "daily_reasons": dict(self.reasons)}
