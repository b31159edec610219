"""The DNA as rules read it: every field of CONTRACT §2 computed from the state at an instant.

``DnaView`` is a dict that fills itself on first access (``__missing__``), so a rule set pays only
for the fields it reads, once per evaluation. The DNA functions (``affinity``, ``consented``, ...)
are methods, called through the registry in ``segments.fields``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from microseg.segments import windows as w
from microseg.segments.dna import ABANDON_AFTER_S, Dna, most_used_channel, top_key
from microseg.segments.predictive import PredictiveError, PredictiveModel, alive_probability, score

__all__ = ["DnaView", "journey_stage", "iso", "STAGE_THRESHOLDS", "ONBOARDING_DAYS", "AT_RISK_DAYS", "LAPSED_DAYS"]

ONBOARDING_DAYS = 90
AT_RISK_DAYS = 30
LAPSED_DAYS = 90
ADVOCATE_NPS = 9
STAGE_THRESHOLDS = {"days_since_last_activity": (AT_RISK_DAYS, LAPSED_DAYS), "tenure_days": (ONBOARDING_DAYS,)}


_DATES: dict[int, str] = {}
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(60))


def iso(t: float) -> str:
    """RFC 3339 UTC text of an epoch instant, as every output record writes it.

    The same text as ``datetime.fromtimestamp(t, timezone.utc).isoformat()`` with ``Z`` (a test
    holds it to that, rounding of microseconds included), put together from a per-day cache of the
    date and a table of two-digit numbers: this runs for every change record.
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
    clock = _TWO_DIGITS[hour] + ":" + _TWO_DIGITS[minute] + ":" + _TWO_DIGITS[second]
    if micros:
        return date + clock + "." + str(micros).zfill(6) + "Z"
    return date + clock + "Z"


def _days(now: float, then: float | None) -> int | None:
    return None if then is None else int((now - then) // w.DAY)


def journey_stage(acquired: bool, tenure: int, dsla: int, nps: float | None, advocacy: int) -> str:
    """Lapsed and at-risk first (recency wins), then the first 90 days, then advocates."""
    if not acquired:
        return "prospect"
    if dsla > LAPSED_DAYS:
        return "lapsed"
    if dsla > AT_RISK_DAYS:
        return "at_risk"
    if tenure <= ONBOARDING_DAYS:
        return "onboarding"
    if (nps is not None and nps >= ADVOCATE_NPS) or advocacy > 0:
        return "advocate"
    return "active"


def _window(metric: int, days: int) -> Callable[["DnaView"], Any]:
    def compute(view: DnaView) -> Any:
        return view.dna.windows.total(view.now, metric, days)

    return compute


def _money_window(days: int) -> Callable[["DnaView"], Any]:
    def compute(view: DnaView) -> Any:
        return view.dna.windows.total(view.now, w.SPEND, days) / 100

    return compute


def _voice(kind: str) -> Callable[["DnaView"], Any]:
    def compute(view: DnaView) -> Any:
        answer = view.dna.voice.get(kind)
        return None if answer is None else answer[0]

    return compute


def _abandoned_30d(view: DnaView) -> Any:
    dna = view.dna
    count = dna.windows.total(view.now, w.ABANDONED, 30)
    if dna.cart_at is not None:
        deadline = dna.cart_at + ABANDON_AFTER_S
        if deadline <= view.now and w.day_of(deadline) > w.day_of(view.now) - 30:
            count += 1
    return count


def _preferred(view: DnaView) -> Any:
    dna = view.dna
    return dna.preferred_channel if dna.preferred_channel is not None else most_used_channel(dna)


def _top_category(view: DnaView) -> Any:
    return top_key(view.dna.affinity)


def _channels_30d(view: DnaView) -> Any:
    first = int(view.now // w.DAY) - 30
    return sum(1 for day in view.dna.channel_days.values() if day > first)


def _stage(view: DnaView) -> Any:
    dna = view.dna
    return journey_stage(
        dna.acquired,
        view["tenure_days"],
        view["days_since_last_activity"],
        view["nps"],
        dna.reviews + dna.referrals,
    )


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
    m_x = max(dna.gross_cents - dna.first_day_cents, 0) / 100 / x if x > 0 else None
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
    """P(alive) alone: rules such as ``p_alive < 0.3 and clv_12m > 50`` mostly stop at it."""
    stats = view["_statistics"]
    if stats is None or view.model is None:
        return None
    try:
        return alive_probability(view.model, *stats)
    except PredictiveError:
        return None


def _score_field(index: int) -> Callable[["DnaView"], Any]:
    def compute(view: DnaView) -> Any:
        scores = view["_scores"]
        return None if scores is None else float(scores[index])

    return compute


_COMPUTE: dict[str, Callable[["DnaView"], Any]] = {
    "tenure_days": lambda v: int((v.now - v.dna.first_seen) // w.DAY),
    "days_since_last_activity": lambda v: _days(v.now, v.dna.last_activity if v.dna.last_activity is not None else v.dna.first_seen),
    "days_since_last_purchase": lambda v: _days(v.now, v.dna.last_purchase),
    "first_seen": lambda v: iso(v.dna.first_seen),
    "journey_stage": _stage,
    "sessions_7d": _window(w.SESSIONS, 7),
    "sessions_30d": _window(w.SESSIONS, 30),
    "page_views_30d": _window(w.PAGE_VIEWS, 30),
    "app_sessions_30d": _window(w.APP_SESSIONS, 30),
    "web_sessions_30d": _window(w.WEB_SESSIONS, 30),
    "bounces_30d": _window(w.BOUNCES, 30),
    "purchases_total": lambda v: v.dna.purchases_total,
    "purchases_30d": _window(w.PURCHASES, 30),
    "purchases_90d": _window(w.PURCHASES, 90),
    "spend_total": lambda v: (v.dna.gross_cents - v.dna.refunded_cents) / 100,
    "spend_30d": _money_window(30),
    "spend_90d": _money_window(90),
    "avg_order_value": lambda v: v.dna.gross_cents / 100 / v.dna.purchases_total if v.dna.purchases_total else None,
    "refunds_90d": _window(w.REFUNDS, 90),
    "carts_abandoned_30d": _abandoned_30d,
    "open_cart_value": lambda v: v.dna.cart_value if v.dna.cart_at is not None and v.now < v.dna.cart_at + ABANDON_AFTER_S else None,
    "top_category": _top_category,
    "preferred_channel": _preferred,
    "last_channel": lambda v: v.dna.last_channel,
    "channels_30d": _channels_30d,
    "channel_switches_30d": _window(w.SWITCHES, 30),
    "messages_received_30d": _window(w.MESSAGES, 30),
    "conversions_90d": _window(w.CONVERSIONS, 90),
    "days_since_last_message": lambda v: _days(v.now, v.dna.last_message),
    "nps": _voice("nps"),
    "csat": _voice("csat"),
    "ces": _voice("ces"),
    "open_support_contacts": lambda v: v.dna.open_support,
    "support_contacts_30d": _window(w.SUPPORT, 30),
    "reviews_total": lambda v: v.dna.reviews,
    "referrals_total": lambda v: v.dna.referrals,
    "_statistics": _statistics,
    "_scores": _scores,
    "_alive": _alive,
    "p_alive": lambda v: v["_alive"],
    "churn_risk": lambda v: None if v["_alive"] is None else 1.0 - v["_alive"],
    "expected_purchases_90d": _score_field(1),
    "clv_12m": _score_field(2),
    "timezone": lambda v: v.dna.timezone,
}


class DnaView(dict[str, Any]):
    """The DNA of one customer at instant ``now``; fields are computed on first read."""

    __slots__ = ("dna", "now", "model")
    dna: Dna
    now: float
    model: PredictiveModel | None

    def __init__(self, dna: Dna, now: float, model: PredictiveModel | None = None) -> None:
        self.dna = dna
        self.now = now
        self.model = model

    def __missing__(self, name: str) -> Any:
        value = _COMPUTE[name](self)
        self[name] = value
        return value

    def affinity(self, category: str) -> float:
        aff = self.dna.affinity
        total = sum(aff.values())
        return aff.get(category, 0.0) / total if total > 0 else 0.0

    def consented(self, channel: str) -> bool:
        return self.dna.consent.get(channel, False) and channel not in self.dna.unsubscribed

    def unsubscribed(self, channel: str) -> bool:
        return channel in self.dna.unsubscribed

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
        return self.dna.attributes.get(name)

    def snapshot(self) -> dict[str, Any]:
        """Every field at ``now`` (for explain and previews)."""
        return {name: self[name] for name in _COMPUTE if not name.startswith("_")}

    @staticmethod
    def field_names() -> tuple[str, ...]:
        return tuple(name for name in _COMPUTE if not name.startswith("_"))
