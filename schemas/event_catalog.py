"""Event catalogs: the event types a rule set accepts, and the validator of raw records for them.

An ``EventCatalog`` is the built-in types (``PROPS_BY_TYPE``) plus the custom types a rule set
declares (CONTRACT §7: ``events:`` in the rule files) plus extra props declared on built-in
types. ``catalog.decode`` is the single entry point for untrusted input: it returns an ``Event``
or raises ``InvalidEvent`` whose message is the dead-letter reason. ``DEFAULT_CATALOG`` holds
the built-in types only; ``decode_event`` is its ``decode``.

Decoding has two paths. The fast one validates straight from the JSON bytes with one
discriminated union over every type of the catalog (envelope and typed props together); any
record it refuses goes through the step-by-step path, which words the reason (the envelope,
then the props of the named type, then time and key). Both accept and refuse the same records.

Declared props are typed: ``string`` (at most 512 characters), ``number`` (a JSON number,
finite, ``|x| <= 1e15``, so any integer accepted is exact in a float and fits 64 bits; read as a
float), ``bool``, ``list[string]`` (at most 64 strings of at most 256 characters). ``optional``
props may be absent or null (read as None); the others are required. Undeclared keys are
ignored, as for the built-in types.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Protocol, Union

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, create_model

from microseg.schemas.event_models import (
    EVENT_TYPES,
    FUTURE_TOLERANCE_S,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_TS,
    MIN_TS,
    PROPS_BY_TYPE,
    Event,
    EventModel,
    Id,
    InvalidEvent,
    Name,
    ProfileProps,
    id_problem,
    profile_key,
    PropsModel,
    PurchaseProps,
)
from microseg.schemas.event_time import leap_second, ts_problem

__all__ = [
    "DEFAULT_CATALOG",
    "Decoder",
    "EventCatalog",
    "EventDeclaration",
    "PropDeclaration",
    "PropKind",
    "PROP_KINDS",
    "decode_event",
]

PropKind = Literal["string", "number", "bool", "list[string]"]
PROP_KINDS: tuple[str, ...] = typing.get_args(PropKind)
NUMBER_LIMIT = 1e15
"""A declared ``number`` is within ``-NUMBER_LIMIT..NUMBER_LIMIT``: integers there are exact."""
MAX_NAME = 64
"""The longest event type or prop name, in characters."""
MAX_PROPS = 64
"""The most props one declaration may add."""
MAX_DECLARATIONS = 256
"""The most event declarations one catalog may have."""
_NAME = re.compile(r"[a-z][a-z0-9_]*")

_PROP_TYPES: dict[str, Any] = {
    "string": Annotated[str, StringConstraints(max_length=512)],
    "number": Annotated[float, Field(ge=-NUMBER_LIMIT, le=NUMBER_LIMIT)],
    "bool": bool,
    "list[string]": Annotated[list[Annotated[str, StringConstraints(max_length=256)]], Field(max_length=64)],
}


@dataclass(frozen=True)
class PropDeclaration:
    """One declared prop: its type and whether it may be absent (or null)."""

    kind: PropKind
    optional: bool = False


@dataclass(frozen=True)
class EventDeclaration:
    """One entry of ``events:``: a custom type, or a built-in type with the extra props it carries."""

    type: str
    description: str = ""
    props: Mapping[str, PropDeclaration] = field(default_factory=dict)


class Decoder(Protocol):
    """``catalog.decode``: one raw record -> ``Event``, or ``InvalidEvent`` with the reason."""

    def __call__(self, raw: bytes, *, reference_t: float | None = None, key: bytes | None = None) -> Event: ...


class EventCatalog:
    """The event types a rule set accepts, their props models, and the validator for them.

    ``types``: every type name, the built-in ones first (in ``EVENT_TYPES`` order), then the
    custom ones in declaration order. ``custom``: the declarations the catalog was built from.
    ``decode(raw, *, reference_t=None, key=None)``: see ``decode_event``. Immutable; build one
    with ``EventCatalog.build``.
    """

    __slots__ = ("types", "custom", "decode", "_props", "_envelope", "_typed")

    types: tuple[str, ...]
    custom: tuple[EventDeclaration, ...]
    decode: Decoder

    def __init__(self, props_by_type: Mapping[str, type[PropsModel]], custom: Sequence[EventDeclaration] = ()) -> None:
        """The catalog of exactly these props models (unchecked: use ``build`` for declarations)."""
        self._props = dict(props_by_type)
        self.types = tuple(self._props)
        self.custom = tuple(custom)
        self._envelope: Any = EventModel
        if self.types != EVENT_TYPES:
            one_of: Any = Literal[self.types]  # type: ignore[valid-type]
            self._envelope = create_model("EventModel", __base__=EventModel, __doc__=EventModel.__doc__, type=(one_of, ...))
        union: Any = Union[tuple(_typed_model(kind, model) for kind, model in self._props.items())]  # type: ignore[valid-type]
        self._typed: Any = TypeAdapter(Annotated[union, Field(discriminator="type")])
        nested = {model: counter for model in set(self._props.values()) for base, counter in _NESTED_KEYS if issubclass(model, base)}
        self.decode = _decoder(self._typed.validator.validate_json, nested, self._decode_slowly)

    @classmethod
    def build(cls, declared: Sequence[EventDeclaration]) -> EventCatalog:
        """The built-in types plus ``declared``; ``ValueError`` with a message an analyst can act
        on (the rule files report it at the declaration) for a declaration that cannot be used."""
        if not declared:
            return DEFAULT_CATALOG
        if len(declared) > MAX_DECLARATIONS:
            raise ValueError(f"{len(declared)} event types are declared; the limit is {MAX_DECLARATIONS}")
        props: dict[str, type[PropsModel]] = dict(PROPS_BY_TYPE)
        seen: set[str] = set()
        for decl in declared:
            if not isinstance(decl, EventDeclaration):
                raise ValueError(f"expected an EventDeclaration, got {type(decl).__name__}")
            kind = _checked_name(decl.type, "event type")
            if kind in seen:
                raise ValueError(f"event type '{kind}' is declared twice; declare it once")
            seen.add(kind)
            if not isinstance(decl.description, str):
                raise ValueError(f"event type '{kind}': the description must be text")
            fields = _prop_fields(kind, decl.props)
            builtin = PROPS_BY_TYPE.get(kind)
            if builtin is None:
                props[kind] = create_model(_props_name(kind), __base__=PropsModel, __doc__=decl.description or None, **fields)
                continue
            if not fields:
                raise ValueError(f"'{kind}' is a built-in event type; list it under events only to declare extra props it carries")
            for name in fields:
                if name in builtin.model_fields:
                    shown = _kind_name(builtin.model_fields[name].annotation)
                    raise ValueError(f"{kind} already has a prop '{name}' ({shown}); declare only extra props")
            props[kind] = create_model(_props_name(kind), __base__=builtin, __doc__=decl.description or None, **fields)
        return cls(props, declared)

    def props_model(self, kind: str) -> type[PropsModel]:
        """The pydantic model of the props of ``kind`` (``KeyError`` for a type not in the catalog)."""
        try:
            return self._props[kind]
        except KeyError:
            raise KeyError(f"unknown event type {kind[:64]!r}; expected one of: {', '.join(self.types)}") from None

    def props_json_schema(self, kind: str) -> dict[str, Any]:
        """The JSON Schema of the props of ``kind`` (title ``"<kind> props"``)."""
        schema: dict[str, Any] = self.props_model(kind).model_json_schema()
        schema["title"] = f"{kind} props"
        return schema

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of an input event of this catalog, whole: the envelope with the props of
        each type, one of them chosen by ``type`` (custom types included)."""
        schema: dict[str, Any] = self._typed.json_schema()
        return {"title": "customer event", "description": "An input event (docs/dna.md, 'Input events'), props typed by its type.", **schema}

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """File name -> schema, as ``microseg schema`` writes them: the envelope
        (``customer-event.schema.json``, ``type`` one of ``types``) and ``props/<type>.schema.json``."""
        schemas = {"customer-event.schema.json": self._envelope.model_json_schema(by_alias=True)}
        for kind in self.types:
            schemas[f"props/{kind}.schema.json"] = self.props_json_schema(kind)
        return schemas

    def __repr__(self) -> str:
        custom = [d.type for d in self.custom]
        return f"EventCatalog({len(self.types)} types; declared: {', '.join(custom) or 'none'})"

    def _decode_slowly(self, raw: bytes, *, reference_t: float | None, key: bytes | None) -> Event:
        """The step-by-step path: the first problem found, in words."""
        if len(raw) > MAX_EVENT_BYTES:
            raise InvalidEvent(f"record is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent(f"not valid JSON (or not UTF-8): {exc}") from None
        data = _refuse_duplicate_keys(raw)  # and exact integers: orjson reads those beyond 64 bits as floats
        if not isinstance(data, dict):
            raise InvalidEvent(f"expected a JSON object, got {type(data).__name__}")
        props = data.get("props")
        if props and _too_deep(props):
            raise InvalidEvent(f"nested deeper than {MAX_DEPTH} levels")
        kind = data.get("type")
        if isinstance(kind, str) and kind not in self._props:
            raise InvalidEvent(f"unknown event type {kind[:64]!r}; expected one of: {', '.join(self.types)}")
        ts = data.get("ts")
        if isinstance(ts, str) and ":60" in ts:
            clamped = leap_second(ts)
            if clamped is not None:
                data["ts"] = clamped
        try:
            envelope = self._envelope.model_validate(data)
        except ValidationError as exc:
            raise InvalidEvent(_describe(exc, ts=ts)) from None
        try:
            typed_props = self._props[envelope.type].model_validate(envelope.props)
        except ValidationError as exc:
            raise InvalidEvent(_describe(exc, "props.")) from None
        except ValueError as exc:
            raise InvalidEvent(f"props: {exc}") from None
        return _checked(
            envelope.event_id, envelope.customer_id, envelope.type, envelope.ts, envelope.channel, envelope.device, typed_props, reference_t, key,
            envelope.anonymous_id,
        )


def _checked_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{what} {str(name)[:80]!r} is not a valid name: use lower-case letters, digits and '_', starting with a letter")
    if len(name) > MAX_NAME:
        raise ValueError(f"{what} '{name[:80]}...' is {len(name)} characters long; the limit is {MAX_NAME}")
    return name


def _prop_fields(kind: str, props: Any) -> dict[str, Any]:
    """The pydantic fields of the declared ``props`` of ``kind``."""
    if not isinstance(props, Mapping):
        raise ValueError(f"event type '{kind}': props must map names to types, e.g. {{plan: string, seats: number?}}")
    if len(props) > MAX_PROPS:
        raise ValueError(f"event type '{kind}' declares {len(props)} props; the limit is {MAX_PROPS}")
    fields: dict[str, Any] = {}
    for name, decl in props.items():
        _checked_name(name, f"prop of '{kind}':")
        if name.startswith("model_") or hasattr(BaseModel, name):
            raise ValueError(f"prop '{name}' of '{kind}' is a reserved name (a method of the props object); choose another name")
        if not isinstance(decl, PropDeclaration) or decl.kind not in PROP_KINDS or not isinstance(decl.optional, bool):
            shown = decl.kind if isinstance(decl, PropDeclaration) else decl
            raise ValueError(f"prop '{name}' of '{kind}' has type {str(shown)[:40]!r}; expected one of: {', '.join(PROP_KINDS)} ('?' after it: optional)")
        annotation = _PROP_TYPES[decl.kind]
        fields[name] = (annotation | None, None) if decl.optional else (annotation, ...)
    return fields


def _camel(kind: str) -> str:
    """``trial_started`` -> ``TrialStarted``; one name per type name (``x_1`` -> ``X_1``, ``x1`` -> ``X1``)."""
    return "".join(part.capitalize() if part[:1].isalpha() else f"_{part}" for part in kind.split("_"))


_BUILTIN_MODELS = {model.__name__ for model in PROPS_BY_TYPE.values()} | {"Item"}


def _props_name(kind: str) -> str:
    """The class name of the props model of a declared type; names show in JSON Schema ``$defs``,
    so a custom type does not take a built-in model's name (``campaign`` -> ``CampaignCustomProps``)."""
    name = f"{_camel(kind)}Props"
    return f"{_camel(kind)}CustomProps" if kind not in PROPS_BY_TYPE and name in _BUILTIN_MODELS else name


def _kind_name(annotation: Any) -> str:
    """A props-model annotation in the words of rule files: ``number``, ``string?``, ``list[object]``."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _kind_name(typing.get_args(annotation)[0])
    if origin in (Union, UnionType):
        args = [a for a in typing.get_args(annotation) if a is not NoneType]
        optional = "?" if len(args) < len(typing.get_args(annotation)) else ""
        return " or ".join(_kind_name(a) for a in args) + optional
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if origin is list:
        return f"list[{_kind_name(typing.get_args(annotation)[0])}]"
    if origin is dict or (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return "object"
    names = {str: "string", float: "number", int: "number", bool: "bool"}
    return names.get(annotation, str(annotation))


def _typed_model(kind: str, props: type[PropsModel]) -> Any:
    """The event of one type: the envelope with ``type`` fixed and ``props`` typed."""
    required = any(f.is_required() for f in props.model_fields.values())
    props_field: Any = (props, ...) if required else (props, Field(default_factory=props))
    fixed: Any = Literal[kind]  # type: ignore[valid-type]
    return create_model(
        f"{_camel(kind)}Event",
        __config__=ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False),
        event_id=(Id, ...),
        customer_id=(Id | None, None),
        anonymous_id=(Id | None, None),
        type=(fixed, ...),
        ts=(AwareDatetime, ...),
        channel=(Name | None, None),
        device=(Name | None, None),
        props=props_field,
    )


_new_event = tuple.__new__
"""``Event`` built without its Python-level ``__new__`` (a frame per event on the hot path)."""


def _decoder(validate_json: Any, nested_keys: dict[Any, Any], slowly: Any) -> Decoder:
    """The fast path over one catalog's union validator, falling back to ``slowly``."""
    nested_get = nested_keys.get

    def decode(raw: bytes, *, reference_t: float | None = None, key: bytes | None = None) -> Event:
        """Validate one raw record; events more than a day after ``reference_t`` are refused.

        ``reference_t`` is the processing clock: the later of the wall clock and the newest good
        event seen. The newest event alone would not do: a quiet day in a partition would then
        make every later event look like it came from the future, for ever.

        ``key``, when given, must equal the customer_id, else the anonymous_id (the Kafka message
        key). The event's ``customer_id`` is the profile key (``event_models.profile_key``).
        """
        if len(raw) <= MAX_EVENT_BYTES and raw.count(b"{") + raw.count(b"[") <= MAX_DEPTH:
            try:
                model = validate_json(raw)
            except ValidationError:
                pass
            else:
                props = model.props
                keys = len(model.__pydantic_fields_set__) + len(props.__pydantic_fields_set__)
                nested = nested_get(type(props))
                if nested is not None:
                    keys += nested(props)
                if raw.count(b'":') != keys:  # a repeated key, or (rarely) unknown keys, spaced colons, '":' in a value
                    _refuse_duplicate_keys(raw)
                t = model.ts.timestamp()
                customer_id = model.customer_id
                anonymous_id = model.anonymous_id
                if (
                    customer_id is not None
                    and anonymous_id is None
                    and customer_id[0] >= " "
                    and model.type != "identify"
                    and MIN_TS <= t < MAX_TS
                    and (reference_t is None or t <= reference_t + FUTURE_TOLERANCE_S)
                    and (key is None or key == customer_id.encode())
                ):
                    return _new_event(Event, (model.event_id, customer_id, model.type, t, model.channel, model.device, props, None))  # type: ignore[no-any-return]
                return _checked(
                    model.event_id, customer_id, model.type, model.ts, model.channel, model.device, props, reference_t, key, anonymous_id
                )
        return slowly(raw, reference_t=reference_t, key=key)  # type: ignore[no-any-return]

    return decode


def _item_keys(props: Any) -> int:
    return sum(len(item.__pydantic_fields_set__) for item in props.items) if props.items else 0


def _attribute_keys(props: Any) -> int:
    return len(props.attributes) if props.attributes else 0


_NESTED_KEYS: tuple[tuple[type, Any], ...] = ((PurchaseProps, _item_keys), (ProfileProps, _attribute_keys))
"""Keys below props, for the props models that have objects inside (and their extensions): JSON
parsers keep the last of repeated keys silently, so the fast path counts the keys it read
against the ``":`` in the record."""


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise InvalidEvent(f"duplicate key {name[:64]!r}: the record is ambiguous (which value is meant?)")
            seen.add(name)
    return found


def _refuse_duplicate_keys(raw: bytes) -> Any:
    """The record parsed exactly (integers of any size); ``InvalidEvent`` if any object repeats a key."""
    return json.loads(raw, object_pairs_hook=_unique_pairs)


def _too_deep(value: Any, depth: int = 1) -> bool:
    if depth > MAX_DEPTH:
        return True
    if type(value) is dict:
        return any(type(v) in (dict, list) and _too_deep(v, depth + 1) for v in value.values())
    if type(value) is list:
        return any(type(v) in (dict, list) and _too_deep(v, depth + 1) for v in value)
    return False


def _describe(error: ValidationError, prefix: str = "", ts: Any = None) -> str:
    parts = []
    for item in error.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in item["loc"])
        where = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "event"
        msg = str(item["msg"]).removeprefix("Value error, ")
        if loc == "ts" and not prefix and isinstance(ts, str):
            problem = ts_problem(ts)
            msg = f"{ts[:48]!r} {problem}" if problem else f"{ts[:48]!r}: {msg}"
        parts.append(f"{where}: {msg}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _checked(
    event_id: str, customer_id: str | None, kind: str, ts: datetime, channel: str | None, device: str | None, props: Any,
    reference_t: float | None, key: bytes | None, anonymous_id: str | None = None,
) -> Event:
    problem = id_problem(customer_id, anonymous_id, kind)
    if problem is not None:
        raise InvalidEvent(problem)
    t = ts.timestamp()
    if not (MIN_TS <= t < MAX_TS):
        raise InvalidEvent(f"ts {ts.isoformat()!r} is outside 1990..2100")
    if reference_t is not None and t > reference_t + FUTURE_TOLERANCE_S:
        raise InvalidEvent(
            f"ts {ts.isoformat()!r} is more than 1 day in the future "
            f"(processing clock {datetime.fromtimestamp(reference_t, timezone.utc).isoformat()})"
        )
    if customer_id is not None:
        if key is not None and key != customer_id.encode():
            raise InvalidEvent(f"message key {key[:130]!r} does not match customer_id {customer_id!r}")
    elif key is not None and key != anonymous_id.encode():  # type: ignore[union-attr]
        raise InvalidEvent(f"message key {key[:130]!r} does not match anonymous_id {anonymous_id!r} (the key is customer_id when given, else anonymous_id)")
    return Event(event_id, profile_key(customer_id, anonymous_id), kind, t, channel, device, props, anonymous_id)


DEFAULT_CATALOG = EventCatalog(PROPS_BY_TYPE)
"""The built-in event types only: what a rule set without ``events:`` accepts."""

decode_event: Decoder = DEFAULT_CATALOG.decode
"""Validate one raw record against the built-in types (``DEFAULT_CATALOG.decode``)."""
