"""The DNA as rules read it: every field computed from a customer's record at an instant.

``DnaView`` is a dict that fills itself on first access (``__missing__``), so a rule set pays only
for the fields it reads, once per evaluation. How each field is computed is part of its
declaration (``FieldSpec.compute``); a view takes the compute table of a registry, by default the
built-in fields (``segments.builtin_fields.BUILTINS``). The DNA functions (``affinity``,
``consented``, ...) are methods, called through the registry's ``FunctionSpec.impl``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from microseg.segments.dna_record import Dna, attribute_value
from microseg.segments.predictive import PredictiveModel

__all__ = ["DnaView", "iso"]


_DATES: dict[int, str] = {}
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(60))
_THREE_DIGITS = tuple(f"{n:03d}" for n in range(1000))


def iso(t: float) -> str:
    """RFC 3339 UTC text of an epoch instant with milliseconds, ``2026-03-01T10:00:02.645Z``, as every
    output record, explain answer, audit record and JSON log line writes it: always three digits,
    ``...:03.000Z`` for a whole second, so one format parses and sorts everywhere.

    The same text as ``datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")``
    with ``Z`` (a test holds it to that): the instant is rounded to the microsecond (float noise,
    as datetime does), then cut to the millisecond, so a time never moves on to the next second or
    day (a leap second's ``23:59:59.999999`` stays ``23:59:59.999Z``). Put together from a per-day
    cache of the date and tables of two- and three-digit numbers: this runs for every change record.
    """
    fraction, whole = math.modf(t)
    micros = round(fraction * 1e6)
    seconds = int(whole)
    if micros >= 1_000_000:
        micros -= 1_000_000
        seconds += 1
    elif micros < 0:
        micros += 1_000_000
        seconds -= 1
    day, second = divmod(seconds, 86_400)
    date = _DATES.get(day)
    if date is None:
        date = datetime.fromtimestamp(day * 86_400, timezone.utc).date().isoformat() + "T"
        if len(_DATES) < 100_000:
            _DATES[day] = date
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return date + _TWO_DIGITS[hour] + ":" + _TWO_DIGITS[minute] + ":" + _TWO_DIGITS[second] + "." + _THREE_DIGITS[micros // 1000] + "Z"


class DnaView(dict[str, Any]):
    """The DNA of one customer at instant ``now`` (epoch seconds); fields are computed on first read.

    ``compute`` maps each field (and helper) name to its compute function: a registry's
    ``compute`` table, the built-in fields when None. ``model`` is the predictive model, if any.
    """

    __slots__ = ("dna", "now", "model", "compute")
    dna: Dna
    now: float
    model: PredictiveModel | None
    compute: dict[str, Callable[[DnaView], Any]]

    def __init__(
        self, dna: Dna, now: float, model: PredictiveModel | None = None, compute: dict[str, Callable[[DnaView], Any]] | None = None
    ) -> None:
        self.dna = dna
        self.now = now
        self.model = model
        if compute is None:
            compute = _BUILTIN if _BUILTIN is not None else _builtin_compute()
        self.compute = compute

    def __missing__(self, name: str) -> Any:
        value = self.compute[name](self)
        self[name] = value
        return value

    def affinity(self, category: str) -> float:
        aff = self.dna.affinity
        total = sum(aff.values())
        return aff.get(category, 0.0) / total if total > 0 else 0.0

    def consented(self, channel: str) -> bool:
        return self.dna.consent.get(channel, -1.0) > 0

    def unsubscribed(self, channel: str) -> bool:
        return self.dna.unsubscribed.get(channel, -1.0) > 0

    def _rate(self, index: int, channel: str | None) -> float | None:
        campaigns = self.dna.campaigns
        rows = [campaigns[channel]] if channel is not None and channel in campaigns else [] if channel is not None else list(campaigns.values())
        delivered = sum(r[0] for r in rows)
        return sum(r[index] for r in rows) / delivered if delivered else None

    def open_rate(self, channel: str | None = None) -> float | None:
        return self._rate(1, channel)

    def click_rate(self, channel: str | None = None) -> float | None:
        return self._rate(2, channel)

    def attr(self, name: str) -> Any:
        return attribute_value(self.dna.attributes.get(name))

    def snapshot(self) -> dict[str, Any]:
        """Every field at ``now`` (for explain and previews), in declaration order."""
        return {name: self[name] for name in self.compute if not name.startswith("_")}

    def field_names(self) -> tuple[str, ...]:
        return tuple(name for name in self.compute if not name.startswith("_"))


_BUILTIN: dict[str, Callable[[DnaView], Any]] | None = None


def _builtin_compute() -> dict[str, Callable[[DnaView], Any]]:
    """The built-in fields' compute table, imported on first use: the declarations import this
    module (their computes read a ``DnaView``)."""
    global _BUILTIN
    from microseg.segments.builtin_fields import BUILTINS

    _BUILTIN = BUILTINS.compute
    return _BUILTIN
