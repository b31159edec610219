"""The customers of one run: a persona, a time zone and a start time for each, from the run's one random source."""

from __future__ import annotations

from microseg.engine.tools.simulator.journey import CustomerJourney
from microseg.engine.tools.simulator.personas import Persona
from microseg.engine.tools.simulator.world import TIMEZONES, World

__all__ = ["population"]


def population(world: World, personas: tuple[Persona, ...], first: int, span: int) -> list[CustomerJourney]:
    """Assign persona, zone and start time to every customer; starts spread over each persona's window.

    ``first`` is the period's start (epoch seconds) and ``span`` its length in seconds; customer
    ``i`` gets id ``c-<i:06d>``.
    """
    rng = world.rng
    persona_cum = _cumulative([p.weight for p in personas])
    zone_cum = _cumulative([z[3] for z in TIMEZONES])
    lives = []
    for idx in range(world.customers):
        persona = personas[_pick(persona_cum, rng.random())]
        zone = TIMEZONES[_pick(zone_cum, rng.random())]
        lo, hi = persona.start_window
        start = first + int((lo + (hi - lo) * rng.random()) * span)
        lives.append(CustomerJourney(idx, persona, world, start, zone))
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
