"""Personas: the kinds of customer the simulator knows, with their habits, and how a run weights them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from microseg.errors import ConfigError

__all__ = ["Persona", "PERSONAS", "parse_persona_weights", "choose_personas"]


@dataclass(frozen=True, slots=True)
class Persona:
    """How one kind of customer behaves: daily rates, funnel conversion and voice-of-customer ranges.

    ``bounce_p``: share of web and app visits that end on their landing page (one page view);
    ``coupon_p``: share of purchases outside a campaign that use a coupon code; ``anon_p``: share
    of customers who first browse without an account (prospects) and sign up on a later visit.
    """

    name: str
    weight: float
    visits_per_day: float
    channel_mix: tuple[tuple[str, float], ...]
    switch_p: float
    mobile_p: float
    pages_mean: float
    bounce_p: float
    cart_p: float
    checkout_p: float
    buy_p: float
    coupon_p: float
    basket_mean: float
    spend_factor: float
    open_p: float
    click_p: float
    convert_p: float
    unsub_p: float
    consent_p: tuple[float, float, float]
    nps: tuple[int, int]
    csat: tuple[int, int]
    ces: tuple[int, int]
    rating: tuple[int, int]
    survey_p: float
    support_per_day: float
    refund_p: float
    review_p: float
    referral_p: float
    anon_p: float
    quiet_p: float
    quiet_window: tuple[float, float]
    start_window: tuple[float, float]
    tiers: tuple[str, ...]


def _p(name: str, weight: float, **kw: Any) -> Persona:
    base: dict[str, Any] = dict(
        visits_per_day=0.3, channel_mix=(("web", 0.7), ("app", 0.3)), switch_p=0.1, mobile_p=0.55,
        pages_mean=4.5, bounce_p=0.25, cart_p=0.2, checkout_p=0.6, buy_p=0.6, coupon_p=0.05, basket_mean=1.5, spend_factor=1.0,
        open_p=0.3, click_p=0.25, convert_p=0.1, unsub_p=0.02, consent_p=(0.85, 0.35, 0.3),
        nps=(6, 9), csat=(3, 5), ces=(2, 5), rating=(3, 5), survey_p=0.25, support_per_day=0.01,
        refund_p=0.03, review_p=0.05, referral_p=0.02, anon_p=0.1, quiet_p=0.1, quiet_window=(0.3, 0.9),
        start_window=(0.0, 0.7), tiers=("bronze", "silver"),
    )
    base.update(kw)
    return Persona(name=name, weight=weight, **base)


PERSONAS: tuple[Persona, ...] = (
    _p("new_browser", 0.20, visits_per_day=0.25, channel_mix=(("web", 0.75), ("app", 0.2), ("store", 0.05)),
       bounce_p=0.5, anon_p=0.5, cart_p=0.08, checkout_p=0.4, buy_p=0.5, basket_mean=1.2, spend_factor=0.8, open_p=0.15,
       consent_p=(0.7, 0.2, 0.2), nps=(5, 9), referral_p=0.0, review_p=0.03, quiet_p=0.35,
       start_window=(0.0, 0.9), tiers=("bronze",)),
    _p("loyal_regular", 0.14, visits_per_day=0.6, channel_mix=(("web", 0.45), ("app", 0.35), ("store", 0.2)),
       switch_p=0.15, pages_mean=5, bounce_p=0.12, cart_p=0.45, checkout_p=0.8, buy_p=0.85, coupon_p=0.02, basket_mean=2.2,
       spend_factor=1.2, open_p=0.55, click_p=0.35, convert_p=0.25, unsub_p=0.002, consent_p=(0.95, 0.5, 0.6),
       nps=(9, 10), csat=(4, 5), ces=(1, 3), rating=(4, 5), survey_p=0.35, review_p=0.25, referral_p=0.12,
       anon_p=0.03, quiet_p=0.03, start_window=(0.0, 0.3), tiers=("silver", "gold", "gold", "platinum")),
    _p("bargain_hunter", 0.14, visits_per_day=0.2, channel_mix=(("web", 0.6), ("app", 0.35), ("store", 0.05)),
       switch_p=0.15, mobile_p=0.6, pages_mean=6, cart_p=0.2, checkout_p=0.6, buy_p=0.45, coupon_p=0.5, basket_mean=1.8,
       spend_factor=0.6, open_p=0.65, click_p=0.55, convert_p=0.4, unsub_p=0.01, consent_p=(0.95, 0.75, 0.5),
       ces=(2, 4), refund_p=0.05, review_p=0.08),
    _p("lapsing_high_value", 0.08, visits_per_day=0.5, channel_mix=(("web", 0.5), ("app", 0.3), ("store", 0.2)),
       switch_p=0.15, mobile_p=0.4, pages_mean=5, cart_p=0.5, checkout_p=0.85, buy_p=0.85, basket_mean=2.0,
       spend_factor=3.0, open_p=0.45, click_p=0.3, convert_p=0.2, consent_p=(0.9, 0.4, 0.3), nps=(7, 10),
       csat=(4, 5), ces=(1, 3), rating=(4, 5), survey_p=0.3, review_p=0.1, referral_p=0.05, anon_p=0.0, quiet_p=1.0,
       quiet_window=(0.25, 0.55), start_window=(0.0, 0.15), tiers=("gold", "platinum")),
    _p("cart_abandoner", 0.12, visits_per_day=0.4, pages_mean=5, cart_p=0.6, checkout_p=0.5, buy_p=0.08,
       basket_mean=1.6, open_p=0.3, nps=(5, 8), csat=(3, 4), ces=(3, 6), rating=(3, 4), review_p=0.03,
       referral_p=0.01, quiet_p=0.2, start_window=(0.0, 0.8)),
    _p("unhappy_detractor", 0.08, visits_per_day=0.25,
       channel_mix=(("web", 0.5), ("app", 0.2), ("store", 0.1), ("call_center", 0.2)), switch_p=0.3,
       mobile_p=0.5, pages_mean=4, cart_p=0.25, checkout_p=0.6, buy_p=0.6, basket_mean=1.4, open_p=0.2,
       click_p=0.1, convert_p=0.03, unsub_p=0.15, nps=(0, 5), csat=(1, 2), ces=(5, 7), rating=(1, 2),
       survey_p=0.6, support_per_day=0.08, refund_p=0.35, review_p=0.3, referral_p=0.0, quiet_p=0.45,
       quiet_window=(0.4, 0.9), start_window=(0.0, 0.6)),
    _p("app_first_mobile", 0.14, visits_per_day=0.7, channel_mix=(("app", 0.9), ("web", 0.1)), switch_p=0.05,
       mobile_p=0.95, pages_mean=6, bounce_p=0.2, cart_p=0.2, checkout_p=0.65, buy_p=0.7, spend_factor=0.9, open_p=0.35,
       click_p=0.3, convert_p=0.12, consent_p=(0.6, 0.2, 0.95), nps=(6, 10), ces=(1, 4), review_p=0.12,
       referral_p=0.05, start_window=(0.0, 0.8), tiers=("bronze", "silver", "gold")),
    _p("channel_switcher", 0.10, visits_per_day=0.45,
       channel_mix=(("web", 0.35), ("app", 0.3), ("store", 0.2), ("call_center", 0.15)), switch_p=0.7,
       mobile_p=0.5, pages_mean=4, cart_p=0.3, checkout_p=0.7, buy_p=0.7, basket_mean=1.6, spend_factor=1.1,
       open_p=0.35, consent_p=(0.85, 0.5, 0.5), survey_p=0.3, support_per_day=0.03, refund_p=0.05,
       review_p=0.08, referral_p=0.04, tiers=("silver", "gold")),
)


def parse_persona_weights(text: str) -> dict[str, float]:
    """Parse ``name=weight,name=weight`` (the ``--personas`` option); unnamed personas get weight 0."""
    known = {p.name for p in PERSONAS}
    weights: dict[str, float] = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in known:
            msg = f"bad persona weight {part!r}: use name=weight with a name from {', '.join(sorted(known))}"
            raise ConfigError(msg)
        try:
            weights[name] = float(value)
        except ValueError:
            raise ConfigError(f"bad persona weight {part!r}: {value!r} is not a number") from None
    return weights


def choose_personas(weights: Mapping[str, float] | None) -> tuple[Persona, ...]:
    """``PERSONAS`` with ``weights`` (name -> weight, unnamed ones 0) applied; None keeps their own weights.

    Raises ``ConfigError`` for an unknown name, a negative weight or weights that are all zero.
    """
    if weights is None:
        return PERSONAS
    known = {p.name for p in PERSONAS}
    if unknown := set(weights) - known:
        raise ConfigError(f"unknown persona(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    chosen = tuple(replace(p, weight=float(weights.get(p.name, 0.0))) for p in PERSONAS)
    if any(p.weight < 0 for p in chosen) or sum(p.weight for p in chosen) <= 0:
        raise ConfigError("persona weights must be >= 0 and not all zero")
    return chosen
