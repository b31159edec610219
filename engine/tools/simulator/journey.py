"""One customer's journey: a generator that plans one local day at a time into its own heap of events.

Sign-up (at once, or for some customers on a later visit after browsing without an account),
visits (sessions, numbered page views, carts, checkouts, purchases, some with a coupon), store and phone orders,
campaigns by the weekly calendar, support contacts, surveys, reviews, referrals, refunds,
profile changes, going quiet and erasure; see docs/simulator.md. Times are epoch seconds;
amounts are in the currency's main unit.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from microseg.engine.tools.simulator.personas import Persona
from microseg.engine.tools.simulator.world import (
    ACTIVE_HOURS,
    AGE_BANDS,
    CALENDAR,
    CATEGORIES,
    COUPONS,
    DAY,
    ERASURE_EVERY,
    PRODUCTS,
    PRODUCTS_PER_CATEGORY,
    REFERRERS,
    SIGNUP_VISIT_P,
    SUPPORT_TOPICS,
    THEME_COUPONS,
    THEMES,
    World,
)

__all__ = ["CustomerJourney"]


class CustomerJourney:
    """One customer's journey; ``run`` yields ``(epoch second, event dict)`` in time order.

    The event dict is a CONTRACT §1 event with ``event_id`` left empty (the stream numbers them)
    and ``ts`` in the customer's local offset. Every draw comes from the world's one random source,
    so journeys must be advanced in a fixed order (``streams.merge_journeys``).
    """

    __slots__ = (
        "idx", "cid", "p", "w", "r", "tz", "off", "zone", "currency", "country", "start", "quiet_at",
        "erase_at", "pend", "seq", "orders", "last_channel", "favs", "consent", "preferred", "tier",
        "mix_names", "mix_cum", "exp_visits", "exp_support", "switch_count", "account", "prospect",
    )

    def __init__(self, idx: int, persona: Persona, world: World, start: int, zone: tuple[str, str, str, float]) -> None:
        from zoneinfo import ZoneInfo

        r = world.rng.random
        self.idx, self.p, self.w, self.r = idx, persona, world, r
        self.cid = f"c-{idx:06d}"
        self.zone, self.country, self.currency = zone[0], zone[1], zone[2]
        self.tz = ZoneInfo(zone[0])
        offset = datetime.fromtimestamp(start, self.tz).utcoffset()
        self.off = int(offset.total_seconds()) if offset is not None else 0
        start = (start + self.off) // DAY * DAY - self.off + ACTIVE_HOURS[int(r() * len(ACTIVE_HOURS))] * 3600 + int(r() * 3600)
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
        self.account = r() >= persona.anon_p
        self.prospect = not self.account  # browses without an account first (simulator.identities)

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
        return PRODUCTS[cat][min(int(x * PRODUCTS_PER_CATEGORY), PRODUCTS_PER_CATEGORY - 1)]

    def _signup(self, ts: int) -> None:
        """The first visit: a sign-up, or (``Persona.anon_p``) a web or app visit without an account."""
        channel = self._pick_channel()
        if channel == "call_center":
            channel = "web"
        device = self._device(channel)
        if not self.account and channel != "store":
            self._browse(ts, channel, device, None, self.p.pages_mean)
            return
        self._join(ts, channel, device)

    def _join(self, ts: int, channel: str, device: str | None) -> None:
        """A sign-up: a ``/signup`` visit (none in a store), the account, the profile and the consents."""
        p, r, emit = self.p, self.r, self.emit
        self.account = True
        referrer = "social" if r() < 0.15 else REFERRERS[int(r() * len(REFERRERS))]
        signup = "social" if referrer == "social" and channel == "web" else channel
        t = ts
        if channel != "store":
            emit(t, "session_started", channel, device, {"page": "/", "referrer": referrer})
            t += 3 + int(r() * 40)
            emit(t, "page_view", channel, device, {"page": "/signup", "duration_s": 35, "page_number": 1})
            t += 35
        emit(t, "account_created", channel, device, {"signup_channel": signup})
        if channel != "store":
            emit(t + 1, "page_view", channel, device, {"page": "/welcome", "duration_s": 20, "page_number": 2})
        t += 2
        emit(t, "profile_updated", channel, device, {
            "timezone": self.zone,
            "preferred_channel": self.preferred,
            "attributes": {"loyalty_tier": self.tier, "age_band": AGE_BANDS[int(r() * len(AGE_BANDS))],
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
            ts = day + ACTIVE_HOURS[int(r() * len(ACTIVE_HOURS))] * 3600 + int(r() * 3600)
            channel = self._pick_channel()
            if channel == "store":
                self._store(ts)
            elif channel == "call_center":
                if r() < 0.5:
                    self._support(ts, "call_center")
                else:
                    self._checkout(ts, "call_center", None, [self._line()], None, force=True)
            elif not self.account and r() < SIGNUP_VISIT_P:
                self._join(ts, channel, self._device(channel))
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
        sends = CALENDAR.get((ordinal - 1) % 7)
        if not sends:
            return
        p, r, emit = self.p, self.r, self.emit
        for channel, sec in sends:
            if not self.consent[channel] or r() > 0.85:
                continue
            if channel == "sms" and (ordinal // 7) % 2:
                continue
            stamp = date.fromordinal(ordinal).strftime("%Y%m%d")
            campaign = f"cmp-{stamp}-{channel}-{THEMES[(ordinal // 7) % len(THEMES)]}"
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
        """A web or app visit: landing, page views seconds apart, maybe a cart, a checkout, a purchase.

        A share ``bounce_p`` of visits end on the landing page; the others see 2 to 25 pages.
        Page views carry ``page_number`` (1 for the landing page), as trackers number a visit's pages.
        """
        p, r, emit = self.p, self.r, self.emit
        referrer = "campaign" if campaign else REFERRERS[int(r() * len(REFERRERS))]
        landing = "/deals" if campaign else "/"
        emit(ts, "session_started", channel, device, {"page": landing, "referrer": referrer})
        pages = 1
        if r() >= p.bounce_p:
            pages = 2
            while pages < 25 and r() < 1.0 - 1.0 / max(pages_mean, 1.0):
                pages += 1
        t = ts
        cat = self._category()
        viewed: list[tuple[str, str, float]] = []
        for i in range(pages):
            dwell = 4 + int(r() * r() * 120)
            if i == 0:
                emit(t, "page_view", channel, device, {"page": landing, "duration_s": dwell, "page_number": 1})
            elif r() < 0.55:
                if r() < 0.3:
                    cat = self._category()
                pid, price = self._product(cat)
                viewed.append((pid, cat, price))
                emit(t, "page_view", channel, device,
                     {"page": f"/product/{pid}", "category": cat, "duration_s": dwell, "page_number": i + 1})
                emit(t + 1, "product_viewed", channel, device, {"product_id": pid, "category": cat, "price": price})
            else:
                page = f"/c/{cat}" if r() < 0.6 else "/search" if r() < 0.7 else "/account"
                emit(t, "page_view", channel, device,
                     {"page": page, "category": cat, "duration_s": dwell, "page_number": i + 1} if page.startswith("/c/")
                     else {"page": page, "duration_s": dwell, "page_number": i + 1})
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
        props: dict[str, Any] = {"order_id": order, "amount": value, "currency": self.currency, "items": lines}
        if campaign and r() < 0.7:
            props["coupon"] = THEME_COUPONS[campaign["campaign_id"].split("-", 3)[3]]
        elif not campaign and r() < p.coupon_p:
            props["coupon"] = COUPONS[int(r() * len(COUPONS))]
        emit(ts, "purchase", channel, device, props)
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
        topic = topic or SUPPORT_TOPICS[int(r() * len(SUPPORT_TOPICS))]
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
