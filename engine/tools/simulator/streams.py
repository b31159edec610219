"""The simulator's event streams: a fixed period (``simulate``) or an endless live stream (``live``).

Each customer's journey is a generator; a global heap keyed by (time, customer index) merges
them, so memory grows with the number of customers, never with the number of events, and the
order is fixed: the same arguments always give the same events. Nothing reads the wall clock
except through ``live``'s ``clock``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from microseg.engine.tools.simulator.identities import anonymous_until_signup
from microseg.engine.tools.simulator.journey import CustomerJourney
from microseg.engine.tools.simulator.personas import Persona, choose_personas
from microseg.engine.tools.simulator.population import population
from microseg.engine.tools.simulator.world import DAY, World
from microseg.errors import ConfigError

__all__ = ["simulate", "personas_by_customer", "live", "merge_journeys", "utc_seconds"]


def simulate(customers: int, days: int, seed: int, start: datetime,
             personas: Mapping[str, float] | None = None, *, anonymous: bool = False) -> Iterator[dict[str, Any]]:
    """Yield CONTRACT §1 events for ``customers`` over ``days`` from ``start``, in event-time order.

    ``personas`` maps persona names to weights (default: each persona's own ``weight``).
    Event ids are ``e-<seed>-<n>`` in output order; timestamps carry the customer's local offset.
    ``anonymous``: prospects browse as anonymous visitors until they sign up, then an ``identify``
    links them (``simulator.identities``).
    Raises ``ConfigError`` for ``customers < 0``, ``days <= 0`` or bad persona weights.
    """
    if customers < 0 or days <= 0:
        raise ConfigError(f"need customers >= 0 and days > 0, got customers={customers}, days={days}")
    return _numbered(_period_journeys(customers, days, seed, start, personas), f"e-{seed}-", anonymous)


def personas_by_customer(customers: int, days: int, seed: int, start: datetime,
                         personas: Mapping[str, float] | None = None) -> dict[str, str]:
    """The persona behind each customer id of the matching ``simulate`` run: ground truth for judging segments."""
    return {life.cid: life.p.name for life in _period_journeys(customers, days, seed, start, personas)}


def _period_journeys(customers: int, days: int, seed: int, start: datetime,
                     personas: Mapping[str, float] | None) -> list[CustomerJourney]:
    """The journeys of a ``simulate`` run: ``days`` from ``start``, every random draw from ``seed``."""
    first = utc_seconds(start)
    world = World(seed, customers, first, first + days * DAY, days * DAY, random.Random(seed))
    return population(world, choose_personas(personas), first, days * DAY)


def _numbered(lives: list[CustomerJourney], prefix: str, anonymous: bool = False) -> Iterator[dict[str, Any]]:
    n = 0
    stream = merge_journeys(lives)
    if anonymous:
        stream = anonymous_until_signup(stream, lives)
    for _, _, ev in stream:
        ev["event_id"] = prefix + str(n)
        n += 1
        yield ev


def utc_seconds(moment: datetime) -> int:
    """Epoch seconds of ``moment``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def merge_journeys(lives: list[CustomerJourney]) -> Iterator[tuple[int, int, dict[str, Any]]]:
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


def live(customers: int, rate: float, seed: int, clock: Callable[[], datetime], *,
         history_days: float = 14.0, personas: Mapping[str, float] | None = None, anonymous: bool = False) -> Iterator[tuple[datetime, dict[str, Any]]]:
    """An endless stream of ``(due, event)`` pairs for demos: send each event at ``due`` (UTC).

    ``clock`` is read once, at the first ``next``, as *now*. First come the customers' past
    ``history_days`` (real past timestamps, all due now) so segments fill at once; after that
    simulated time is compressed to give ``rate`` events per second, and each event's ``ts`` is
    its due time. The caller sleeps until ``due``; given the first clock reading the stream is
    deterministic. Event ids include that reading, so a restarted demo never repeats ids.
    """
    if rate <= 0 or history_days <= 0:
        raise ConfigError(f"need rate > 0 and history_days > 0, got rate={rate}, history_days={history_days}")
    return _live(customers, rate, seed, clock, history_days, choose_personas(personas), anonymous)


def _live(customers: int, rate: float, seed: int, clock: Callable[[], datetime], history_days: float,
          personas: tuple[Persona, ...], anonymous: bool = False) -> Iterator[tuple[datetime, dict[str, Any]]]:
    now = clock()
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    t0 = now.timestamp()
    span = int(history_days * DAY)
    first = int(t0) - span
    world = World(seed, customers, first, None, max(span, 30 * DAY), random.Random(seed))
    lives = population(world, personas, first, max(span - 600, 1))
    zones = [life.tz for life in lives]
    prefix = f"e-{seed}-{int(t0)}-"
    gap = 1.0 / rate
    n = i = 0
    fromts, utc = datetime.fromtimestamp, timezone.utc
    stream = merge_journeys(lives)
    if anonymous:
        stream = anonymous_until_signup(stream, lives)
    for ts, idx, ev in stream:
        ev["event_id"] = prefix + str(n)
        n += 1
        if ts < t0:
            yield now, ev
            continue
        due = t0 + i * gap
        i += 1
        ev["ts"] = fromts(due, zones[idx]).isoformat(timespec="milliseconds")
        yield fromts(due, utc), ev
