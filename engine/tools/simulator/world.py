"""The simulated world every customer shares: catalogue, time zones, daily rhythm, campaign calendar.

Fixed across seeds, so product ids, campaign ids and zones mean the same thing in every run.
Times are epoch seconds (``DAY`` = 86,400); prices are in the currency's main unit (e.g. 19.99).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = [
    "DAY", "CATEGORIES", "CHANNELS", "ERASURE_EVERY", "TIMEZONES", "PRICE_RANGE", "PRODUCTS_PER_CATEGORY", "PRODUCTS",
    "ACTIVE_HOURS", "CALENDAR", "THEMES", "THEME_COUPONS", "COUPONS", "SIGNUP_VISIT_P", "SUPPORT_TOPICS", "REFERRERS",
    "AGE_BANDS", "World",
]


DAY = 86_400


CATEGORIES: tuple[str, ...] = ("electronics", "fashion", "home", "beauty", "sports", "books", "toys", "grocery")


CHANNELS: tuple[str, ...] = ("web", "app", "email", "sms", "push", "store", "call_center", "social")


ERASURE_EVERY = 250
"""One customer in every block of this many consecutive indexes asks to be forgotten (rare, but certain)."""


PRICE_RANGE = {
    "electronics": (25.0, 1200.0),
    "fashion": (12.0, 220.0),
    "home": (8.0, 450.0),
    "beauty": (4.0, 90.0),
    "sports": (10.0, 350.0),
    "books": (5.0, 45.0),
    "toys": (6.0, 140.0),
    "grocery": (1.5, 40.0),
}


PRODUCTS_PER_CATEGORY = 40


# (IANA zone, country, currency, weight); prices are the same numbers everywhere, so three currencies.
TIMEZONES: tuple[tuple[str, str, str, float], ...] = (
    ("Europe/London", "GB", "GBP", 12),
    ("Europe/Berlin", "DE", "EUR", 12),
    ("Europe/Paris", "FR", "EUR", 9),
    ("Europe/Madrid", "ES", "EUR", 6),
    ("Europe/Amsterdam", "NL", "EUR", 4),
    ("Europe/Warsaw", "PL", "EUR", 4),
    ("Europe/Stockholm", "SE", "EUR", 3),
    ("America/New_York", "US", "USD", 14),
    ("America/Chicago", "US", "USD", 7),
    ("America/Denver", "US", "USD", 3),
    ("America/Los_Angeles", "US", "USD", 8),
    ("America/Toronto", "CA", "USD", 4),
    ("America/Sao_Paulo", "BR", "USD", 4),
    ("America/Mexico_City", "MX", "USD", 3),
    ("Asia/Tokyo", "JP", "USD", 3),
    ("Asia/Singapore", "SG", "USD", 2),
    ("Asia/Kolkata", "IN", "USD", 3),
    ("Australia/Sydney", "AU", "USD", 3),
    ("Africa/Johannesburg", "ZA", "USD", 2),
    ("UTC", "ZZ", "EUR", 1),
)


# Relative activity by local hour: quiet nights, a lunch bump, an evening peak.
_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 1, 2, 4, 6, 7, 7, 8, 10, 10, 8, 7, 7, 8, 10, 12, 13, 12, 8, 4)

ACTIVE_HOURS = tuple(h for h, w in enumerate(_HOUR_WEIGHTS) for _ in range(w))
"""Local hours, each repeated by its weight: a uniform pick from it follows the daily rhythm."""

# Weekday (Monday = 0) -> marketing sends as (channel, local second of day).
CALENDAR: dict[int, tuple[tuple[str, int], ...]] = {
    0: (("push", 18 * 3600),),
    1: (("email", 10 * 3600),),
    3: (("sms", 12 * 3600 + 1800),),
    4: (("email", 9 * 3600 + 1800),),
    5: (("push", 11 * 3600),),
}

THEMES = ("new-arrivals", "weekend-deals", "loyalty-rewards", "flash-sale", "back-in-stock", "seasonal-picks")

THEME_COUPONS = dict(zip(THEMES, ("NEW10", "WEEKEND15", "LOYAL20", "FLASH25", "BACK10", "SEASON15")))
"""The coupon code a campaign of each theme hands out; most purchases from its click use it."""

COUPONS = ("WELCOME10", "SAVE10", "FREESHIP")
"""Codes used on purchases outside campaigns (``Persona.coupon_p``)."""

SIGNUP_VISIT_P = 0.3
"""Chance that a later web or app visit of a customer without an account (``Persona.anon_p``) is the sign-up."""

SUPPORT_TOPICS = ("delivery", "refund", "damaged_item", "billing", "account", "order_status")

REFERRERS = ("direct", "search", "search", "social", "email", "affiliate")

AGE_BANDS = ("18-24", "25-34", "25-34", "35-44", "35-44", "45-54", "55-64", "65+")


def _catalogue() -> dict[str, tuple[tuple[str, float], ...]]:
    """Fixed across seeds so product ids mean the same thing in every run; sorted cheapest first."""
    rng = random.Random(20260101)
    out = {}
    for cat in CATEGORIES:
        low, high = PRICE_RANGE[cat]
        prices = sorted(round(math.exp(rng.uniform(math.log(low), math.log(high))), 0) - 0.01 for _ in range(40))
        out[cat] = tuple((f"p-{cat[:4]}-{i:03d}", max(p, 0.99)) for i, p in enumerate(prices))
    return out


PRODUCTS = _catalogue()

"""Category -> ``(product id, price)`` pairs, cheapest first."""


@dataclass(frozen=True, slots=True)
class World:
    """What every customer of one run shares: the period (``start``, ``end`` or None for live mode, in
    epoch seconds; ``horizon`` seconds ahead for quiet and erasure times), the population size and
    the one random source."""

    seed: int
    customers: int
    start: int
    end: int | None
    horizon: int
    rng: random.Random
