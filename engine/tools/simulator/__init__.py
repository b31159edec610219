"""Synthetic customer journeys: personas turned into CONTRACT §1 events for demos, tests and benchmarks.

Each customer is a small generator that plans one local day at a time into its own heap of pending
events; ``simulate`` merges those streams with a global heap keyed by (time, customer index), so
memory grows with the number of customers, never with the number of events. One ``random.Random``
seeded from ``seed`` drives everything and the merge order is fixed, so the same arguments always
give byte-identical output; nothing reads the wall clock.

Modules: ``world`` (catalogue, zones, rhythm, calendar), ``personas``, ``journey`` (one customer),
``population`` (who the customers are), ``streams`` (``simulate``, ``live``), ``lines`` (JSON lines,
malformed ones on request), ``command`` (``microseg simulate``).
"""

from __future__ import annotations

from microseg.engine.tools.simulator.command import simulate_command
from microseg.engine.tools.simulator.lines import simulate_lines
from microseg.engine.tools.simulator.personas import PERSONAS, Persona, parse_persona_weights
from microseg.engine.tools.simulator.streams import live, personas_by_customer, simulate
from microseg.engine.tools.simulator.world import CATEGORIES, CHANNELS, DAY, ERASURE_EVERY, TIMEZONES

__all__ = [
    "Persona",
    "PERSONAS",
    "CATEGORIES",
    "CHANNELS",
    "TIMEZONES",
    "ERASURE_EVERY",
    "DAY",
    "simulate",
    "simulate_lines",
    "personas_by_customer",
    "live",
    "parse_persona_weights",
    "simulate_command",
]
