"""A rule file's data against ``schemas.rulefile``, with each problem at the key or value that caused it.

Validation goes section by section, and segments and messages item by item, so one bad entry
does not hide the problems (or the ids) of the others. Pydantic's errors become plain messages
with hints: the nearest allowed key for a typo, what a pattern expects.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from microseg.schemas.rulefile import (
    CLOCK_PATTERN,
    DURATION_PATTERN,
    ID_PATTERN,
    LABEL_PATTERN,
    NAME_PATTERN,
    PROP_TYPE_PATTERN,
    WINDOW_PATTERN,
    EventDeclarationModel,
    MessageModel,
    RuleFileModel,
    SegmentModel,
    TraitModel,
)
from microseg.segments.rulefiles.positions import KeyPath

if TYPE_CHECKING:
    from microseg.segments.rulefiles.rule_file import RuleFile

__all__ = ["validate"]

_ITEM_MODELS: dict[str, type[BaseModel]] = {
    "segments": SegmentModel, "messages": MessageModel, "events": EventDeclarationModel, "traits": TraitModel,
}
_ADAPTERS: dict[str, TypeAdapter[Any]] = {name: TypeAdapter(Annotated[field.annotation, field]) for name, field in RuleFileModel.model_fields.items()}
_PATTERN_HINTS = {
    ID_PATTERN: "use lower-case letters, digits and _ only",
    LABEL_PATTERN: "labels use letters, digits, _, - and . only",
    DURATION_PATTERN: "write a duration like 14d, 12h or 30m",
    CLOCK_PATTERN: 'write a time as "HH:MM" (24-hour)',
    NAME_PATTERN: "start with a lower-case letter; then lower-case letters, digits and _ only",
    PROP_TYPE_PATTERN: "a prop type is string, number, bool or list[string], with '?' for optional (e.g. number?)",
    WINDOW_PATTERN: "write a window like 7d, 6h or lifetime",
}


def validate(file: RuleFile, plain: dict[str, Any]) -> RuleFileModel:
    """The model of what in ``plain`` (the file's data) is valid; every problem goes to ``file``,
    whose ``kept`` and ``loose_ids`` record which segments and messages passed."""
    for key in plain:
        if key not in RuleFileModel.model_fields:
            _problem(file, {"type": "extra_forbidden", "loc": (key,), "msg": ""})
    values: dict[str, Any] = {"version": 1}
    for name, field in RuleFileModel.model_fields.items():
        if name not in plain:
            if field.is_required():
                _problem(file, {"type": "missing", "loc": (name,), "msg": ""})
            continue
        value = plain[name]
        item_model = _ITEM_MODELS.get(name)
        if item_model is not None and isinstance(value, list):
            kept: list[Any] = []
            for i, item in enumerate(value):
                try:
                    kept.append(item_model.model_validate(item))
                    file.kept[name].append(i)
                except ValidationError as exc:
                    _errors(file, exc, (name, i))
                    if isinstance(item, dict) and isinstance(item.get("id"), str):
                        file.loose_ids[name].add(item["id"])
                        file.loose_items[name].append((i, item["id"], item))
            values[name] = kept
            continue
        try:
            values[name] = _ADAPTERS[name].validate_python(value)
        except ValidationError as exc:
            _errors(file, exc, (name,))
        else:
            if item_model is not None:
                file.kept[name] = list(range(len(values[name])))
    return RuleFileModel.model_construct(**values)


def _errors(file: RuleFile, exc: ValidationError, prefix: KeyPath) -> None:
    for error in exc.errors():
        _problem(file, {**error, "loc": (*prefix, *error["loc"])})


def _problem(file: RuleFile, error: Mapping[str, Any]) -> None:
    loc: KeyPath = tuple(error["loc"])
    kind = error["type"]
    where = _dotted(loc[:-1])
    prefix = f"{where}: " if where else ""
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f" (allowed: {', '.join(allowed)})"
        file.problem(file.at(loc, key=True), f"{prefix}unknown key '{loc[-1]}'{hint}")
        return
    if kind == "model_type" and len(loc) >= 2 and loc[-2] == "caps" and error.get("ctx", {}).get("class_name") == "ChannelCapsModel":
        _cap_problem(file, loc, error.get("input"))
        return
    if kind == "missing":
        extra = "; start the file with 'version: 1'" if loc == ("version",) else ""
        file.problem(file.at(loc[:-1]), f"{prefix}missing required key '{loc[-1]}'{extra}")
        return
    message = _PATTERN_HINTS.get(str(error.get("ctx", {}).get("pattern")), error["msg"])
    if kind == "value_error":
        message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    shown = f" (got {value!r})" if isinstance(value, (str, int, float)) and not isinstance(value, bool) and len(repr(value)) < 60 else ""
    file.problem(file.at(loc), f"{_dotted(loc)}: {message}{shown}")


def _cap_problem(file: RuleFile, loc: KeyPath, value: Any) -> None:
    """A key of ``caps`` that is neither ``per_day``/``per_week`` nor a channel with a mapping of
    them (pydantic reads any other key as a channel's caps): a misspelt cap, or a channel given a
    number."""
    name = str(loc[-1])
    caps = ("per_day", "per_week")
    close = difflib.get_close_matches(name, caps, n=1, cutoff=0.6)
    if close:
        message = f"unknown cap '{name}'; did you mean '{close[0]}'?"
    else:
        example = value if isinstance(value, int) and not isinstance(value, bool) else 2
        message = (
            f"unknown cap '{name}': caps are per_day and per_week, or a channel with its own, "
            f"e.g. {name}: {{per_day: {example}}}"
        )
    file.problem(file.at(loc, key=True), f"{_dotted(loc[:-1])}: {message}")


def _dotted(loc: KeyPath) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(loc: KeyPath) -> list[str]:
    """The keys the model at ``loc`` accepts, to suggest the one that was meant."""
    model: Any = RuleFileModel
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = _model_in(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None

