"""A small public harness for testing rules and the core in memory: a rule test is ten lines.

    from microseg.segments.testing import Journey
    j = Journey(rules_yaml)
    j.send("c1", "purchase", "2026-01-01T10:00:00Z", order_id="o1", amount=600)
    j.until("2026-03-01T00:00:00Z")
    assert j.entered("c1", "lapsed_high_value") == "2026-02-16T10:00:00Z"
"""

from __future__ import annotations

import itertools
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from microseg.schemas.events import Event, decode_event
from microseg.segments.predictive import PredictiveModel
from microseg.segments.process import Core
from microseg.segments.ruleset import RuleSet
from microseg.segments.state import CustomerState

__all__ = ["event", "event_bytes", "Journey", "load_rules_text", "parse_ts"]

_ids = itertools.count(1)


def parse_ts(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def event_bytes(
    customer_id: str, type_: str, ts: str, *, event_id: str | None = None, channel: str | None = None, props: dict[str, Any] | None = None, **more: Any
) -> bytes:
    """``channel`` is the envelope's; props come as keywords, or as ``props=`` when a name clashes."""
    props = {**(props or {}), **more}
    record: dict[str, Any] = {
        "event_id": event_id or f"t-{next(_ids)}",
        "customer_id": customer_id,
        "type": type_,
        "ts": ts,
        "props": props,
    }
    if channel is not None:
        record["channel"] = channel
    return orjson.dumps(record)


def event(
    customer_id: str, type_: str, ts: str, *, event_id: str | None = None, channel: str | None = None, props: dict[str, Any] | None = None, **more: Any
) -> Event:
    """A validated event, built the way producers write them."""
    return decode_event(event_bytes(customer_id, type_, ts, event_id=event_id, channel=channel, props=props, **more))


def load_rules_text(text: str, name: str = "rules.yaml") -> RuleSet:
    from microseg.segments.rulefiles import load_rules

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_text(text)
        return load_rules(Path(tmp))


class Journey:
    """Customers stepped through the core, with every emitted record kept for assertions."""

    def __init__(self, rules: RuleSet | str, model: PredictiveModel | None = None) -> None:
        self.core = Core(load_rules_text(rules) if isinstance(rules, str) else rules, model)
        self.states: dict[str, CustomerState] = {}
        self.changes: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.suppressed: list[dict[str, Any]] = []

    def _keep(self, customer_id: str, result: Any) -> None:
        self.states[customer_id] = result.state
        self.changes += result.changes
        self.messages += result.messages
        self.suppressed += result.suppressed

    def send(
        self, customer_id: str, type_: str, ts: str, *, event_id: str | None = None, channel: str | None = None, props: dict[str, Any] | None = None, **more: Any
    ) -> Journey:
        ev = event(customer_id, type_, ts, event_id=event_id, channel=channel, props=props, **more)
        self._keep(customer_id, self.core.on_event(self.states.get(customer_id), ev))
        return self

    def until(self, ts: str) -> Journey:
        t = parse_ts(ts)
        for customer_id in sorted(self.states):
            self._keep(customer_id, self.core.advance(customer_id, self.states[customer_id], t))
        return self

    def segments(self, customer_id: str) -> tuple[str, ...]:
        state = self.states.get(customer_id)
        return () if state is None else state.segments

    def moves(self, customer_id: str, segment: str) -> list[tuple[str, str, str]]:
        """(change, at, cause) for one customer and segment, in emission order."""
        return [(c["change"], c["at"], c["cause"]) for c in self.changes if c["customer_id"] == customer_id and c["segment"] == segment]

    def entered(self, customer_id: str, segment: str) -> str | None:
        found = [at for change, at, _ in self.moves(customer_id, segment) if change == "entered"]
        return found[-1] if found else None

    def exited(self, customer_id: str, segment: str) -> str | None:
        found = [at for change, at, _ in self.moves(customer_id, segment) if change == "exited"]
        return found[-1] if found else None
