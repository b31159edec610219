"""docs/dna.md must name every DNA field, function and event type, with the registry's types.

The declarations (segments/builtin_fields.py, segments/event_types.py) are the source: the
tables are generated from them, and the hand-written prose around them must keep up.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from microseg.schemas.events import EVENT_TYPES
from microseg.segments.builtin_fields import ADVOCATE_NPS, AT_RISK_DAYS, FIELDS, FUNCTIONS, LAPSED_DAYS, ONBOARDING_DAYS
from microseg.segments.dna import ABANDON_AFTER_S, AFFINITY_HALF_LIFE_DAYS, RECENT_IDS
from microseg.segments.language.reference import render_dna

DOC = Path(__file__).resolve().parents[2] / "docs" / "dna.md"


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text(encoding="utf-8")


def _rows(text: str) -> dict[str, str]:
    """First cell (a backticked name, functions without their arguments) -> second cell."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"\|\s*`([a-z_0-9]+)(?:\([^`]*\))?`\s*\|\s*([^|]+?)\s*\|", line)
        if match:
            rows.setdefault(match.group(1), match.group(2))
    return rows


def test_generated_tables_match_the_declarations(text: str) -> None:
    for name, block in render_dna().items():
        assert block in text, f"docs/dna.md: the {name} table is stale; run: python -m microseg.segments.language.reference docs/dna.md"


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_field_has_a_row_with_its_registry_type(text: str, name: str) -> None:
    rows = _rows(text)
    assert name in rows, f"docs/dna.md has no table row for the DNA field `{name}`"
    assert rows[name] == str(FIELDS[name].type), f"docs/dna.md gives `{name}` type {rows[name]!r}; the registry says {FIELDS[name].type}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_has_a_row_with_its_return_type(text: str, name: str) -> None:
    rows = _rows(text)
    assert name in rows, f"docs/dna.md has no table row for the function `{name}(...)`"
    assert rows[name] == str(FUNCTIONS[name].returns), f"docs/dna.md gives `{name}` type {rows[name]!r}; the registry says {FUNCTIONS[name].returns}"


def test_time_dependent_fields_are_marked(text: str) -> None:
    for line in text.splitlines():
        match = re.match(r"\|\s*`([a-z_0-9]+)`\s*\|", line)
        if match and match.group(1) in FIELDS:
            marked = "*time*" in line
            assert marked == FIELDS[match.group(1)].time_dependent, f"*time* mark of `{match.group(1)}` disagrees with the registry"


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_says_what_it_changes(text: str, event_type: str) -> None:
    assert re.search(rf"^\| `{event_type}` \|", text, re.M), f"docs/dna.md does not say what `{event_type}` changes"


def test_the_documented_constants_are_the_code_s(text: str) -> None:
    assert ABANDON_AFTER_S == 3_600 and "1 hour after the last cart/checkout event" in text
    assert f"{AFFINITY_HALF_LIFE_DAYS:g}-day half-life" in text
    assert f"last {RECENT_IDS} event ids" in text
    assert f"`days_since_last_activity > {LAPSED_DAYS}`" in text
    assert f"`days_since_last_activity > {AT_RISK_DAYS}`" in text
    assert f"`tenure_days <= {ONBOARDING_DAYS}`" in text
    assert f"`nps >= {ADVOCATE_NPS}`" in text
