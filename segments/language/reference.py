"""The registry half of docs/rule-language.md, generated so the docs cannot drift from the code.

``python -m microseg.segments.language.reference docs/rule-language.md`` rewrites the block
between the markers; a test fails when the committed page differs from ``render_reference()``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from microseg.segments.fields import FIELDS, FUNCTIONS, FunctionSpec

__all__ = ["BEGIN", "END", "render_reference", "update_file"]

BEGIN = "<!-- BEGIN GENERATED: registry (python -m microseg.segments.language.reference) -->"
END = "<!-- END GENERATED: registry -->"


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


def render_reference() -> str:
    """Markdown tables of every DNA field and function, grouped as in the registry."""
    out = [BEGIN, "", "### Fields", "", "`?` marks a type that may be null. *time* marks fields that change as time passes with no event.", ""]
    groups: dict[str, list[str]] = {}
    for spec in FIELDS.values():
        type_ = str(spec.type)
        if spec.type.values:
            type_ += " (" + ", ".join(sorted(spec.type.values)) + ")"
        time = " *time*" if spec.time_dependent else ""
        groups.setdefault(spec.group, []).append(f"| `{spec.name}` | {type_} | {_cell(spec.doc)}{time} |")
    for group, rows in groups.items():
        out += [f"#### {group}", "", "| field | type | meaning |", "|---|---|---|", *rows, ""]
    out += ["### Functions", "", "| signature | meaning |", "|---|---|"]
    out += [f"| `{_signature(spec)}` | {_cell(spec.doc)} |" for spec in FUNCTIONS.values()]
    out += ["", END]
    return "\n".join(out)


def update_file(path: Path) -> bool:
    """Rewrite the generated block of ``path``; True when it changed."""
    text = path.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    new = head + render_reference() + tail
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":  # pragma: no cover
    for arg in sys.argv[1:]:
        print(f"{arg}: {'updated' if update_file(Path(arg)) else 'up to date'}")
