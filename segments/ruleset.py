"""The compiled, frozen rule set: what a rules directory becomes after parsing and type checking.

Built once by ``segments.rulefiles.load_rules``; the evaluator, the timeline and the decision
step only read it. ``version`` is a content hash, so every worker and every replay that loaded the
same files report the same ``rules_version``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from microseg.segments.fields import Registry, ValueType
from microseg.segments.traits import Trait

__all__ = [
    "Origin",
    "Expr",
    "Segment",
    "CasesDimension",
    "CutsDimension",
    "CategoryDimension",
    "Dimension",
    "Message",
    "MESSAGING_CHANNELS",
    "ContactPolicy",
    "RuleSet",
]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a piece of a rule file starts: 1-based line and column."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Expr:
    """A compiled expression.

    ``fn(ctx)`` evaluates it against a DNA view (a mapping of field name -> value with DNA
    methods, see ``segments.dna.DnaView``). ``thresholds`` maps each field compared directly
    with a numeric literal (``field OP number``) to those numbers; ``opaque`` holds fields used
    any other way (arithmetic, function arguments). The timeline uses both to know when time
    alone can change the result.
    """

    source: str
    origin: Origin
    fn: Callable[[Any], Any] = field(compare=False, repr=False)
    type: ValueType
    fields: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()
    thresholds: Mapping[str, frozenset[float]] = field(default_factory=dict)
    opaque: frozenset[str] = frozenset()
    comparisons: Mapping[str, frozenset[tuple[str, float]]] = field(default_factory=dict)
    """The same comparisons with their operator, the field on the left (``3 < x`` is ``x > 3``;
    ``x in [1, 2]`` is ``x == 1`` and ``x == 2``): the timeline wakes a counter only on the
    whole-day values at which one of them can flip."""


@dataclass(frozen=True, slots=True)
class Segment:
    id: str
    description: str
    when: Expr
    origin: Origin


@dataclass(frozen=True, slots=True)
class CasesDimension:
    """First true case wins; no true case gives the label ``na``."""

    name: str
    cases: tuple[tuple[str, Expr], ...]
    origin: Origin


@dataclass(frozen=True, slots=True)
class CutsDimension:
    """``labels[i]`` for ``cuts[i-1] <= value < cuts[i]``; null gives ``na``."""

    name: str
    of: Expr
    cuts: tuple[float, ...]
    labels: tuple[str, ...]
    origin: Origin


@dataclass(frozen=True, slots=True)
class CategoryDimension:
    """The value itself is the label (null gives ``na``)."""

    name: str
    of: Expr
    origin: Origin


Dimension = CasesDimension | CutsDimension | CategoryDimension


@dataclass(frozen=True, slots=True)
class Message:
    """A playbook entry: eligible when the customer is in any of ``segments`` or ``when`` holds."""

    id: str
    segments: tuple[str, ...]
    when: Expr | None
    channel: str
    priority: int
    cooldown_s: int
    holdout: float
    description: str
    origin: Origin
    channels: tuple[str, ...] = ()
    """The channels to try, in order (``channel: [push, email]``); empty: ``(channel,)``.
    ``preferred`` is the customer's most-engaged messaging channel (``segments.messages.channels``)."""
    valid_for_s: int = 86_400
    """How long after its first possible send time a decision may still be sent (seconds)."""
    on_cap: str = "suppress"
    """``defer``: hold the decision and re-decide when the cap window opens; ``suppress``: drop it."""
    on_quiet: str | None = None
    """``defer`` | ``suppress``: overrides the policy's quiet-hours action for this message."""
    send_at: str = "now"
    """``now`` or ``best_hour`` (the customer's most-engaged local hour, within validity)."""
    variants: tuple[str, ...] = ()
    """The ids of ``variants: [{id: a, ...}]``: one is chosen per decision (``segments.bandit``);
    the other keys of a variant are for the sending system, which reads them from the rule file."""
    converts_on: str = "purchase"
    """The event type that counts as a conversion for uplift (``microseg report uplift``)."""
    attribution_s: int = 7 * 86_400
    """A conversion counts within this long after the decision's ``at`` (seconds)."""

    @property
    def channel_order(self) -> tuple[str, ...]:
        return self.channels or (self.channel,)


MESSAGING_CHANNELS: tuple[str, ...] = ("email", "sms", "push", "in_app", "whatsapp")
"""The channels a message can go to unless the contact policy lists others (``channels:``)."""


@dataclass(frozen=True, slots=True)
class ContactPolicy:
    """Caps over rolling 24 h / 7 d (global, and per channel in ``channel_caps`` as
    ``(channel, per_day, per_week)``), quiet hours as minutes after local midnight, consent mode
    (``opt_in``: a channel needs a grant; ``opt_out``: allowed until revoked or unsubscribed),
    per channel in ``consent_by_channel``, the messaging channels, and the ``global_holdout`` share."""

    per_day: int | None = None
    per_week: int | None = None
    quiet_start_min: int | None = None
    quiet_end_min: int | None = None
    default_timezone: str = "UTC"
    quiet_action: str = "defer"
    """``defer``: send when quiet hours end; ``suppress``: drop the decision (reason ``quiet``)."""
    channel_caps: tuple[tuple[str, int | None, int | None], ...] = ()
    consent: str = "opt_in"
    consent_by_channel: tuple[tuple[str, str], ...] = ()
    channels: tuple[str, ...] = MESSAGING_CHANNELS
    global_holdout: float = 0.0

    def consent_mode(self, channel: str) -> str:
        for name, mode in self.consent_by_channel:
            if name == channel:
                return mode
        return self.consent

    def channel_cap(self, channel: str) -> tuple[int | None, int | None]:
        for name, per_day, per_week in self.channel_caps:
            if name == channel:
                return per_day, per_week
        return None, None


@dataclass(frozen=True, slots=True)
class RuleSet:
    """``traits``: the computed traits (CONTRACT §7); ``registry``: the DNA names the rules read,
    built-in fields plus the traits (None: the built-in ones, ``BUILTINS``); ``catalog``: the
    input event types with the custom ones (``schemas.event_catalog.EventCatalog``; None: the
    built-in types)."""

    version: str
    segments: tuple[Segment, ...] = ()
    dimensions: tuple[Dimension, ...] = ()
    messages: tuple[Message, ...] = ()
    policy: ContactPolicy = ContactPolicy()
    files: tuple[str, ...] = ()
    traits: tuple[Trait, ...] = ()
    registry: Registry | None = field(default=None, compare=False)
    catalog: Any = field(default=None, compare=False)

    @property
    def segment_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.segments)
