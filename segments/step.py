"""One customer step: the core that the worker and ``microseg replay`` both run.

``Core.on_event`` folds an event into a customer's state, re-evaluates the rules at the event's
time, diffs, decides a message and schedules the next wake-up; ``Core.advance`` lets time run
on to an instant, firing each pending wake-up at its exact instant with cause ``tick``. Before an
event, the customer is advanced to just before the event's time, so time-based changes come out
the same whether a clock tick or the next event triggered them — the reason worker and replay
agree. Everything here is pure: state in, state and records out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from microseg.schemas.events import Event
from microseg.segments.changes import diff
from microseg.segments.decide import decide, redecide_now, with_pending_wake
from microseg.segments.builtin_fields import BUILTINS
from microseg.segments.dna import Dna, fold, fold_traits, is_duplicate, touched
from microseg.segments.evaluate import dimension_reads, dna_code, evaluate_segments, expr_reads, ReaderIndex
from microseg.segments.predictive import PredictiveModel
from microseg.segments.ruleset import RuleSet
from microseg.segments.state import CustomerState
from microseg.segments.timeline import due, next_wake, time_dependence
from microseg.segments.traits import Trait
from microseg.segments.view import DnaView

__all__ = ["Core", "StepResult", "MAX_WAKES_PER_ADVANCE", "HELD_KEPT"]

MAX_WAKES_PER_ADVANCE = 10_000
HELD_KEPT = 3


@dataclass(slots=True, init=False)
class StepResult:
    """A step's outcome: the customer's new state and the records to emit. ``ignored``: the event
    was for an erased customer and was dropped. ``dropped_values``: values a computed trait could
    not keep (``traits.MAX_VALUES``)."""

    state: CustomerState
    changes: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    suppressed: list[dict[str, Any]]
    holdouts: list[dict[str, Any]]
    duplicate: bool
    ignored: bool
    dropped_values: int

    def __init__(
        self,
        state: CustomerState,
        changes: list[dict[str, Any]] | None = None,
        messages: list[dict[str, Any]] | None = None,
        suppressed: list[dict[str, Any]] | None = None,
        duplicate: bool = False,
        ignored: bool = False,
    ) -> None:
        self.state = state
        self.changes = [] if changes is None else changes
        self.messages = [] if messages is None else messages
        self.suppressed = [] if suppressed is None else suppressed
        self.holdouts: list[dict[str, Any]] = []
        self.duplicate = duplicate
        self.ignored = ignored
        self.dropped_values = 0

    def extend(self, other: StepResult) -> None:
        self.changes += other.changes
        self.messages += other.messages
        self.suppressed += other.suppressed
        self.holdouts += other.holdouts
        self.state = other.state


class Core:
    """A compiled rule set and an optional predictive model, ready to step customers."""

    __slots__ = (
        "ruleset", "model", "version", "registry", "dependence", "incremental", "_segment_readers", "_dimension_readers", "_compute",
        "_traits_by_type", "_trait_ids", "posterior",
    )

    def __init__(self, ruleset: RuleSet, model: PredictiveModel | None = None, *, incremental: bool = True, crossings: bool = True) -> None:
        """``incremental=False``: every evaluation reads every rule; ``crossings=False``: model
        scores wake a customer every 24 h, not only at their threshold crossings (both give the
        same records: the tests compare them)."""
        self.ruleset = ruleset
        self.model = model
        self.version = ruleset.version if model is None else f"{ruleset.version}+{model.version}"
        """What a customer's stored ``rules_version`` holds once evaluated by this core: the rule
        set's version, then ``+`` and the model's when a model scores. A customer stored under
        another is re-evaluated (``_sync_rules``) before anything else happens to it."""
        self.registry = ruleset.registry if ruleset.registry is not None else BUILTINS
        self._compute = self.registry.compute
        by_type: dict[str, list[Trait]] = {}
        for trait in ruleset.traits:
            for kind in trait.events:
                by_type.setdefault(kind, []).append(trait)
        self._traits_by_type: dict[str, tuple[Trait, ...]] = {kind: tuple(found) for kind, found in by_type.items()}
        self._trait_ids = frozenset(trait.id for trait in ruleset.traits)
        self.dependence = time_dependence(ruleset, self.registry, solve_crossings=crossings)
        self.incremental = incremental
        self._segment_readers = ReaderIndex(tuple(expr_reads(s.when) for s in ruleset.segments))
        self._dimension_readers = ReaderIndex(tuple(dimension_reads(d) for d in ruleset.dimensions))
        self.posterior: Any = None
        """The message variants' posterior (``segments.bandit``: a ``PosteriorHistory`` or one
        ``PosteriorSnapshot``) the host keeps current; None: the uniform prior."""

    def view(self, dna: Dna, now: float) -> DnaView:
        return DnaView(dna, now, self.model, self._compute)

    def _evaluate(
        self, customer_id: str, state: CustomerState, dna: Dna, t: float, cause: str, dirty: frozenset[str] | None = None, now: float | None = None
    ) -> StepResult:
        """Evaluate at ``t``; ``dirty`` limits the work to rules reading those DNA names; ``now``:
        the processing clock for decisions (``segments.decide``)."""
        ruleset = self.ruleset
        pending = state.pending
        redecide = bool(pending) and redecide_now(pending, t, dirty)
        if dirty is not None and not redecide and not self._segment_readers.stale(dirty) and not self._dimension_readers.stale(dirty):
            wake = next_wake(self.dependence, dna, t, has_model=self.model is not None, model=self.model)
            if pending:
                wake = with_pending_wake(wake, pending)
            new = CustomerState(dna, state.segments, state.code, self.version, t, wake, state.sends, state.last_sent, state.offset, held=state.held, pending=pending)
            return StepResult(new)
        ctx = DnaView(dna, t, self.model, self._compute)
        segments = evaluate_segments(ruleset, ctx, previous=state.segments, dirty=dirty, readers=self._segment_readers)
        code = dna_code(ruleset, ctx, previous=state.code, dirty=dirty, readers=self._dimension_readers)
        if segments is state.segments and code == state.code:
            changes: list[dict[str, Any]] = []
        else:
            changes = diff(customer_id, state.segments, segments, state.code, code, t=t, cause=cause, rules_version=ruleset.version)
        sends, last_sent, held = state.sends, state.last_sent, state.held
        messages: list[dict[str, Any]] = []
        suppressed: list[dict[str, Any]] = []
        holdouts: list[dict[str, Any]] = []
        if (changes or redecide) and ruleset.messages:
            decision = decide(
                ruleset, ctx, customer_id=customer_id, segments=segments, sends=sends, last_sent=last_sent, t=t, cause=cause,
                now=now, pending=pending, only_pending=not changes, posterior=self.posterior,
            )
            if decision.message is not None:
                messages.append(decision.message)
            if decision.holdout is not None:
                holdouts.append(decision.holdout)
            suppressed = list(decision.suppressed)
            sends = [list(s) for s in decision.sends]
            last_sent = dict(decision.last_sent)
            pending = decision.pending
            if suppressed:
                held = (held + [[t, h["message"], h["reason"]] for h in suppressed])[-HELD_KEPT:]
        wake = next_wake(self.dependence, dna, t, has_model=self.model is not None, model=self.model)
        if pending:
            wake = with_pending_wake(wake, pending)
        new = CustomerState(dna, segments, code, self.version, t, wake, sends, last_sent, state.offset, held=held, pending=pending)
        result = StepResult(new, changes, messages, suppressed)
        result.holdouts = holdouts
        return result

    def _sync_rules(self, customer_id: str, state: CustomerState, t: float, now: float | None = None) -> StepResult:
        """Re-evaluate under a new rule set (cause ``rules:<version>``) or, same rules, a new
        predictive model (cause ``model:<version>``, ``model:none`` without one)."""
        if state.rules_version.partition("+")[0] != self.ruleset.version:
            cause = f"rules:{self.ruleset.version}"
        else:
            cause = f"model:{self.model.version if self.model is not None else 'none'}"
        return self._evaluate(customer_id, state, state.dna, max(t, state.evaluated_at), cause, now=now)

    def advance(self, customer_id: str, state: CustomerState, until: float, *, inclusive: bool = True, now: float | None = None) -> StepResult:
        """Fire every wake-up up to ``until`` (or strictly before it) at its own instant; ``now``:
        the processing clock for decisions."""
        result = StepResult(state)
        if state.erased:
            return result
        if state.rules_version != self.version:
            result.extend(self._sync_rules(customer_id, state, min(until, state.evaluated_at), now))
        for _ in range(MAX_WAKES_PER_ADVANCE):
            current = result.state
            wake = current.wake
            if wake is None or wake > until or (not inclusive and wake == until):
                break
            dirty = (
                due(self.dependence, current.dna, current.evaluated_at, wake, has_model=self.model is not None, model=self.model)
                if self.incremental and current.rules_version == self.version
                else None
            )
            result.extend(self._evaluate(customer_id, current, current.dna, wake, "tick", dirty or None, now))
        return result

    def on_event(self, state: CustomerState | None, event: Event, *, offset: int = -1, now: float | None = None) -> StepResult:
        """Apply one validated event to a customer's state (None for a new customer); ``now``: the
        processing clock (epoch seconds) for decisions, None for the event's own time."""
        if state is not None and state.erased:
            return StepResult(state, ignored=True)
        if state is not None and (
            (offset >= 0 and offset <= state.offset) or is_duplicate(state.dna, event)
        ):
            return StepResult(state, duplicate=True)
        customer_id = event.customer_id
        if state is None:
            result = StepResult(CustomerState(Dna()))
            previous = result.state
            dna = fold(None, event)
        elif state.rules_version == self.version and (state.wake is None or state.wake >= event.t):
            result = StepResult(state)
            previous = state
            dna = fold(state.dna, event)
        else:
            result = self.advance(customer_id, state, event.t, inclusive=False, now=now)
            previous = result.state
            dna = fold(previous.dna, event)
        if event.type == "erasure_requested":
            return self._erase(customer_id, previous, max(event.t, previous.evaluated_at), event.event_id, result)
        traits = self._traits_by_type.get(event.type)
        dropped = fold_traits(dna, event, traits) if traits is not None else 0
        kept = dna.traits
        if kept and not self._trait_ids.issuperset(kept):  # traits the rules no longer declare
            dna.traits = {name: value for name, value in kept.items() if name in self._trait_ids}
        t = max(event.t, previous.evaluated_at)
        dirty = None
        if (
            self.incremental
            and state is not None
            and previous.rules_version == self.version
            and (previous.wake is None or previous.wake > t)
        ):
            dirty = touched(previous.dna, event, previous.evaluated_at, self.registry)
            if "*" in dirty:
                dirty = None
        result.extend(self._evaluate(customer_id, previous, dna, t, event.event_id, dirty, now))
        result.state.offset = max(offset, previous.offset)
        result.dropped_values = dropped
        return result

    def _erase(self, customer_id: str, state: CustomerState, t: float, cause: str, result: StepResult) -> StepResult:
        """Exits for everything, then a bare erased mark instead of the DNA (GDPR: forget, and stay forgotten)."""
        result.changes += diff(customer_id, state.segments, (), state.code, None, t=t, cause=cause, rules_version=self.ruleset.version)
        result.state = CustomerState(Dna(), rules_version=self.version, evaluated_at=t, erased=True)
        return result
