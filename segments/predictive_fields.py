"""The predictive DNA fields (BG/NBD + Gamma-Gamma, ``segments.predictive``), declared once.

Every field is a finite number or null: null with no model, before the first purchase, or when
the model cannot score the history (``score`` raises ``PredictiveError``, never returns inf/nan).
The money input ``m_x`` is exact integer cents divided once, as in the fitter. The model's
inputs are memoised per view as the helpers ``_history`` (x, t_x, m_x) and ``_statistics`` (with T),
P(alive) as ``_alive`` (rules such as ``p_alive < 0.3 and clv_12m > 50`` mostly stop at it); the
90-day purchases and the CLV are computed apart from each other (one hypergeometric series each),
with the same arithmetic as ``predictive.score``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from microseg.segments import windows as w
from microseg.segments.dna_record import FIRST_PURCHASE, LAST_PURCHASE
from microseg.segments.fields import NUMBER_OR_NULL, Compute, FieldSpec, Rescored
from microseg.segments.predictive import PredictiveError, alive_probability, purchases_90d, value_12m
from microseg.segments.view import DnaView

__all__ = ["PREDICTIVE_FIELDS", "PREDICTIVE_HELPERS"]


def _history(view: DnaView) -> tuple[int, float, float | None] | None:
    """(x, t_x, m_x) in the model's unit: everything but the age that the scores depend on (it
    changes only with a purchase), or None without a model or a purchase."""
    dna = view.dna
    if view.model is None or dna.first_purchase is None or dna.last_purchase is None:
        return None
    x = max(dna.purchase_days - 1, 0)
    t_x = (dna.last_purchase - dna.first_purchase) / w.DAY / view.model.unit_days
    m_x = max(dna.gross_cents - dna.first_day_cents, 0) / (100 * x) if x > 0 else None
    return x, t_x, m_x


def _statistics(view: DnaView) -> tuple[int, float, float, float | None] | None:
    """(x, t_x, T, m_x) in the model's unit, or None without a model or a purchase. T counts
    whole days since the first purchase, so the scores change only at 24 h steps after it."""
    history = view["_history"]
    if history is None or view.model is None or view.dna.first_purchase is None:
        return None
    x, t_x, m_x = history
    age_days = int((view.now - view.dna.first_purchase) // w.DAY)
    return x, t_x, max(age_days / view.model.unit_days, t_x), m_x


def _alive(view: DnaView) -> Any:
    stats = view["_statistics"]
    if stats is None or view.model is None:
        return None
    try:
        return alive_probability(view.model, *stats)
    except PredictiveError:
        return None


def _purchases_90d(view: DnaView) -> Any:
    """BG/NBD expected purchases in the next 90 days, or None (as P(alive), or not finite)."""
    stats = view["_statistics"]
    alive = view["_alive"]
    if stats is None or alive is None or view.model is None:
        return None
    value = purchases_90d(view.model, stats[0], stats[2], alive)
    return value if math.isfinite(value) else None


def _value_12m(view: DnaView) -> Any:
    """Expected spend over the next 52 weeks, or None (as P(alive), or not finite)."""
    stats = view["_statistics"]
    alive = view["_alive"]
    if stats is None or alive is None or view.model is None:
        return None
    value = value_12m(view.model, stats[0], stats[2], stats[3], alive)
    return value if math.isfinite(value) else None


def _p_alive(view: DnaView) -> Any:
    return view["_alive"]


def _churn_risk(view: DnaView) -> Any:
    alive = view["_alive"]
    return None if alive is None else 1.0 - alive


_FALLING = (Rescored(FIRST_PURCHASE, -1, "_history", LAST_PURCHASE),)
"""For a fixed history (x, t_x, m_x) P(alive), the expected purchases and the CLV never rise with
the age T (BG/NBD eqs. 10 and 12; the CLV is a positive combination of expected purchases at a
fixed spend, discounted or not): the timeline solves their threshold crossings (``segments.crossing``)."""
_RISING = (Rescored(FIRST_PURCHASE, 1, "_history", LAST_PURCHASE),)
_PURCHASE = frozenset({"purchase"})


def _predictive(name: str, doc: str, compute: Compute, time: tuple[Rescored, ...] = _FALLING) -> FieldSpec:
    return FieldSpec(name, NUMBER_OR_NULL, doc, "predictive", compute, time, _PURCHASE)


PREDICTIVE_FIELDS: tuple[FieldSpec, ...] = (
    _predictive(
        "p_alive",
        "BG/NBD probability that the customer has not dropped out. 1 after a single purchase day (BG/NBD customers only "
        "drop out after a repeat purchase).",
        _p_alive,
    ),
    _predictive("churn_risk", "`1 − p_alive`.", _churn_risk, _RISING),
    _predictive("expected_purchases_90d", "BG/NBD expected purchase days in the next 90 days.", _purchases_90d),
    _predictive(
        "clv_12m",
        "Expected spend over the next 52 weeks: expected purchases × Gamma-Gamma expected spend per purchase.",
        _value_12m,
    ),
)

PREDICTIVE_HELPERS: Mapping[str, Compute] = {"_history": _history, "_statistics": _statistics, "_alive": _alive}
