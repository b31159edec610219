"""Declaring what a rule can read: value types, DNA fields, DNA functions, and registries of them.

A ``FieldSpec`` declares one DNA field completely: its type and doc, how it is computed from a
customer's state at an instant (``compute(view)``, called by ``segments.view.DnaView`` on first
read), how time alone changes it (``time``: the timeline's wake-ups) and what changes it when an
event is folded (``touched_by``: event types and the fold's shared effects, for incremental
evaluation). A ``Registry`` holds a set of declarations and derives every table the type checker,
the view, the timeline, incremental evaluation, the docs and the JSON Schema read. The built-in
fields are ``segments.builtin_fields.BUILTINS``; more fields (a rule set's own) make a registry
built from the same declarations: ``BUILTINS.extended(fields=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Union

from microseg.segments.windows import SPANS

if TYPE_CHECKING:
    from microseg.segments.view import DnaView

__all__ = [
    "Kind",
    "ValueType",
    "FieldSpec",
    "ParamSpec",
    "FunctionSpec",
    "Windowed",
    "DaysSince",
    "CartTimer",
    "ChannelDays",
    "Rescored",
    "Follows",
    "TraitWindow",
    "TimeChange",
    "Compute",
    "Registry",
    "NUMBER",
    "NUMBER_OR_NULL",
    "STRING",
    "STRING_OR_NULL",
    "BOOL",
    "ANY",
]


class Kind(str, Enum):
    NUMBER = "number"
    STRING = "string"
    BOOL = "bool"
    LIST = "list"
    NULL = "null"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class ValueType:
    """A static type: a kind, whether null is possible, the item kind of lists, an enum of strings."""

    kind: Kind
    nullable: bool = False
    item: Kind | None = None
    values: frozenset[str] | None = None

    def __str__(self) -> str:
        base = f"list[{self.item.value}]" if self.kind is Kind.LIST and self.item else self.kind.value
        return f"{base}?" if self.nullable and self.kind is not Kind.NULL else base


NUMBER = ValueType(Kind.NUMBER)
NUMBER_OR_NULL = ValueType(Kind.NUMBER, nullable=True)
STRING = ValueType(Kind.STRING)
STRING_OR_NULL = ValueType(Kind.STRING, nullable=True)
BOOL = ValueType(Kind.BOOL)
ANY = ValueType(Kind.ANY, nullable=True)

Compute = Callable[["DnaView"], Any]
"""How a field's value is computed: ``compute(view)`` reads ``view.dna`` at ``view.now`` (epoch
seconds), and may read other fields as ``view[name]``."""

# How time alone changes a field: the timeline turns these into wake-ups.


@dataclass(frozen=True, slots=True)
class Windowed:
    """A total over the last ``days`` UTC days (7, 30 or 90) of one per-day counter
    (``segments.windows`` metric index): changes at the UTC midnight a day with counts leaves it."""

    metric: int
    days: int


@dataclass(frozen=True, slots=True)
class DaysSince:
    """Whole days since the record's instant ``since`` (``dna_record.instant``: ``LAST_PURCHASE``
    ...): steps up every 24 h after it."""

    since: int


@dataclass(frozen=True, slots=True)
class CartTimer:
    """Changes when the open cart turns abandoned (``ABANDON_AFTER_S`` after the last cart
    event), and when that abandonment leaves the 30-day window."""


@dataclass(frozen=True, slots=True)
class ChannelDays:
    """Counts channels by their last day of use: changes when such a day leaves the last ``days`` days."""

    days: int


@dataclass(frozen=True, slots=True)
class Rescored:
    """A model score: changes every 24 h after the record's instant ``since``, and only when a
    model is loaded.

    ``trend``: -1 (+1) when, for a fixed purchase history, the score never rises (never falls)
    from one 24 h step to the next; ``history``: the helper holding everything but the age the
    score depends on; ``latest``: the record's instant of the newest fact in that history (the
    last purchase). With them, a rule comparing the score with numbers wakes the customer only at
    the steps it crosses one of them (``segments.crossing``); without, or when the score is used
    any other way, at every step."""

    since: int
    trend: int = 0
    history: str | None = None
    latest: int | None = None


@dataclass(frozen=True, slots=True)
class Follows:
    """Computed from other time-dependent fields: changes only when one of ``inputs`` (field
    name, values) crosses one of its values."""

    inputs: tuple[tuple[str, tuple[float, ...]], ...]


@dataclass(frozen=True, slots=True)
class TraitWindow:
    """A computed trait over a window (``segments.traits``): changes when something it counted
    leaves the window, at the start of a UTC day (hour)."""

    trait: str


TimeChange = Union[Windowed, DaysSince, CartTimer, ChannelDays, Rescored, Follows, TraitWindow]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One DNA field, declared once.

    ``doc`` is its definition as the docs, the rule-language reference and the JSON Schema show
    it. ``time`` is empty for a field only events change. ``touched_by`` holds the event types
    whose fold can change it, and the fold's shared effects (``segments.event_types.RECENCY``,
    ...); an event nothing names is followed by a full evaluation.
    """

    name: str
    type: ValueType
    doc: str
    group: str
    compute: Compute = field(compare=False, repr=False)
    time: tuple[TimeChange, ...] = ()
    touched_by: frozenset[str] = frozenset()

    @property
    def time_dependent(self) -> bool:
        """True when the field changes as time passes with no event."""
        return bool(self.time)


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: ValueType
    optional: bool = False


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function a rule may call.

    ``impl(ctx, *args)`` computes it; ``None`` marks the language builtins (min, max, abs,
    coalesce) that the compiler implements with its own null rules. ``variadic`` repeats the
    last parameter. ``touched_by`` as for fields.
    """

    name: str
    params: tuple[ParamSpec, ...]
    returns: ValueType
    doc: str
    group: str
    impl: Callable[..., Any] | None = field(default=None, compare=False)
    variadic: bool = False
    time_dependent: bool = False
    touched_by: frozenset[str] = frozenset()
    keyed: Mapping[str, ValueType | str] | None = field(default=None, compare=False)
    """When given, the first argument must be a string literal among these keys and the call has
    that key's type (``prop('amount')``); a text instead of a type is the problem to report for
    that key (a prop only some of the event types declare)."""


_JSON_KIND = {Kind.NUMBER: "number", Kind.STRING: "string", Kind.BOOL: "boolean"}


def _json_type(spec: FieldSpec) -> dict[str, Any]:
    kind = _JSON_KIND.get(spec.type.kind)
    schema: dict[str, Any] = {"description": spec.doc}
    if kind is not None:
        schema["type"] = [kind, "null"] if spec.type.nullable else kind
    if spec.type.values is not None:
        schema["enum"] = sorted(spec.type.values)
    return schema


class Registry:
    """A set of field and function declarations, and the tables derived from them.

    ``helpers`` are named intermediate values the computes share through the view (``_statistics``
    ...), not fields. Raises ``ValueError`` on a name declared twice, a window the counters do
    not keep, or ``Follows`` naming an undeclared field.
    """

    __slots__ = ("fields", "functions", "helpers", "compute", "time_dependent", "touches", "events")

    fields: Mapping[str, FieldSpec]
    functions: Mapping[str, FunctionSpec]
    helpers: Mapping[str, Compute]
    compute: dict[str, Compute]
    time_dependent: frozenset[str]
    touches: dict[str, frozenset[str]]
    events: frozenset[str]

    def __init__(
        self,
        fields: Iterable[FieldSpec],
        functions: Iterable[FunctionSpec] = (),
        helpers: Mapping[str, Compute] | None = None,
        events: Iterable[str] = (),
    ) -> None:
        by_name: dict[str, FieldSpec] = {}
        for spec in fields:
            if spec.name in by_name:
                raise ValueError(f"DNA field {spec.name!r} is declared twice")
            for change in spec.time:
                if isinstance(change, Windowed) and change.days not in SPANS:
                    raise ValueError(f"{spec.name}: windows of {change.days} days are not kept (only {SPANS})")
            by_name[spec.name] = spec
        fns: dict[str, FunctionSpec] = {}
        for fn in functions:
            if fn.name in fns or fn.name in by_name:
                raise ValueError(f"DNA name {fn.name!r} is declared twice")
            fns[fn.name] = fn
        for spec in by_name.values():
            for change in spec.time:
                if isinstance(change, Follows):
                    for name, _ in change.inputs:
                        if name not in by_name:
                            raise ValueError(f"{spec.name} follows {name!r}, which is not a declared field")
        self.fields = by_name
        self.functions = fns
        self.helpers = dict(helpers or {})
        self.compute = {name: spec.compute for name, spec in by_name.items()}
        self.compute.update(self.helpers)
        self.time_dependent = frozenset(name for name, spec in by_name.items() if spec.time)
        self.events = frozenset(events)
        touches: dict[str, set[str]] = {name: set() for name in self.events}
        for name, touched_by in [(s.name, s.touched_by) for s in by_name.values()] + [(f.name, f.touched_by) for f in fns.values()]:
            for cause in touched_by:
                touches.setdefault(cause, set()).add(name)
        self.touches = {cause: frozenset(names) for cause, names in touches.items()}

    def extended(self, fields: Iterable[FieldSpec] = (), functions: Iterable[FunctionSpec] = (), events: Iterable[str] = ()) -> Registry:
        """A new registry: these declarations and this one's (a name may not be declared twice).
        ``events``: more event types (custom ones), so an event of a type no field names is known
        to change nothing but the shared effects (rather than calling for a full evaluation)."""
        return Registry([*self.fields.values(), *fields], [*self.functions.values(), *functions], self.helpers, [*self.events, *events])

    def timed(self) -> list[tuple[FieldSpec, TimeChange]]:
        """Every (field, how time changes it), in declaration order."""
        return [(spec, change) for spec in self.fields.values() for change in spec.time]

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of a customer's DNA as explain shows it: field -> value."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "customer DNA",
            "description": "Every DNA field of one customer at an instant (docs/dna.md).",
            "type": "object",
            "properties": {name: _json_type(spec) for name, spec in self.fields.items()},
            "required": list(self.fields),
            "additionalProperties": False,
        }
