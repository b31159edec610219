"""Anonymous browsing before sign-up (CONTRACT §8), for the simulator's prospects.

A prospect (``Persona.anon_p``: a customer who first browses without an account) is, until its
``account_created``, an anonymous visitor: its events carry ``anonymous_id`` (``anon-<customer
id>``) and no ``customer_id``. Right after its ``account_created`` comes an ``identify`` with both
ids (same instant, channel and device), which merges the visitor into the customer; from then on
its events carry the ``customer_id``. A prospect who never signs up stays anonymous. Customers
who sign up on their first visit are not touched. Deterministic: a pure transform of the stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from microseg.engine.tools.simulator.journey import CustomerJourney

__all__ = ["anonymous_until_signup", "anonymous_id_of"]


def anonymous_id_of(customer_id: str) -> str:
    """The simulated visitor id of a prospect (a cookie id, in real life)."""
    return f"anon-{customer_id}"


def anonymous_until_signup(
    stream: Iterator[tuple[int, int, dict[str, Any]]], lives: Sequence[CustomerJourney]
) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """``merge_journeys`` output with the prospects' events before sign-up anonymous, and an
    ``identify`` after each prospect's ``account_created``."""
    signed: set[int] = set()
    for ts, idx, ev in stream:
        if idx in signed or not lives[idx].prospect:
            yield ts, idx, ev
            continue
        customer_id = ev["customer_id"]
        if ev["type"] == "account_created":
            signed.add(idx)
            yield ts, idx, ev
            identify: dict[str, Any] = {"event_id": "", "customer_id": customer_id, "anonymous_id": anonymous_id_of(customer_id), "type": "identify", "ts": ev["ts"]}
            for name in ("channel", "device"):
                if name in ev:
                    identify[name] = ev[name]
            identify["props"] = {}
            yield ts, idx, identify
            continue
        visitor = {"event_id": ev["event_id"], "anonymous_id": anonymous_id_of(customer_id)}
        visitor.update((k, v) for k, v in ev.items() if k not in ("event_id", "customer_id"))
        yield ts, idx, visitor
