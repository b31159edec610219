"""docs/rule-language.md carries the registry, generated, so it cannot drift from the declarations."""

from __future__ import annotations

from pathlib import Path

from microseg.segments.builtin_fields import FIELDS, FUNCTIONS
from microseg.segments.language.reference import render_reference

DOC = Path(__file__).resolve().parents[3] / "docs" / "rule-language.md"


def test_docs_block_matches_registry() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render_reference() in text, "run: python -m microseg.segments.language.reference docs/rule-language.md"


def test_every_field_and_function_is_documented_with_type_and_doc() -> None:
    block = render_reference()
    for spec in FIELDS.values():
        assert f"| `{spec.name}` | {spec.type}" in block and spec.doc.replace("|", "\\|") in block
    for fn in FUNCTIONS.values():
        assert f"`{fn.name}(" in block and fn.doc in block
