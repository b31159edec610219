"""The generated docs: the registry half of docs/rule-language.md and the tables of docs/dna.md.

Both pages are rendered from the declarations (``segments.builtin_fields``,
``segments.event_types``), so they cannot drift from the code.
``python -m microseg.segments.language.reference docs/rule-language.md docs/dna.md`` rewrites every
generated block (between its BEGIN and END markers); tests fail when a committed page differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from microseg.segments.builtin_fields import BUILTINS
from microseg.segments.event_types import EVENTS
from microseg.segments.fields import FunctionSpec, Registry

__all__ = ["BEGIN", "END", "begin", "end", "render_reference", "render_dna", "update_file"]

_COMMAND = "python -m microseg.segments.language.reference"


def begin(name: str) -> str:
    return f"<!-- BEGIN GENERATED: {name} ({_COMMAND}) -->"


def end(name: str) -> str:
    return f"<!-- END GENERATED: {name} -->"


BEGIN = begin("registry")
END = end("registry")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _signature(spec: FunctionSpec) -> str:
    params = []
    for i, p in enumerate(spec.params):
        text = f"{p.name}: {p.type}"
        if p.optional:
            text = f"[{text}]"
        if spec.variadic and i == len(spec.params) - 1:
            text += ", ..."
        params.append(text)
    return f"{spec.name}({', '.join(params)}) -> {spec.returns}"


def _short_signature(spec: FunctionSpec) -> str:
    params = [p.name + ("?" if p.optional else "") for p in spec.params]
    if spec.variadic:
        params.append("...")
    return f"{spec.name}({', '.join(params)})"


def render_reference(registry: Registry | None = None) -> str:
    """Markdown tables of every DNA field and function, grouped as in the registry (rule-language.md)."""
    reg = BUILTINS if registry is None else registry
    out = [BEGIN, "", "### Fields", "", "`?` marks a type that may be null. *time* marks fields that change as time passes with no event.", ""]
    groups: dict[str, list[str]] = {}
    for spec in reg.fields.values():
        type_ = str(spec.type)
        if spec.type.values:
            type_ += " (" + ", ".join(sorted(spec.type.values)) + ")"
        time = " *time*" if spec.time_dependent else ""
        groups.setdefault(spec.group, []).append(f"| `{spec.name}` | {type_} | {_cell(spec.doc)}{time} |")
    for group, rows in groups.items():
        out += [f"#### {group}", "", "| field | type | meaning |", "|---|---|---|", *rows, ""]
    out += ["### Functions", "", "| signature | meaning |", "|---|---|"]
    out += [f"| `{_signature(spec)}` | {_cell(spec.doc)} |" for spec in reg.functions.values()]
    out += ["", END]
    return "\n".join(out)


def render_dna(registry: Registry | None = None) -> dict[str, str]:
    """The generated blocks of docs/dna.md by name: ``fields <group>`` for each group of fields,
    ``functions`` and ``events`` (what each input event type changes)."""
    reg = BUILTINS if registry is None else registry
    blocks: dict[str, list[str]] = {}
    for spec in reg.fields.values():
        rows = blocks.setdefault(f"fields {spec.group}", ["| field | type | definition |", "|---|---|---|"])
        time = " *time*" if spec.time_dependent else ""
        rows.append(f"| `{spec.name}` | {spec.type} | {_cell(spec.doc)}{time} |")
    rows = blocks["functions"] = ["| function | type | definition |", "|---|---|---|"]
    rows += [f"| `{_short_signature(fn)}` | {fn.returns} | {_cell(fn.doc)} |" for fn in reg.functions.values()]
    rows = blocks["events"] = ["| type | changes |", "|---|---|"]
    rows += [f"| `{e.name}` | {_cell(e.doc)} |" for e in EVENTS.values()]
    return {name: "\n".join([begin(name), *lines, end(name)]) for name, lines in blocks.items()}


def _replace(text: str, name: str, block: str) -> str:
    head, found, rest = text.partition(begin(name))
    if not found:
        return text
    _, _, tail = rest.partition(end(name))
    return head + block + tail


def update_file(path: Path, registry: Registry | None = None) -> bool:
    """Rewrite every generated block ``path`` holds; True when it changed."""
    text = path.read_text(encoding="utf-8")
    new = _replace(text, "registry", render_reference(registry))
    for name, block in render_dna(registry).items():
        new = _replace(new, name, block)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":  # pragma: no cover
    for arg in sys.argv[1:]:
        print(f"{arg}: {'updated' if update_file(Path(arg)) else 'up to date'}")
