"""The ``events:`` and ``traits:`` sections of all rule files -> the event catalog, the traits, the registry.

Both sections are read across files before any rule expression is compiled, since a segment may
read a trait declared in another file. ``events:`` declares custom event types, or extra props of
built-in ones (``schemas.event_catalog``); ``traits:`` declares computed DNA fields
(``segments.traits``), whose ``where`` and ``value`` expressions read the event being folded:
``prop(name)`` typed from the props every listed event type declares, ``type``, ``channel``,
``device``. The registry the rules are compiled against is the built-in one extended with the
traits (``Registry.extended``). Every problem is reported at its key or value (``file:line:col``).
"""

from __future__ import annotations

import difflib
import re
import typing
import zlib
from collections.abc import Iterator
from types import NoneType, UnionType
from typing import Any, Literal

from microseg.schemas.event_catalog import DEFAULT_CATALOG, EventCatalog, EventDeclaration, PropDeclaration
from microseg.schemas.events import PROPS_BY_TYPE
from microseg.schemas.rulefile import EventDeclarationModel, TraitModel
from microseg.segments.builtin_fields import BUILTINS
from microseg.segments.fields import (
    BOOL,
    NUMBER,
    NUMBER_OR_NULL,
    STRING,
    STRING_OR_NULL,
    FieldSpec,
    FunctionSpec,
    Kind,
    ParamSpec,
    Registry,
    TraitWindow,
    ValueType,
)
from microseg.segments.rulefiles.positions import KeyPath
from microseg.segments.rulefiles.rule_file import RuleFile
from microseg.segments.traits import DAY_UNIT, HOUR_UNIT, Trait, event_prop, trait_reader

__all__ = ["Declarations", "declare", "event_registry", "MONEY_PROPS", "MAX_DAYS", "MAX_HOURS"]

MONEY_PROPS = frozenset({"amount", "cart_value", "price"})
"""Props summed and averaged exactly, in integer cents."""
MAX_DAYS = 400
MAX_HOURS = 168
_MONEY_VALUE = re.compile(r"\s*prop\(\s*(['\"])(amount|cart_value|price)\1\s*\)\s*")
_NOT_FOR_TRAITS = {"erasure_requested": "it deletes the customer's DNA", "identify": "it merges two profiles and is not folded as an event"}
_NUMERIC = frozenset({"sum", "avg", "min", "max"})
_KIND_OF_DECLARED = {"string": STRING, "number": NUMBER, "bool": BOOL, "list[string]": ValueType(Kind.LIST, item=Kind.STRING)}


class Declarations:
    """What the two sections declare: the catalog, the traits in declaration order, the registry."""

    __slots__ = ("catalog", "traits", "registry")

    def __init__(self, catalog: EventCatalog, traits: tuple[Trait, ...], registry: Registry) -> None:
        self.catalog = catalog
        self.traits = traits
        self.registry = registry


def _items(parts: list[RuleFile], section: str) -> Iterator[tuple[RuleFile, int, Any]]:
    for part in parts:
        if part.model is not None:
            yield from ((part, i, item) for i, item in zip(part.kept[section], getattr(part.model, section)))


def _where(part: RuleFile, path: KeyPath) -> str:
    line, col = part.at(path)
    return f"{part.name}:{line}:{col}"


def _catalog(parts: list[RuleFile]) -> EventCatalog:
    declared: list[EventDeclaration] = []
    seen: dict[str, str] = {}
    for part, i, decl in _items(parts, "events"):
        decl_model: EventDeclarationModel = decl
        path: KeyPath = ("events", i)
        if decl_model.type in seen:
            part.problem(part.at((*path, "type")), f"event type '{decl_model.type}' is already declared at {seen[decl_model.type]}; declare it once")
            continue
        builtin = PROPS_BY_TYPE.get(decl_model.type)
        ok = True
        props: dict[str, PropDeclaration] = {}
        for name, text in decl_model.props.items():
            if builtin is not None and name in builtin.model_fields:
                part.problem(part.at((*path, "props", name), key=True), f"'{decl_model.type}' already has a prop '{name}'; declare only extra props")
                ok = False
                continue
            kind = text.removesuffix("?")
            props[name] = PropDeclaration(typing.cast(Any, kind), text.endswith("?"))
        if builtin is not None and not decl_model.props:
            part.problem(part.at((*path, "type")), f"'{decl_model.type}' is a built-in event type; list it here only to declare extra props")
            ok = False
        if ok:
            seen[decl_model.type] = _where(part, (*path, "type"))
            declared.append(EventDeclaration(decl_model.type, decl_model.description, props))
    if not declared:
        return DEFAULT_CATALOG
    return EventCatalog.build(declared)


def _annotation_type(annotation: Any) -> ValueType | str:
    """The rule-language type of a props-model annotation, or why it cannot be read in a trait."""
    nullable = False
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, UnionType):
        args = [a for a in typing.get_args(annotation) if a is not NoneType]
        nullable = len(args) < len(typing.get_args(annotation))
        if len(args) != 1:
            return "has a mixed type"
        annotation = args[0]
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is Literal:
        values = typing.get_args(annotation)
        if all(isinstance(v, str) for v in values):
            return ValueType(Kind.STRING, nullable, values=frozenset(values))
        return "has a mixed type"
    if annotation is bool:
        return ValueType(Kind.BOOL, nullable)
    if annotation in (int, float):
        return ValueType(Kind.NUMBER, nullable)
    if annotation is str:
        return ValueType(Kind.STRING, nullable)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (Any,)
        if typing.get_origin(item) is typing.Annotated:
            item = typing.get_args(item)[0]
        if item is str:
            return ValueType(Kind.LIST, nullable, item=Kind.STRING)
        return "is a list of objects"
    return "has a type the rule language cannot read"


def _prop_types(catalog: EventCatalog, kind: str) -> dict[str, ValueType | str]:
    model = catalog.props_model(kind)
    return {name: _annotation_type(f.annotation) for name, f in model.model_fields.items()}


def _merged_props(catalog: EventCatalog, kinds: list[str]) -> dict[str, ValueType | str]:
    """Each prop of any of ``kinds``: its type when every one declares it alike, else the problem."""
    tables = {kind: _prop_types(catalog, kind) for kind in kinds}
    out: dict[str, ValueType | str] = {}
    for name in sorted({n for table in tables.values() for n in table}):
        lacking = [k for k, table in tables.items() if name not in table]
        if lacking:
            having = [k for k in kinds if k not in lacking]
            out[name] = f"prop '{name}' is declared by {', '.join(having)} but not by {', '.join(lacking)}; a trait over several event types reads only props all of them declare"
            continue
        found = [tables[k][name] for k in kinds]
        problem = next((f for f in found if isinstance(f, str)), None)
        if problem is not None:
            out[name] = f"prop '{name}' {problem}; it cannot be read in a trait"
            continue
        types = typing.cast(list[ValueType], found)
        if len({t.kind for t in types}) > 1:
            shown = ", ".join(f"{t.kind.value} in {k}" for t, k in zip(types, kinds))
            out[name] = f"prop '{name}' has different types ({shown})"
            continue
        values = None if any(t.values is None for t in types) else frozenset().union(*(t.values or () for t in types))
        out[name] = ValueType(types[0].kind, any(t.nullable for t in types), types[0].item, values)
    return out


def _no_compute(view: Any) -> Any:  # pragma: no cover - event names are read from the EventContext itself
    return None


def event_registry(catalog: EventCatalog, kinds: list[str]) -> Registry:
    """What ``where`` and ``value`` of a trait over ``kinds`` can read (an ``EventContext``)."""
    fields = (
        FieldSpec("type", ValueType(Kind.STRING, values=frozenset(kinds)), "The event's type.", "event", _no_compute),
        FieldSpec("channel", STRING_OR_NULL, "The event's channel; null if none.", "event", _no_compute),
        FieldSpec("device", STRING_OR_NULL, "The event's device; null if none.", "event", _no_compute),
    )
    prop = FunctionSpec(
        "prop", (ParamSpec("prop", STRING),), STRING_OR_NULL, "A prop of the event.", "event", event_prop, keyed=_merged_props(catalog, kinds)
    )
    return Registry(fields, (prop,))


def _window(part: RuleFile, path: KeyPath, text: str) -> tuple[int, int] | None:
    """``(unit, span)`` of a window text; None (reported) when out of range."""
    if text == "lifetime":
        return 0, 0
    amount, unit = int(text[:-1]), text[-1]
    most = MAX_DAYS if unit == "d" else MAX_HOURS
    if not 1 <= amount <= most:
        part.problem(part.at(path), f"window {text}: {'days' if unit == 'd' else 'hours'} must be 1..{most}" + ("; use lifetime for all time" if unit == "d" else "; use days for longer windows"))
        return None
    return (DAY_UNIT if unit == "d" else HOUR_UNIT), amount


def _trait_type(aggregate: str, value: ValueType | None) -> ValueType:
    if aggregate in ("count", "distinct_count", "sum"):
        return NUMBER
    if aggregate in ("avg", "min", "max"):
        return NUMBER_OR_NULL
    assert value is not None
    return ValueType(value.kind, True, value.item, value.values)


def _trait(part: RuleFile, i: int, model: TraitModel, catalog: EventCatalog) -> tuple[Trait, ValueType] | None:
    path: KeyPath = ("traits", i)
    ok = True
    kinds: list[str] = []
    for j, kind in enumerate(model.events):
        if kind in _NOT_FOR_TRAITS:
            part.problem(part.at((*path, "events", j)), f"'{kind}' cannot feed a trait ({_NOT_FOR_TRAITS[kind]})")
            ok = False
        elif kind not in catalog.types:
            close = difflib.get_close_matches(kind, list(catalog.types), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "; declare it under 'events:'"
            part.problem(part.at((*path, "events", j)), f"unknown event type '{kind}'{hint}")
            ok = False
        elif kind not in kinds:
            kinds.append(kind)
    window = _window(part, (*path, "window"), model.window)
    if not ok or window is None:
        return None
    registry = event_registry(catalog, kinds)
    where = part.expression((*path, "where"), registry, expect_bool=True) if model.where is not None else None
    value = part.expression((*path, "value"), registry, expect_bool=False) if model.value is not None else None
    if (model.where is not None and where is None) or (model.value is not None and value is None):
        return None
    aggregate = model.aggregate
    if aggregate == "count" and value is not None:
        part.problem(part.at((*path, "value"), key=True), "'count' counts events and takes no 'value' (use 'sum' to add values up)")
        return None
    if aggregate != "count" and value is None:
        part.problem(part.at((*path, "aggregate")), f"'{aggregate}' needs a 'value', e.g. value: prop('amount')")
        return None
    if value is not None:
        kind = value.type.kind
        if aggregate in _NUMERIC and kind not in (Kind.NUMBER, Kind.ANY):
            part.problem(part.at((*path, "value")), f"'{aggregate}' needs a number value, got {kind.value}")
            return None
        if kind in (Kind.LIST, Kind.NULL):
            part.problem(part.at((*path, "value")), f"a trait value must be a number, string or true/false, got {kind.value}")
            return None
    money = value is not None and aggregate in ("sum", "avg") and _MONEY_VALUE.fullmatch(value.source) is not None
    unit, span = window
    definition = repr((sorted(kinds), model.where, aggregate, model.value, unit, span, money))
    trait = Trait(
        id=model.id,
        events=frozenset(kinds),
        aggregate=aggregate,
        where=where.fn if where is not None else None,
        value=value.fn if value is not None else None,
        unit=unit,
        span=span,
        money=money,
        fingerprint=zlib.crc32(definition.encode()),
        description=model.description,
    )
    return trait, _trait_type(aggregate, value.type if value is not None else None)


def declare(parts: list[RuleFile]) -> Declarations:
    """The catalog, the traits and the registry of the rule files ``parts`` (loaded and validated);
    problems go to the part they are in."""
    try:
        catalog = _catalog(parts)
    except ValueError as exc:  # what the rule-file checks above let through: reported at the first declaration
        first = next(_items(parts, "events"))
        first[0].problem(first[0].at(("events",), key=True), str(exc))
        catalog = DEFAULT_CATALOG
    traits: list[Trait] = []
    specs: list[FieldSpec] = []
    seen: dict[str, str] = {}
    taken = set(BUILTINS.fields) | set(BUILTINS.functions)
    for part, i, model in _items(parts, "traits"):
        where = part.at(("traits", i, "id"))
        if model.id in taken:
            kind = "function" if model.id in BUILTINS.functions else "DNA field"
            part.problem(where, f"trait id '{model.id}' is the name of a built-in {kind}; choose another id")
            continue
        if model.id in seen:
            part.problem(where, f"trait id '{model.id}' is already used at {seen[model.id]}")
            continue
        seen[model.id] = _where(part, ("traits", i, "id"))
        built = _trait(part, i, model, catalog)
        if built is None:
            continue
        trait, type_ = built
        traits.append(trait)
        doc = trait.description or f"{trait.aggregate} over {', '.join(sorted(trait.events))}"
        time = (TraitWindow(trait.id),) if not trait.lifetime else ()
        specs.append(FieldSpec(trait.id, type_, doc, "traits", trait_reader(trait), time, trait.events))
    custom = [kind for kind in catalog.types if kind not in PROPS_BY_TYPE]
    return Declarations(catalog, tuple(traits), BUILTINS.extended(fields=specs, events=custom))
