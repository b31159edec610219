"""Synthetic customer journeys: personas turned into CONTRACT §1 events for demos, tests and benchmarks.

Each customer is a small generator that plans one local day at a time into its own heap of pending
events; ``simulate`` merges those streams with a global heap keyed by (time, customer index), so
memory grows with the number of customers, never with the number of events. One ``random.Random``
seeded from ``seed`` drives everything and the merge order is fixed, so the same arguments always
give byte-identical output; nothing reads the wall clock.
"""

from __future__ import annotations

import heapq
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import IO, Annotated, Any

import orjson
import typer

from microseg.errors import ConfigError

__all__ = [
    "Persona",
    "PERSONAS",
    "CATEGORIES",
    "CHANNELS",
    "TIMEZONES",
    "ERASURE_EVERY",
    "simulate",
    "simulate_lines",
    "personas_by_customer",
    "live",
    "parse_persona_weights",
    "simulate_command",
]

DAY = 86_400
CATEGORIES: tuple[str, ...] = ("electronics", "fashion", "home", "beauty", "sports", "books", "toys", "grocery")
CHANNELS: tuple[str, ...] = ("web", "app", "email", "sms", "push", "store", "call_center", "social")
ERASURE_EVERY = 250
"""One customer in every block of this many consecutive indexes asks to be forgotten (rare, but certain)."""

_PRICE_RANGE = {
    "electronics": (25.0, 1200.0),
    "fashion": (12.0, 220.0),
    "home": (8.0, 450.0),
    "beauty": (4.0, 90.0),
    "sports": (10.0, 350.0),
    "books": (5.0, 45.0),
    "toys": (6.0, 140.0),
    "grocery": (1.5, 40.0),
}
_PRODUCTS_PER_CATEGORY = 40

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
_HOURS = tuple(h for h, w in enumerate(_HOUR_WEIGHTS) for _ in range(w))

# Weekday (Monday = 0) -> marketing sends as (channel, local second of day).
_CALENDAR: dict[int, tuple[tuple[str, int], ...]] = {
    0: (("push", 18 * 3600),),
    1: (("email", 10 * 3600),),
    3: (("sms", 12 * 3600 + 1800),),
    4: (("email", 9 * 3600 + 1800),),
    5: (("push", 11 * 3600),),
}
_THEMES = ("new-arrivals", "weekend-deals", "loyalty-rewards", "flash-sale", "back-in-stock", "seasonal-picks")
_SUPPORT_TOPICS = ("delivery", "refund", "damaged_item", "billing", "account", "order_status")
_REFERRERS = ("direct", "search", "search", "social", "email", "affiliate")
_AGE_BANDS = ("18-24", "25-34", "25-34", "35-44", "35-44", "45-54", "55-64", "65+")


@dataclass(frozen=True, slots=True)
class Persona:
    """How one kind of customer behaves: daily rates, funnel conversion and voice-of-customer ranges."""

    name: str
    weight: float
    visits_per_day: float
    channel_mix: tuple[tuple[str, float], ...]
    switch_p: float
    mobile_p: float
    pages_mean: float
    cart_p: float
    checkout_p: float
    buy_p: float
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
    quiet_p: float
    quiet_window: tuple[float, float]
    start_window: tuple[float, float]
    tiers: tuple[str, ...]


def _p(name: str, weight: float, **kw: Any) -> Persona:
    base: dict[str, Any] = dict(
        visits_per_day=0.3, channel_mix=(("web", 0.7), ("app", 0.3)), switch_p=0.1, mobile_p=0.55,
        pages_mean=4.5, cart_p=0.2, checkout_p=0.6, buy_p=0.6, basket_mean=1.5, spend_factor=1.0,
        open_p=0.3, click_p=0.25, convert_p=0.1, unsub_p=0.02, consent_p=(0.85, 0.35, 0.3),
        nps=(6, 9), csat=(3, 5), ces=(2, 5), rating=(3, 5), survey_p=0.25, support_per_day=0.01,
        refund_p=0.03, review_p=0.05, referral_p=0.02, quiet_p=0.1, quiet_window=(0.3, 0.9),
        start_window=(0.0, 0.7), tiers=("bronze", "silver"),
    )
    base.update(kw)
    return Persona(name=name, weight=weight, **base)


PERSONAS: tuple[Persona, ...] = (
    _p("new_browser", 0.20, visits_per_day=0.25, channel_mix=(("web", 0.75), ("app", 0.2), ("store", 0.05)),
       cart_p=0.08, checkout_p=0.4, buy_p=0.5, basket_mean=1.2, spend_factor=0.8, open_p=0.15,
       consent_p=(0.7, 0.2, 0.2), nps=(5, 9), referral_p=0.0, review_p=0.03, quiet_p=0.35,
       start_window=(0.0, 0.9), tiers=("bronze",)),
    _p("loyal_regular", 0.14, visits_per_day=0.6, channel_mix=(("web", 0.45), ("app", 0.35), ("store", 0.2)),
       switch_p=0.15, pages_mean=5, cart_p=0.45, checkout_p=0.8, buy_p=0.85, basket_mean=2.2,
       spend_factor=1.2, open_p=0.55, click_p=0.35, convert_p=0.25, unsub_p=0.002, consent_p=(0.95, 0.5, 0.6),
       nps=(9, 10), csat=(4, 5), ces=(1, 3), rating=(4, 5), survey_p=0.35, review_p=0.25, referral_p=0.12,
       quiet_p=0.03, start_window=(0.0, 0.3), tiers=("silver", "gold", "gold", "platinum")),
    _p("bargain_hunter", 0.14, visits_per_day=0.2, channel_mix=(("web", 0.6), ("app", 0.35), ("store", 0.05)),
       switch_p=0.15, mobile_p=0.6, pages_mean=6, cart_p=0.2, checkout_p=0.6, buy_p=0.45, basket_mean=1.8,
       spend_factor=0.6, open_p=0.65, click_p=0.55, convert_p=0.4, unsub_p=0.01, consent_p=(0.95, 0.75, 0.5),
       ces=(2, 4), refund_p=0.05, review_p=0.08),
    _p("lapsing_high_value", 0.08, visits_per_day=0.5, channel_mix=(("web", 0.5), ("app", 0.3), ("store", 0.2)),
       switch_p=0.15, mobile_p=0.4, pages_mean=5, cart_p=0.5, checkout_p=0.85, buy_p=0.85, basket_mean=2.0,
       spend_factor=3.0, open_p=0.45, click_p=0.3, convert_p=0.2, consent_p=(0.9, 0.4, 0.3), nps=(7, 10),
       csat=(4, 5), ces=(1, 3), rating=(4, 5), survey_p=0.3, review_p=0.1, referral_p=0.05, quiet_p=1.0,
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
       mobile_p=0.95, pages_mean=6, cart_p=0.2, checkout_p=0.65, buy_p=0.7, spend_factor=0.9, open_p=0.35,
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


def _personas(weights: Mapping[str, float] | None) -> tuple[Persona, ...]:
    if weights is None:
        return PERSONAS
    known = {p.name for p in PERSONAS}
    if unknown := set(weights) - known:
        raise ConfigError(f"unknown persona(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    chosen = tuple(replace(p, weight=float(weights.get(p.name, 0.0))) for p in PERSONAS)
    if any(p.weight < 0 for p in chosen) or sum(p.weight for p in chosen) <= 0:
        raise ConfigError("persona weights must be >= 0 and not all zero")
    return chosen


def _catalogue() -> dict[str, tuple[tuple[str, float], ...]]:
    """Fixed across seeds so product ids mean the same thing in every run; sorted cheapest first."""
    rng = random.Random(20260101)
    out = {}
    for cat in CATEGORIES:
        low, high = _PRICE_RANGE[cat]
        prices = sorted(round(math.exp(rng.uniform(math.log(low), math.log(high))), 0) - 0.01 for _ in range(40))
        out[cat] = tuple((f"p-{cat[:4]}-{i:03d}", max(p, 0.99)) for i, p in enumerate(prices))
    return out


_PRODUCTS = _catalogue()


@dataclass(frozen=True, slots=True)
class _World:
    """What every customer shares: the period, the population size and the one random source."""

    seed: int
    customers: int
    start: int
    end: int | None
    horizon: int
    rng: random.Random


class _Life:
    """One customer's journey; ``run`` yields (epoch second, event dict) in time order."""

    __slots__ = (
        "idx", "cid", "p", "w", "r", "tz", "off", "zone", "currency", "country", "start", "quiet_at",
        "erase_at", "pend", "seq", "orders", "last_channel", "favs", "consent", "preferred", "tier",
        "mix_names", "mix_cum", "exp_visits", "exp_support", "switch_count",
    )

    def __init__(self, idx: int, persona: Persona, world: _World, start: int, zone: tuple[str, str, str, float]) -> None:
        from zoneinfo import ZoneInfo

        r = world.rng.random
        self.idx, self.p, self.w, self.r = idx, persona, world, r
        self.cid = f"c-{idx:06d}"
        self.zone, self.country, self.currency = zone[0], zone[1], zone[2]
        self.tz = ZoneInfo(zone[0])
        offset = datetime.fromtimestamp(start, self.tz).utcoffset()
        self.off = int(offset.total_seconds()) if offset is not None else 0
        start = (start + self.off) // DAY * DAY - self.off + _HOURS[int(r() * len(_HOURS))] * 3600 + int(r() * 3600)
        self.start = start = start if start >= world.start else start + DAY
        ahead = world.horizon if world.end is None else max(world.end - start, DAY)
        self.quiet_at = math.inf
        if r() < persona.quiet_p:
            lo, hi = persona.quiet_window
            self.quiet_at = start + DAY + int((lo + (hi - lo) * r()) * ahead)
        self.erase_at = math.inf
        if (idx * 1009 + world.seed) % ERASURE_EVERY == 0:
            self.erase_at = start + DAY + int(r() * max(ahead - 2 * DAY, 0))
        self.pend: list[tuple[int, int, str, str | None, str | None, dict[str, Any]]] = []
        self.seq = 0
        self.orders = 0
        self.switch_count = 0
        self.mix_names = tuple(n for n, _ in persona.channel_mix)
        total = sum(x for _, x in persona.channel_mix)
        acc, cum = 0.0, []
        for _, x in persona.channel_mix:
            acc += x / total
            cum.append(acc)
        self.mix_cum = tuple(cum)
        self.last_channel = self.mix_names[0]
        first = CATEGORIES[int(r() * len(CATEGORIES))]
        second = CATEGORIES[int(r() * len(CATEGORIES))]
        self.favs = (first, second)
        self.consent = {"email": False, "sms": False, "push": False}
        self.preferred = "app" if self.mix_names[0] == "app" else "email"
        self.tier = persona.tiers[int(r() * len(persona.tiers))]
        self.exp_visits = math.exp(-persona.visits_per_day)
        self.exp_support = math.exp(-persona.support_per_day)

    def emit(self, ts: int, kind: str, channel: str | None, device: str | None, props: dict[str, Any]) -> None:
        self.seq += 1
        heapq.heappush(self.pend, (ts, self.seq, kind, channel, device, props))

    def run(self) -> Iterator[tuple[int, dict[str, Any]]]:
        end = self.w.end
        stop = self.erase_at + 1 if end is None else min(end, self.erase_at + 1)
        day = (self.start + self.off) // DAY * DAY - self.off
        self._signup(self.start)
        pend, pop, cid, tz = self.pend, heapq.heappop, self.cid, self.tz
        fromts = datetime.fromtimestamp
        while True:
            day += DAY
            if day >= stop:
                horizon = stop
            else:
                horizon = day
            while pend and pend[0][0] < horizon:
                ts, _, kind, channel, device, props = pop(pend)
                ev: dict[str, Any] = {"event_id": "", "customer_id": cid, "type": kind, "ts": fromts(ts, tz).isoformat()}
                if channel is not None:
                    ev["channel"] = channel
                if device is not None:
                    ev["device"] = device
                ev["props"] = props
                yield ts, ev
                if kind == "erasure_requested":
                    return
            if day >= stop or (day >= self.quiet_at and not pend and not any(self.consent.values())):
                return
            if day <= self.erase_at < day + DAY:
                self.emit(int(self.erase_at), "erasure_requested", "web", None, {})
            self._plan_day(day)

    def _device(self, channel: str) -> str | None:
        if channel == "app":
            return "mobile" if self.r() < 0.9 else "tablet"
        if channel in ("web", "email", "social"):
            x = self.r()
            return "mobile" if x < self.p.mobile_p else "tablet" if x < self.p.mobile_p + 0.08 else "desktop"
        if channel in ("sms", "push"):
            return "mobile"
        return None

    def _pick_channel(self) -> str:
        r, names = self.r, self.mix_names
        if len(names) > 1 and r() >= self.p.switch_p:
            return self.last_channel
        x = r()
        for name, c in zip(names, self.mix_cum):
            if x < c:
                break
        if name != self.last_channel:
            self.switch_count += 1
            self.last_channel = name
        return name

    def _category(self) -> str:
        x = self.r()
        return self.favs[0] if x < 0.45 else self.favs[1] if x < 0.7 else CATEGORIES[int(self.r() * 8)]

    def _product(self, cat: str) -> tuple[str, float]:
        x = self.r() ** (1.0 / self.p.spend_factor)
        return _PRODUCTS[cat][min(int(x * _PRODUCTS_PER_CATEGORY), _PRODUCTS_PER_CATEGORY - 1)]

    def _signup(self, ts: int) -> None:
        p, r, emit = self.p, self.r, self.emit
        channel = self._pick_channel()
        if channel == "call_center":
            channel = "web"
        device = self._device(channel)
        referrer = "social" if r() < 0.15 else _REFERRERS[int(r() * len(_REFERRERS))]
        signup = "social" if referrer == "social" and channel == "web" else channel
        t = ts
        if channel != "store":
            emit(t, "session_started", channel, device, {"page": "/", "referrer": referrer})
            t += 3 + int(r() * 40)
            emit(t, "page_view", channel, device, {"page": "/signup", "duration_s": 35})
            t += 35
        emit(t, "account_created", channel, device, {"signup_channel": signup})
        t += 2
        emit(t, "profile_updated", channel, device, {
            "timezone": self.zone,
            "preferred_channel": self.preferred,
            "attributes": {"loyalty_tier": self.tier, "age_band": _AGE_BANDS[int(r() * len(_AGE_BANDS))],
                           "country": self.country},
        })
        asked = ("email", "sms", "push") if "app" in self.mix_names else ("email", "sms")
        for ch, chance in zip(asked, p.consent_p):
            t += 1 + int(r() * 5)
            granted = r() < chance
            self.consent[ch] = granted
            emit(t, "consent_changed", channel, device, {"channel": ch, "granted": granted})

    def _plan_day(self, day: int) -> None:
        p, r = self.p, self.r
        active = day < self.quiet_at
        self._campaigns(day, active)
        if not active:
            return
        n, x = 0, r()
        while x > self.exp_visits:
            n += 1
            x *= r()
        for _ in range(n):
            ts = day + _HOURS[int(r() * len(_HOURS))] * 3600 + int(r() * 3600)
            channel = self._pick_channel()
            if channel == "store":
                self._store(ts)
            elif channel == "call_center":
                if r() < 0.5:
                    self._support(ts, "call_center")
                else:
                    self._checkout(ts, "call_center", None, [self._line()], None, force=True)
            else:
                self._browse(ts, channel, self._device(channel), None, p.pages_mean)
        if r() > self.exp_support:
            ts = day + 8 * 3600 + int(r() * 12 * 3600)
            x = r()
            self._support(ts, "call_center" if x < 0.5 else "email" if x < 0.8 else "social" if x < 0.9 else "app")
        if r() < 0.004 or (self.switch_count >= 3 and r() < 0.02):
            self._profile_change(day + 9 * 3600 + int(r() * 12 * 3600))

    def _campaigns(self, day: int, active: bool) -> None:
        ordinal = (day + self.off) // DAY + 719_163
        sends = _CALENDAR.get((ordinal - 1) % 7)
        if not sends:
            return
        p, r, emit = self.p, self.r, self.emit
        for channel, sec in sends:
            if not self.consent[channel] or r() > 0.85:
                continue
            if channel == "sms" and (ordinal // 7) % 2:
                continue
            stamp = date.fromordinal(ordinal).strftime("%Y%m%d")
            campaign = f"cmp-{stamp}-{channel}-{_THEMES[(ordinal // 7) % len(_THEMES)]}"
            props = {"message_id": f"m-{stamp}-{channel}-{self.idx:06d}", "campaign_id": campaign}
            ts = day + sec + int(r() * 600)
            emit(ts, "campaign_delivered", channel, None, props)
            if not active or r() >= p.open_p:
                continue
            device = self._device(channel)
            ts += 30 + int(r() * r() * 8 * 3600)
            emit(ts, "campaign_opened", channel, device, dict(props))
            if r() < p.unsub_p:
                ts += 20 + int(r() * 60)
                emit(ts, "campaign_unsubscribed", channel, device, dict(props))
                emit(ts + 1, "consent_changed", channel, device, {"channel": channel, "granted": False})
                self.consent[channel] = False
                continue
            if active and r() < p.click_p:
                ts += 5 + int(r() * 120)
                emit(ts, "campaign_clicked", channel, device, dict(props))
                target = "app" if channel == "push" else "web"
                self._browse(ts + 2, target, device if target == "web" else "mobile", props, p.pages_mean)

    def _line(self, cat: str | None = None) -> dict[str, Any]:
        cat = cat or self._category()
        pid, price = self._product(cat)
        qty = 1 if self.r() < 0.8 else 2 + int(self.r() * 2)
        return {"product_id": pid, "category": cat, "quantity": qty, "price": price}

    def _browse(self, ts: int, channel: str, device: str | None, campaign: dict[str, Any] | None, pages_mean: float) -> None:
        """A web or app visit: landing, page views seconds apart, maybe a cart, a checkout, a purchase."""
        p, r, emit = self.p, self.r, self.emit
        referrer = "campaign" if campaign else _REFERRERS[int(r() * len(_REFERRERS))]
        landing = "/deals" if campaign else "/"
        emit(ts, "session_started", channel, device, {"page": landing, "referrer": referrer})
        pages = 1
        while pages < 25 and r() < 1.0 - 1.0 / max(pages_mean, 1.0):
            pages += 1
        t = ts
        cat = self._category()
        viewed: list[tuple[str, str, float]] = []
        for i in range(pages):
            dwell = 4 + int(r() * r() * 120)
            if i == 0:
                emit(t, "page_view", channel, device, {"page": landing, "duration_s": dwell})
            elif r() < 0.55:
                if r() < 0.3:
                    cat = self._category()
                pid, price = self._product(cat)
                viewed.append((pid, cat, price))
                emit(t, "page_view", channel, device, {"page": f"/product/{pid}", "category": cat, "duration_s": dwell})
                emit(t + 1, "product_viewed", channel, device, {"product_id": pid, "category": cat, "price": price})
            else:
                page = f"/c/{cat}" if r() < 0.6 else "/search" if r() < 0.7 else "/account"
                emit(t, "page_view", channel, device,
                     {"page": page, "category": cat, "duration_s": dwell} if page.startswith("/c/")
                     else {"page": page, "duration_s": dwell})
            t += dwell + 1
        boost = p.convert_p if campaign else 0.0
        if not viewed or r() >= p.cart_p + boost:
            return
        lines: list[dict[str, Any]] = []
        value = 0.0
        n = 1
        while n < 6 and r() < 1.0 - 1.0 / max(p.basket_mean, 1.0):
            n += 1
        for _ in range(n):
            pid, cat_, price = viewed[int(r() * len(viewed))]
            qty = 1 if r() < 0.8 else 2
            value = round(value + qty * price, 2)
            lines.append({"product_id": pid, "category": cat_, "quantity": qty, "price": price})
            t += 3 + int(r() * 40)
            emit(t, "cart_updated", channel, device, {"product_id": pid, "category": cat_, "quantity": qty, "cart_value": value})
        if r() < p.checkout_p + boost:
            self._checkout(t + 10 + int(r() * 60), channel, device, lines, campaign, force=False)

    def _checkout(self, ts: int, channel: str, device: str | None, lines: list[dict[str, Any]],
                  campaign: dict[str, Any] | None, *, force: bool) -> None:
        p, r, emit = self.p, self.r, self.emit
        value = round(sum(x["quantity"] * x["price"] for x in lines), 2)
        if not force:
            emit(ts, "checkout_started", channel, device, {"cart_value": value})
            if r() >= p.buy_p + (p.convert_p if campaign else 0.0):
                return
            ts += 30 + int(r() * 150)
        self.orders += 1
        order = f"o-{self.idx:06d}-{self.orders}"
        emit(ts, "purchase", channel, device, {"order_id": order, "amount": value, "currency": self.currency, "items": lines})
        if campaign:
            emit(ts + 1, "campaign_converted", channel, device, dict(campaign))
        self._after_purchase(ts, order, value, lines)

    def _store(self, ts: int) -> None:
        if self.r() < 0.75:
            n = 1 + int(self.r() * self.p.basket_mean * 1.5)
            self._checkout(ts, "store", None, [self._line() for _ in range(n)], None, force=True)

    def _after_purchase(self, ts: int, order: str, amount: float, lines: list[dict[str, Any]]) -> None:
        p, r, emit = self.p, self.r, self.emit
        if r() < p.survey_p:
            kind = "nps" if r() < 0.6 else "csat"
            lo, hi = p.nps if kind == "nps" else p.csat
            emit(ts + DAY + int(r() * 2 * DAY), "survey_answered", "email", self._device("email"),
                 {"kind": kind, "score": lo + int(r() * (hi - lo + 1))})
        if r() < p.review_p:
            channel = "social" if r() < 0.2 else "web"
            lo, hi = p.rating
            emit(ts + 3 * DAY + int(r() * 7 * DAY), "review_posted", channel, self._device(channel),
                 {"rating": lo + int(r() * (hi - lo + 1)), "product_id": lines[0]["product_id"]})
        if r() < p.referral_p:
            friend = int(r() * self.w.customers)
            props = {"referred_customer_id": f"c-{friend:06d}"} if friend != self.idx else {}
            emit(ts + DAY + int(r() * 13 * DAY), "referral_made", "web", self._device("web"), props)
        if r() < p.refund_p:
            t = ts + 2 * DAY + int(r() * 18 * DAY)
            if r() < 0.5:
                self._support(t - 3600, "call_center", topic="refund")
            share = 1.0 if r() < 0.6 else 0.3 + 0.6 * r()
            emit(t, "refund", "web", None, {"order_id": order, "amount": round(amount * share, 2)})

    def _support(self, ts: int, channel: str, topic: str | None = None) -> None:
        p, r, emit = self.p, self.r, self.emit
        topic = topic or _SUPPORT_TOPICS[int(r() * len(_SUPPORT_TOPICS))]
        device = self._device(channel)
        emit(ts, "support_contact", channel, device, {"status": "opened", "topic": topic})
        unhappy = p.ces[0] >= 5
        wait = int(r() * 3 * DAY) if unhappy else 300 + int(r() * r() * DAY)
        done = ts + wait
        emit(done, "support_contact", channel, device, {"status": "resolved", "topic": topic})
        if r() < p.survey_p:
            lo, hi = p.ces
            emit(done + 3600 + int(r() * DAY), "survey_answered", "email", None,
                 {"kind": "ces", "score": lo + int(r() * (hi - lo + 1))})
            if r() < 0.5:
                lo, hi = p.csat
                emit(done + 3700 + int(r() * DAY), "survey_answered", "email", None,
                     {"kind": "csat", "score": lo + int(r() * (hi - lo + 1))})

    def _profile_change(self, ts: int) -> None:
        r = self.r
        if self.switch_count >= 3:
            self.preferred = self.last_channel if self.last_channel in ("app", "store") else "email"
            self.switch_count = 0
        ladder = ("bronze", "silver", "gold", "platinum")
        if self.tier in ladder[:-1] and r() < 0.5:
            self.tier = ladder[ladder.index(self.tier) + 1]
        self.emit(ts, "profile_updated", "web", self._device("web"),
                  {"preferred_channel": self.preferred, "attributes": {"loyalty_tier": self.tier}})


def _utc_seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def _population(world: _World, personas: tuple[Persona, ...], first: int, span: int) -> list[_Life]:
    """Assign persona, zone and start time to every customer; starts spread over each persona's window."""
    rng = world.rng
    persona_cum = _cumulative([p.weight for p in personas])
    zone_cum = _cumulative([z[3] for z in TIMEZONES])
    lives = []
    for idx in range(world.customers):
        persona = personas[_pick(persona_cum, rng.random())]
        zone = TIMEZONES[_pick(zone_cum, rng.random())]
        lo, hi = persona.start_window
        start = first + int((lo + (hi - lo) * rng.random()) * span)
        lives.append(_Life(idx, persona, world, start, zone))
    return lives


def _cumulative(weights: list[float]) -> list[float]:
    total, acc, out = sum(weights), 0.0, []
    for w in weights:
        acc += w / total
        out.append(acc)
    out[-1] = 1.0
    return out


def _pick(cum: list[float], x: float) -> int:
    for i, c in enumerate(cum):
        if x < c:
            return i
    return len(cum) - 1


def _merge(lives: list[_Life]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """Global event-time order across customers; ties broken by customer index, so the order is fixed."""
    heap: list[tuple[int, int, dict[str, Any], Iterator[tuple[int, dict[str, Any]]]]] = []
    for life in lives:
        gen = life.run()
        first = next(gen, None)
        if first is not None:
            heap.append((first[0], life.idx, first[1], gen))
    heapq.heapify(heap)
    replace_top, pop = heapq.heapreplace, heapq.heappop
    while heap:
        ts, idx, ev, gen = heap[0]
        yield ts, idx, ev
        nxt = next(gen, None)
        if nxt is None:
            pop(heap)
        else:
            replace_top(heap, (nxt[0], idx, nxt[1], gen))


def simulate(customers: int, days: int, seed: int, start: datetime,
             personas: Mapping[str, float] | None = None) -> Iterator[dict[str, Any]]:
    """Yield CONTRACT §1 events for ``customers`` over ``days`` from ``start``, in event-time order.

    ``personas`` maps persona names to weights (default: each persona's own ``weight``).
    Event ids are ``e-<seed>-<n>`` in output order; timestamps carry the customer's local offset.
    """
    if customers < 0 or days <= 0:
        raise ConfigError(f"need customers >= 0 and days > 0, got customers={customers}, days={days}")
    first = _utc_seconds(start)
    world = _World(seed, customers, first, first + days * DAY, days * DAY, random.Random(seed))
    return _numbered(_population(world, _personas(personas), first, days * DAY), f"e-{seed}-")


def personas_by_customer(customers: int, days: int, seed: int, start: datetime,
                         personas: Mapping[str, float] | None = None) -> dict[str, str]:
    """The persona behind each customer id of the matching ``simulate`` run: ground truth for judging segments."""
    first = _utc_seconds(start)
    world = _World(seed, customers, first, first + days * DAY, days * DAY, random.Random(seed))
    return {life.cid: life.p.name for life in _population(world, _personas(personas), first, days * DAY)}


def _numbered(lives: list[_Life], prefix: str) -> Iterator[dict[str, Any]]:
    n = 0
    for _, _, ev in _merge(lives):
        ev["event_id"] = prefix + str(n)
        n += 1
        yield ev


_BAD_KINDS = ("truncated", "unknown_type", "negative_amount", "missing_field", "bad_ts", "not_object")


def _corrupt(ev: dict[str, Any], rng: random.Random) -> bytes:
    """A deliberately invalid record derived from a good one (its id suffixed so it never shadows it)."""
    bad = dict(ev, event_id=ev["event_id"] + "-bad")
    kind = _BAD_KINDS[int(rng.random() * len(_BAD_KINDS))]
    if kind == "truncated":
        raw = orjson.dumps(bad)
        return raw[: max(1, len(raw) // 2)]
    if kind == "unknown_type":
        bad["type"] = "teleported"
    elif kind == "negative_amount":
        bad["type"] = "purchase"
        bad["props"] = {"order_id": "o-bad", "amount": -round(1 + rng.random() * 100, 2), "currency": "EUR"}
    elif kind == "missing_field":
        del bad["customer_id" if rng.random() < 0.5 else "ts"]
    elif kind == "bad_ts":
        bad["ts"] = "yesterday at noon"
    else:
        return b"[1, 2, 3]"
    return orjson.dumps(bad)


def simulate_lines(customers: int, days: int, seed: int, start: datetime,
                   personas: Mapping[str, float] | None = None, inject_bad: float = 0.0) -> Iterator[bytes]:
    """JSON lines (each ending in ``\\n``) of ``simulate``; ``inject_bad`` mixes in that share of malformed ones.

    Bad lines come from their own random source, so the good lines are the same with or without them.
    """
    if not 0.0 <= inject_bad <= 1.0:
        raise ConfigError(f"inject_bad must be within 0..1, got {inject_bad}")
    dumps = orjson.dumps
    nl = orjson.OPT_APPEND_NEWLINE
    events = simulate(customers, days, seed, start, personas)
    if inject_bad <= 0.0:
        for ev in events:
            yield dumps(ev, option=nl)
        return
    bad_rng = random.Random(f"bad:{seed}")
    for ev in events:
        yield dumps(ev, option=nl)
        if bad_rng.random() < inject_bad:
            yield _corrupt(ev, bad_rng) + b"\n"


def live(customers: int, rate: float, seed: int, clock: Callable[[], datetime], *,
         history_days: float = 14.0, personas: Mapping[str, float] | None = None) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """An endless stream of ``(due, event)`` pairs for demos: send each event at ``due`` (UTC).

    ``clock`` is read once, at the first ``next``, as *now*. First come the customers' past
    ``history_days`` (real past timestamps, all due now) so segments fill at once; after that
    simulated time is compressed to give ``rate`` events per second, and each event's ``ts`` is
    its due time. The caller sleeps until ``due``; given the first clock reading the stream is
    deterministic. Event ids include that reading, so a restarted demo never repeats ids.
    """
    if rate <= 0 or history_days <= 0:
        raise ConfigError(f"need rate > 0 and history_days > 0, got rate={rate}, history_days={history_days}")
    return _live(customers, rate, seed, clock, history_days, _personas(personas))


def _live(customers: int, rate: float, seed: int, clock: Callable[[], datetime], history_days: float,
          personas: tuple[Persona, ...]) -> Iterator[tuple[datetime, dict[str, Any]]]:
    now = clock()
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    t0 = now.timestamp()
    span = int(history_days * DAY)
    first = int(t0) - span
    world = _World(seed, customers, first, None, max(span, 30 * DAY), random.Random(seed))
    lives = _population(world, personas, first, max(span - 600, 1))
    zones = [life.tz for life in lives]
    prefix = f"e-{seed}-{int(t0)}-"
    gap = 1.0 / rate
    n = i = 0
    fromts, utc = datetime.fromtimestamp, timezone.utc
    for ts, idx, ev in _merge(lives):
        ev["event_id"] = prefix + str(n)
        n += 1
        if ts < t0:
            yield now, ev
            continue
        due = t0 + i * gap
        i += 1
        ev["ts"] = fromts(due, zones[idx]).isoformat(timespec="milliseconds")
        yield fromts(due, utc), ev


def _parse_start(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an RFC 3339 time such as 2026-01-01T00:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _write(lines: Iterator[bytes], sink: IO[bytes]) -> int:
    count = 0
    write = sink.write
    for line in lines:
        write(line)
        count += 1
    return count


def simulate_command(
    customers: Annotated[int, typer.Option("--customers", "-n", min=1, help="Number of simulated customers.")] = 1000,
    days: Annotated[int, typer.Option("--days", "-d", min=1, help="Length of the simulated period in days.")] = 90,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives byte-identical output.")] = 7,
    out: Annotated[Path | None, typer.Option("--out", "-o", dir_okay=False, help="JSONL file to write (default: stdout).")] = None,
    start: Annotated[str, typer.Option("--start", help="Start of the period, RFC 3339.")] = "2026-01-01T00:00:00Z",
    to_topic: Annotated[bool, typer.Option("--to-topic", help="Send to the customer-events topic instead of a file.")] = False,
    personas: Annotated[str | None, typer.Option("--personas", help="Persona weights, e.g. loyal_regular=2,new_browser=1.")] = None,
    inject_bad: Annotated[float, typer.Option("--inject-bad", min=0.0, max=1.0, help="Share of malformed lines to mix in (demos).")] = 0.0,
) -> None:
    """Realistic synthetic customer journeys (personas) as CONTRACT §1 events, in event-time order."""
    moment = _parse_start(start)
    try:
        weights = parse_persona_weights(personas) if personas else None
    except ConfigError as exc:
        raise typer.BadParameter(str(exc), param_hint="--personas") from None
    if to_topic:
        try:
            from microseg.engine.producer import produce_events  # type: ignore[import-not-found, attr-defined]
        except ImportError:
            typer.echo("--to-topic is not available yet (microseg.engine.producer is missing); "
                       "write a file with --out and send it with `microseg produce FILE.jsonl`.", err=True)
            raise typer.Exit(2) from None
        sent = produce_events(simulate(customers, days, seed, moment, weights))
        typer.echo(f"sent {sent} events to the topic", err=True)
        return
    lines = simulate_lines(customers, days, seed, moment, weights, inject_bad)
    began = time.perf_counter()
    if out is None:
        _write(lines, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    with out.open("wb", buffering=1 << 20) as sink:
        count = _write(lines, sink)
    typer.echo(f"wrote {count} lines to {out} in {time.perf_counter() - began:.1f}s", err=True)
