"""The predictive DNA fields (BG/NBD + Gamma-Gamma, ``segments.predictive``), declared once.

Every field is a finite number or null: null with no model, before the first purchase, or when
the model cannot score the history (``score`` raises ``PredictiveError``, never returns inf/nan).
The money input ``m_x`` is exact integer cents divided once, as in the fitter. The model's
inputs are memoised per view as the helper ``_statistics``; the full scores
as ``_scores``, and P(alive) alone as ``_alive`` (rules such as ``p_alive < 0.3 and clv_12m > 50``
mostly stop at it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from microseg.segments import windows as w
from microseg.segments.dna_record import FIRST_PURCHASE
from microseg.segments.fields import NUMBER_OR_NULL, Compute, FieldSpec, Rescored
from microseg.segments.predictive import PredictiveError, alive_probability, score
from microseg.segments.view import DnaView

__all__ = ["PREDICTIVE_FIELDS", "PREDICTIVE_HELPERS"]


def _statistics(view: DnaView) -> tuple[int, float, float, float | None] | None:
    """(x, t_x, T, m_x) in the model's unit, or None without a model or a purchase."""
    dna = view.dna
    if view.model is None or dna.first_purchase is None or dna.last_purchase is None:
        return None
    unit = view.model.unit_days
    x = max(dna.purchase_days - 1, 0)
    age_days = int((view.now - dna.first_purchase) // w.DAY)
    t_x = (dna.last_purchase - dna.first_purchase) / w.DAY / unit
    big_t = max(age_days / unit, t_x)
    m_x = max(dna.gross_cents - dna.first_day_cents, 0) / (100 * x) if x > 0 else None
    return x, t_x, big_t, m_x


def _scores(view: DnaView) -> Any:
    """(p_alive, expected_purchases_90d, clv_12m), or None without a model or a purchase."""
    stats = view["_statistics"]
    if stats is None or view.model is None:
        return None
    try:
        scores = score(view.model, *stats)
    except PredictiveError:
        return None
    return (scores.p_alive, scores.expected_purchases_90d, scores.clv_12m)


def _alive(view: DnaView) -> Any:
    stats = view["_statistics"]
    if stats is None or view.model is None:
        return None
    try:
        return alive_probability(view.model, *stats)
    except PredictiveError:
        return None


def _score_field(index: int) -> Compute:
    def compute(view: DnaView) -> Any:
        scores = view["_scores"]
        return None if scores is None else float(scores[index])

    return compute


def _p_alive(view: DnaView) -> Any:
    return view["_alive"]


def _churn_risk(view: DnaView) -> Any:
    alive = view["_alive"]
    return None if alive is None else 1.0 - alive


_DAILY = (Rescored(FIRST_PURCHASE),)
_PURCHASE = frozenset({"purchase"})


def _predictive(name: str, doc: str, compute: Compute) -> FieldSpec:
    return FieldSpec(name, NUMBER_OR_NULL, doc, "predictive", compute, _DAILY, _PURCHASE)


PREDICTIVE_FIELDS: tuple[FieldSpec, ...] = (
    _predictive(
        "p_alive",
        "BG/NBD probability that the customer has not dropped out. 1 after a single purchase day (BG/NBD customers only "
        "drop out after a repeat purchase).",
        _p_alive,
    ),
    _predictive("churn_risk", "`1 − p_alive`.", _churn_risk),
    _predictive("expected_purchases_90d", "BG/NBD expected purchase days in the next 90 days.", _score_field(1)),
    _predictive(
        "clv_12m",
        "Expected spend over the next 52 weeks: expected purchases × Gamma-Gamma expected spend per purchase.",
        _score_field(2),
    ),
)

PREDICTIVE_HELPERS: Mapping[str, Compute] = {"_statistics": _statistics, "_scores": _scores, "_alive": _alive}
