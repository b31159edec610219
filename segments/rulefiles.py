"""Rule files -> one compiled, frozen ``RuleSet``, or every problem with ``file:line:col``.

YAML is read as a node tree (PyYAML's safe composer) so every value keeps its position; tags,
anchors and aliases are refused outright, so nothing in a rule file can construct objects or
expand exponentially. Plain scalars follow YAML 1.2 core rules (``no``, ``on``, ``21:00`` stay
text). Structure is validated by ``schemas.rulefile`` and problems are mapped back to the key
or value that caused them; expressions are compiled by ``segments.language`` with their errors
pointing inside the YAML scalar.
"""

from __future__ import annotations

import bisect
import difflib
import hashlib
import re
import typing
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from microseg.schemas.rulefile import (
    CLOCK_PATTERN,
    DURATION_PATTERN,
    ID_PATTERN,
    LABEL_PATTERN,
    DimensionModel,
    MessageModel,
    RuleFileModel,
    SegmentModel,
)
from microseg.segments.fields import Kind
from microseg.segments.language import Locator, Problem, RuleError, compile_expression
from microseg.segments.ruleset import (
    CasesDimension,
    CategoryDimension,
    ContactPolicy,
    CutsDimension,
    Dimension,
    Expr,
    Message,
    Origin,
    RuleSet,
    Segment,
)

__all__ = ["MAX_FILE_BYTES", "MAX_YAML_DEPTH", "RULE_FILE_SUFFIXES", "load_rules", "check_rules", "compile_rule_texts"]

MAX_FILE_BYTES = 1 << 20
MAX_YAML_DEPTH = 20
RULE_FILE_SUFFIXES = (".yaml", ".yml")
_SECTIONS = ("microsegments", "messages", "contact_policy")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60}
_ITEM_MODELS: dict[str, type[BaseModel]] = {"segments": SegmentModel, "messages": MessageModel}
_ADAPTERS: dict[str, TypeAdapter[Any]] = {name: TypeAdapter(Annotated[field.annotation, field]) for name, field in RuleFileModel.model_fields.items()}

Path_ = tuple[str | int, ...]


def load_rules(directory: Path | str) -> RuleSet:
    """Compile every ``*.yaml``/``*.yml`` in ``directory`` (sorted); raises ``RuleError`` with all problems."""
    root = Path(directory)
    if not root.is_dir():
        raise RuleError([Problem(str(root), 0, 0, "rules directory not found")])
    paths = sorted(p for p in root.iterdir() if p.suffix in RULE_FILE_SUFFIXES and p.is_file() and not p.name.startswith("."))
    if not paths:
        raise RuleError([Problem(str(root), 0, 0, "no rule files (*.yaml, *.yml) in this directory")])
    problems: list[Problem] = []
    texts: dict[str, bytes] = {}
    for path in paths:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            problems.append(Problem(str(path), 1, 1, f"file is {size} bytes; rule files are limited to {MAX_FILE_BYTES} bytes (1 MiB)"))
            continue
        texts[path.name] = path.read_bytes()
    try:
        ruleset = compile_rule_texts(texts, base=str(root))
    except RuleError as exc:
        problems.extend(exc.problems)
    if problems:
        raise RuleError(sorted(problems))
    return ruleset


def check_rules(directory: Path | str) -> list[Problem]:
    """Every problem in ``directory``'s rule files, sorted; empty when they compile."""
    try:
        load_rules(directory)
    except RuleError as exc:
        return list(exc.problems)
    return []


def compile_rule_texts(files: Mapping[str, bytes | str], *, base: str | None = None) -> RuleSet:
    """Compile rule files given as ``{file name: content}`` (what ``rules publish`` ships).

    The version hashes names and contents only, so the same files give the same version
    wherever they are loaded from; ``base`` only prefixes file names in problems.
    """
    problems: list[Problem] = []
    parts: list[_FileRules] = []
    digest = hashlib.sha256()
    for name in sorted(files):
        raw = files[name]
        data = raw.encode("utf-8") if isinstance(raw, str) else raw
        digest.update(name.encode("utf-8") + b"\0" + data + b"\0")
        shown = str(Path(base) / name) if base else name
        part = _FileRules(shown)
        parts.append(part)
        part.load(data)
        problems.extend(part.problems)
    ruleset = _assemble(parts, digest.hexdigest()[:12], tuple(sorted(files)), problems)
    if problems:
        raise RuleError(sorted(set(problems)))
    return ruleset


class _Refused(Exception):
    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _SafeComposer(yaml.SafeLoader):
    """SafeLoader's node composer minus tags, anchors, aliases and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 - PyYAML hook
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(event.start_mark, f"aliases (*{event.anchor}) are not allowed in rule files; write the value out")
        if event.anchor is not None:
            raise _Refused(event.start_mark, f"anchors (&{event.anchor}) are not allowed in rule files; write values out")
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise _Refused(event.start_mark, f"YAML tags ({tag}) are not allowed in rule files")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(event.start_mark, f"rule file nests more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_NULL = re.compile(r"^(~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?[0-9]{1,18}$")
_FLOAT = re.compile(r"^[-+]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][-+]?[0-9]{1,3})?$")


def _plain(value: str) -> Any:
    """YAML 1.2 core schema for plain scalars: only true/false/null/numbers are not text."""
    if _NULL.match(value):
        return None
    if value in _BOOL:
        return _BOOL[value]
    if _INT.match(value):
        return int(value)
    if len(value) < 40 and _FLOAT.match(value):
        return float(value)
    return value


@dataclass(frozen=True, slots=True)
class _Lines:
    """Line starts of a file's text, to turn a character index into (line, col)."""

    text: str
    starts: list[int]

    @classmethod
    def of(cls, text: str) -> _Lines:
        return cls(text, [0, *(m.end() for m in re.finditer("\n", text))])

    def at(self, index: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.starts, index) - 1
        return line + 1, index - self.starts[line] + 1


class _FileRules:
    """One file: its node tree, data, positions, compiled expressions and problems."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[Problem] = []
        self.model: RuleFileModel | None = None
        self.value_marks: dict[Path_, tuple[int, int]] = {}
        self.key_marks: dict[Path_, tuple[int, int]] = {}
        self.exprs: dict[Path_, Expr] = {}
        self.scalars: dict[Path_, yaml.ScalarNode] = {}
        self.kept: dict[str, list[int]] = {"segments": [], "messages": []}
        self.loose_ids: dict[str, set[str]] = {"segments": set(), "messages": set()}
        self.lines = _Lines.of("")

    def problem(self, where: tuple[int, int], message: str) -> None:
        self.problems.append(Problem(self.name, where[0], where[1], message))

    def at(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """Position of ``path`` (its key if asked), else of its nearest known ancestor."""
        marks = self.key_marks if key else self.value_marks
        while path:
            if path in marks:
                return marks[path]
            if path in self.value_marks:
                return self.value_marks[path]
            path = path[:-1]
        return self.value_marks.get((), (1, 1))

    def load(self, data: bytes) -> None:
        if len(data) > MAX_FILE_BYTES:
            self.problem((1, 1), f"file is {len(data)} bytes; rule files are limited to {MAX_FILE_BYTES} bytes (1 MiB)")
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            self.problem((line, 1), f"file is not UTF-8 text ({exc.reason} at byte {exc.start})")
            return
        self.lines = _Lines.of(text)
        root = self._compose(text)
        if root is None:
            return
        if not isinstance(root, yaml.MappingNode):
            self.problem(self._mark(root.start_mark), "a rule file is a mapping that starts with 'version: 1'")
            return
        plain = self._data(root, ())
        self._compile_expressions()
        self.model = self._validate(plain)

    def _validate(self, plain: dict[str, Any]) -> RuleFileModel:
        """Validate section by section and segments/messages item by item, so one bad entry
        does not hide the problems (or the ids) of the others."""
        for key in plain:
            if key not in RuleFileModel.model_fields:
                self._validation_problem({"type": "extra_forbidden", "loc": (key,), "msg": ""})
        values: dict[str, Any] = {"version": 1}
        for name, field in RuleFileModel.model_fields.items():
            if name not in plain:
                if field.is_required():
                    self._validation_problem({"type": "missing", "loc": (name,), "msg": ""})
                continue
            value = plain[name]
            item_model = _ITEM_MODELS.get(name)
            if item_model is not None and isinstance(value, list):
                kept: list[Any] = []
                for i, item in enumerate(value):
                    try:
                        kept.append(item_model.model_validate(item))
                        self.kept[name].append(i)
                    except ValidationError as exc:
                        self._errors(exc, (name, i))
                        if isinstance(item, dict) and isinstance(item.get("id"), str):
                            self.loose_ids[name].add(item["id"])
                values[name] = kept
                continue
            try:
                values[name] = _ADAPTERS[name].validate_python(value)
            except ValidationError as exc:
                self._errors(exc, (name,))
            else:
                if item_model is not None:
                    self.kept[name] = list(range(len(values[name])))
        return RuleFileModel.model_construct(**values)

    def _errors(self, exc: ValidationError, prefix: Path_) -> None:
        for error in exc.errors():
            self._validation_problem({**error, "loc": (*prefix, *error["loc"])})

    def _mark(self, mark: Any) -> tuple[int, int]:
        return mark.line + 1, mark.column + 1

    def _compose(self, text: str) -> yaml.Node | None:
        loader = _SafeComposer(text)
        try:
            root = loader.get_single_node()
        except _Refused as exc:
            self.problem(self._mark(exc.mark), exc.message)
            return None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = self._mark(mark) if mark is not None else (1, 1)
            self.problem(where, f"YAML: {exc.problem or exc.context}")
            return None
        except yaml.reader.ReaderError as exc:
            self.problem(self.lines.at(exc.position), f"YAML: {exc.reason} (character {exc.character!r})")
            return None
        except yaml.YAMLError as exc:
            self.problem((1, 1), f"YAML: {exc}")
            return None
        finally:
            loader.dispose()
        if root is None:
            self.problem((1, 1), "empty rule file; start it with 'version: 1'")
        return root

    def _data(self, node: yaml.Node, path: Path_) -> Any:
        self.value_marks[path] = self._mark(node.start_mark)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problem(self._mark(key_node.start_mark), "keys must be plain names")
                    continue
                key = key_node.value
                if key in out:
                    first = self.key_marks[(*path, key)]
                    self.problem(self._mark(key_node.start_mark), f"duplicate key '{key}' (first at line {first[0]})")
                    continue
                self.key_marks[(*path, key)] = self._mark(key_node.start_mark)
                out[key] = self._data(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self._data(item, (*path, i)) for i, item in enumerate(node.value)]
        self.scalars[path] = node
        if node.style in ("'", '"', "|", ">"):
            return node.value
        return _plain(node.value)

    def _compile_expressions(self) -> None:
        for path, node in self.scalars.items():
            if not _is_expression_path(path):
                continue
            value: Any = node.value if node.style else _plain(node.value)
            if isinstance(value, bool):
                value = "true" if value else "false"
            if not isinstance(value, str) or not value.strip():
                continue
            locate = _locator(self.lines, node, value)
            origin = Origin(self.name, *locate(0))
            try:
                self.exprs[path] = compile_expression(value, origin=origin, expect_bool=path[-1] == "when", locate=locate)
            except RuleError as exc:
                self.problems.extend(exc.problems)

    def _validation_problem(self, error: Mapping[str, Any]) -> None:
        loc: Path_ = tuple(error["loc"])
        kind = error["type"]
        where = _dotted(loc[:-1])
        prefix = f"{where}: " if where else ""
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (allowed: {', '.join(allowed)})"
            self.problem(self.at(loc, key=True), f"{prefix}unknown key '{loc[-1]}'{hint}")
            return
        if kind == "missing":
            extra = "; start the file with 'version: 1'" if loc == ("version",) else ""
            self.problem(self.at(loc[:-1]), f"{prefix}missing required key '{loc[-1]}'{extra}")
            return
        message = _PATTERN_HINTS.get(str(error.get("ctx", {}).get("pattern")), error["msg"])
        if kind == "value_error":
            message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        shown = f" (got {value!r})" if isinstance(value, (str, int, float)) and not isinstance(value, bool) and len(repr(value)) < 60 else ""
        self.problem(self.at(loc), f"{_dotted(loc)}: {message}{shown}")


_PATTERN_HINTS = {
    ID_PATTERN: "use lower-case letters, digits and _ only",
    LABEL_PATTERN: "labels use letters, digits, _, - and . only",
    DURATION_PATTERN: "write a duration like 14d, 12h or 30m",
    CLOCK_PATTERN: 'write a time as "HH:MM" (24-hour)',
}


def _is_expression_path(path: Path_) -> bool:
    if not path or path[-1] not in ("when", "of"):
        return False
    shape = tuple("#" if isinstance(p, int) else p for p in path)
    return shape in {
        ("segments", "#", "when"),
        ("messages", "#", "when"),
        ("microsegments", "dimensions", "#", "of"),
        ("microsegments", "dimensions", "#", "cases", "#", "when"),
    }


def _dotted(loc: Path_) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(loc: Path_) -> list[str]:
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


def _locator(lines: _Lines, node: yaml.ScalarNode, value: str) -> Locator:
    """Offset in the scalar's value -> (line, col) in the file.

    Exact for plain and quoted single-line scalars; for escapes, folding and block scalars
    the value is aligned with the raw text, which lands on the right character in practice.
    """
    text = lines.text
    start, end = node.start_mark.index, node.end_mark.index
    if node.style in ("'", '"'):
        start += 1
    elif node.style in ("|", ">"):
        newline = text.find("\n", start, end)
        start = end if newline < 0 else newline + 1
    cache: list[int] = []

    def align() -> list[int]:
        if node.style in ("'", '"') and "\n" not in text[start:end]:
            exact = _quoted_offsets(text, start, end - 1, node.style)
            if len(exact) == len(value) + 1:
                cache.extend(exact)
                return cache
        p = start
        for ch in value:
            q, skipped = p, 0
            while q < end and text[q] != ch and skipped <= 4:
                skipped += 0 if text[q].isspace() else 1
                q += 1
            found = q < end and text[q] == ch
            cache.append(q if found else p)
            p = q + 1 if found else p + 1
        cache.append(min(p, max(end, start)))
        return cache

    def locate(offset: int) -> tuple[int, int]:
        table = cache or align()
        return lines.at(table[max(0, min(offset, len(table) - 1))])

    return locate


_ESCAPE_WIDTH = {"x": 4, "u": 6, "U": 10}


def _quoted_offsets(text: str, start: int, end: int, style: str) -> list[int]:
    """Raw index of each decoded character of a one-line quoted scalar, plus its end."""
    out: list[int] = []
    i = start
    while i < end:
        out.append(i)
        if style == "'" and text.startswith("''", i):
            i += 2
        elif style == '"' and text[i] == "\\" and i + 1 < end:
            i += _ESCAPE_WIDTH.get(text[i + 1], 2)
        else:
            i += 1
    out.append(end)
    return out


def _iter_models(parts: list[_FileRules]) -> Iterator[tuple[_FileRules, RuleFileModel]]:
    for part in parts:
        if part.model is not None:
            yield part, part.model


def _assemble(parts: list[_FileRules], version: str, names: tuple[str, ...], problems: list[Problem]) -> RuleSet:
    """Cross-file checks and the frozen RuleSet; adds to ``problems``."""
    segments: list[Segment] = []
    seen_segments: dict[str, str] = {}
    dimensions: list[Dimension] = []
    messages: list[Message] = []
    policy = ContactPolicy()
    section_owner: dict[str, str] = {}
    pending_refs: list[tuple[_FileRules, Path_, str]] = []
    seen_messages: dict[str, str] = {}

    def add(part: _FileRules, where: tuple[int, int], message: str) -> None:
        problems.append(Problem(part.name, where[0], where[1], message))

    for part, model in _iter_models(parts):
        for section in _SECTIONS:
            if (section,) not in part.key_marks:
                continue
            here = part.at((section,), key=True)
            if section in section_owner:
                add(part, here, f"'{section}' is already defined in {section_owner[section]}; keep it in one file")
            else:
                section_owner[section] = f"{part.name}:{here[0]}:{here[1]}"
        for i, seg in zip(part.kept["segments"], model.segments):
            where = part.at(("segments", i, "id"))
            if seg.id in seen_segments:
                add(part, where, f"segment id '{seg.id}' is already used at {seen_segments[seg.id]}")
                continue
            seen_segments[seg.id] = f"{part.name}:{where[0]}:{where[1]}"
            expr = part.exprs.get(("segments", i, "when"))
            if expr is not None:
                segments.append(Segment(seg.id, seg.description, expr, Origin(part.name, *part.at(("segments", i)))))
        if model.microsegments is not None:
            names_seen: set[str] = set()
            for i, dim in enumerate(model.microsegments.dimensions):
                path: Path_ = ("microsegments", "dimensions", i)
                if dim.name in names_seen:
                    add(part, part.at((*path, "name")), f"dimension name '{dim.name}' is used twice")
                names_seen.add(dim.name)
                built = _dimension(part, path, dim, lambda w, m, p=part: add(p, w, m))
                if built is not None:
                    dimensions.append(built)
        for i, msg in zip(part.kept["messages"], model.messages):
            path = ("messages", i)
            where = part.at((*path, "id"))
            if msg.id in seen_messages:
                add(part, where, f"message id '{msg.id}' is already used at {seen_messages[msg.id]}")
                continue
            seen_messages[msg.id] = f"{part.name}:{where[0]}:{where[1]}"
            built_msg = _message(part, path, msg, lambda w, m, p=part: add(p, w, m))
            pending_refs.extend((part, (*path, "segments", j), s) for j, s in enumerate(msg.segments or ()))
            if built_msg is not None:
                messages.append(built_msg)
        if model.contact_policy is not None:
            policy = _policy(part, model, lambda w, m, p=part: add(p, w, m)) or policy
    loose = set().union(*(p.loose_ids["segments"] for p in parts)) if parts else set()
    for part, path, seg_id in pending_refs:
        if seg_id not in seen_segments and seg_id not in loose:
            close = difflib.get_close_matches(seg_id, list(seen_segments), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            add(part, part.at(path), f"message refers to unknown segment '{seg_id}'{hint}")
    return RuleSet(
        version=version,
        segments=tuple(segments),
        dimensions=tuple(dimensions),
        messages=tuple(messages),
        policy=policy,
        files=names,
    )


def _dimension(part: _FileRules, path: Path_, dim: DimensionModel, add: Any) -> Dimension | None:
    origin = Origin(part.name, *part.at(path))
    if dim.cases is not None:
        if dim.of is not None or dim.cuts is not None or dim.labels is not None:
            add(part.at((*path, "cases"), key=True), f"dimension '{dim.name}': use either 'cases' or 'of' (with 'cuts' and 'labels'), not both")
            return None
        labels: set[str] = set()
        cases: list[tuple[str, Expr]] = []
        for j, case in enumerate(dim.cases):
            if not _label_ok(part, (*path, "cases", j, "label"), case.label, labels, add):
                continue
            expr = part.exprs.get((*path, "cases", j, "when"))
            if expr is not None:
                cases.append((case.label, expr))
        return CasesDimension(dim.name, tuple(cases), origin) if len(cases) == len(dim.cases) else None
    if dim.of is None:
        add(part.at(path), f"dimension '{dim.name}' needs 'cases', or 'of' (with 'cuts' and 'labels' for numeric bands)")
        return None
    of = part.exprs.get((*path, "of"))
    if dim.cuts is None and dim.labels is None:
        if of is not None and of.type.kind is Kind.LIST:  # pragma: no cover - lists cannot be values
            return None
        return CategoryDimension(dim.name, of, origin) if of is not None else None
    if dim.cuts is None or dim.labels is None:
        missing = "cuts" if dim.cuts is None else "labels"
        add(part.at(path), f"dimension '{dim.name}': numeric bands need both 'cuts' and 'labels' (missing '{missing}')")
        return None
    ok = True
    if len(dim.labels) != len(dim.cuts) + 1:
        add(part.at((*path, "labels")), f"dimension '{dim.name}': {len(dim.cuts)} cuts make {len(dim.cuts) + 1} bands, so give {len(dim.cuts) + 1} labels (got {len(dim.labels)})")
        ok = False
    for j in range(1, len(dim.cuts)):
        if dim.cuts[j] <= dim.cuts[j - 1]:
            add(part.at((*path, "cuts", j)), f"dimension '{dim.name}': cuts must be strictly increasing ({dim.cuts[j]:g} after {dim.cuts[j - 1]:g})")
            ok = False
    labels = set()
    for j, label in enumerate(dim.labels):
        ok = _label_ok(part, (*path, "labels", j), label, labels, add) and ok
    if of is not None and of.type.kind not in (Kind.NUMBER, Kind.ANY):
        add(part.at((*path, "of")), f"dimension '{dim.name}': 'of' with cuts must be a number, got {of.type.kind.value}")
        ok = False
    if not ok or of is None:
        return None
    return CutsDimension(dim.name, of, tuple(float(c) for c in dim.cuts), tuple(dim.labels), origin)


def _label_ok(part: _FileRules, path: Path_, label: str, seen: set[str], add: Any) -> bool:
    if label == "na":
        add(part.at(path), "'na' is reserved for 'no case matched'; choose another label")
        return False
    if label in seen:
        add(part.at(path), f"label '{label}' is used twice in this dimension")
        return False
    seen.add(label)
    return True


def _message(part: _FileRules, path: Path_, msg: MessageModel, add: Any) -> Message | None:
    when = part.exprs.get((*path, "when"))
    if msg.segments is None and msg.when is None:
        add(part.at(path), f"message '{msg.id}' needs 'segments' (a list of segment ids) or 'when' (an expression)")
        return None
    if msg.when is not None and when is None:
        return None
    amount, unit = int(msg.cooldown[:-1]), msg.cooldown[-1]
    return Message(
        id=msg.id,
        segments=tuple(msg.segments or ()),
        when=when,
        channel=msg.channel,
        priority=msg.priority,
        cooldown_s=amount * _UNIT_SECONDS[unit],
        holdout=float(msg.holdout),
        description=msg.description,
        origin=Origin(part.name, *part.at(path)),
    )


def _policy(part: _FileRules, model: RuleFileModel, add: Any) -> ContactPolicy | None:
    cp = model.contact_policy
    assert cp is not None
    tz = cp.default_timezone or "UTC"
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        add(part.at(("contact_policy", "default_timezone")), f"unknown time zone '{tz}'; use an IANA name such as 'Europe/Paris'")
        return None
    start = end = None
    if cp.quiet_hours is not None:
        start = _minutes(cp.quiet_hours.start)
        end = _minutes(cp.quiet_hours.end)
        if start == end:
            add(part.at(("contact_policy", "quiet_hours")), "quiet hours start and end are the same; remove quiet_hours for none")
            return None
    caps = cp.caps
    return ContactPolicy(
        per_day=caps.per_day if caps else None,
        per_week=caps.per_week if caps else None,
        quiet_start_min=start,
        quiet_end_min=end,
        default_timezone=tz,
        quiet_action=cp.quiet_hours.action if cp.quiet_hours is not None else "defer",
    )


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)
