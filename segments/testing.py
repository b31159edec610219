"""A small public harness for testing rules and the core in memory: a rule test is ten lines.

    from microseg.segments.testing import Journey
    j = Journey(rules_yaml)
    j.send("c1", "purchase", "2026-01-01T10:00:00Z", order_id="o1", amount=600)
    j.until("2026-03-01T00:00:00Z")
    assert j.entered("c1", "lapsed_high_value") == "2026-02-16T10:00:00Z"
"""

from __future__ import annotations

import itertools
import math
import tempfile
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from microseg.schemas.events import Event, decode_event
from microseg.segments.identity import MemoryAliases
from microseg.segments.pipeline import Batch, Pipeline, Record
from microseg.segments.predictive import PredictiveModel
from microseg.segments.step import Core
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
    """Customers stepped through the record pipeline, with every emitted record kept for assertions.

    ``now`` is the processing clock (epoch seconds) for the future-time check and for decisions
    (no ``send_at`` before it; ``stale`` past a message's ``valid_for``); by default there is none,
    so events of any date are accepted and every decision is made as if live at its own time. A record the pipeline refuses is kept in
    ``dead_letters`` (with its reason), as a host would send it to the dead-letter topic.
    """

    def __init__(self, rules: RuleSet | str, model: PredictiveModel | None = None, *, now: float = math.inf) -> None:
        self.aliases = MemoryAliases()
        """The alias table (identity, CONTRACT §8): ``identify`` events link visitors to customers."""
        self.pipeline = Pipeline(Core(load_rules_text(rules) if isinstance(rules, str) else rules, model), source="journey", kafka=False, aliases=self.aliases)
        self.now = now
        self.states: dict[str, CustomerState] = {}
        self.changes: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.holdouts: list[dict[str, Any]] = []
        """Decisions for customers in a control group (topic ``message-holdouts``)."""
        self.suppressed: list[dict[str, Any]] = []
        self.dead_letters: list[dict[str, Any]] = []
        self._sent = 0

    @property
    def core(self) -> Core:
        return self.pipeline.core

    def _load(self, partition: int, customer_ids: Collection[str]) -> dict[str, CustomerState]:
        return {c: self.states[c] for c in customer_ids if c in self.states}

    def _keep(self, batch: Batch) -> None:
        for states in batch.states.values():
            self.states.update(states)
        for removed in batch.removed.values():  # visitors merged into their customers
            for key in removed:
                self.states.pop(key, None)
        if batch.links or batch.unlinked:
            self.aliases.apply(batch.links, batch.unlinked)
        self.changes += batch.changes
        self.messages += batch.messages
        self.holdouts += batch.holdouts
        self.suppressed += batch.suppressed
        self.dead_letters += batch.dead_letters

    def send_raw(self, raw: bytes) -> Journey:
        """One input record as a producer wrote it (bytes, possibly invalid)."""
        self._sent += 1
        self._keep(self.pipeline.process([Record(0, self._sent, None, raw)], self.now, self._load))
        return self

    def send(
        self, customer_id: str, type_: str, ts: str, *, event_id: str | None = None, channel: str | None = None, props: dict[str, Any] | None = None, **more: Any
    ) -> Journey:
        return self.send_raw(event_bytes(customer_id, type_, ts, event_id=event_id, channel=channel, props=props, **more))

    def until(self, ts: str) -> Journey:
        """Let time run on to ``ts`` for every customer (wake-ups, pending decisions)."""
        self._keep(self.pipeline.advance(0, sorted(self.states), parse_ts(ts), self._load, self.now))
        return self

    def value(self, customer_id: str, name: str, ts: str | None = None) -> Any:
        """A DNA field or trait of a customer, read at ``ts`` (default: its last evaluation)."""
        state = self.states[customer_id]
        return self.core.view(state.dna, state.evaluated_at if ts is None else parse_ts(ts))[name]

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
