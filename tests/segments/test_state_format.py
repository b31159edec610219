"""The stored state format: states written by earlier releases are read (and migrated), newer
ones are refused with a clear error, and encode/decode round-trip.

``tests/fixtures/state_v1/`` holds states encoded by the release that wrote format 1, with their
decoded values as JSON. Never regenerate those files: they are what old workers left in RocksDB
and in the changelog. When a format change renames or adds fields, say here (``as_current``)
what the v1 values mean in the new terms.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import msgpack
import pytest

from microseg.segments.dna import Dna
from microseg.segments.state import CustomerState, decode, encode
from microseg.segments.windows import Windows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def plain(value: Any) -> Any:
    """A CustomerState (or any part of one) as JSON-ready values, fields by name."""
    if isinstance(value, CustomerState):
        return {f.name: plain(getattr(value, f.name)) for f in fields(CustomerState)}
    if isinstance(value, Dna):
        return {f.name: plain(getattr(value, f.name)) for f in fields(Dna)}
    if isinstance(value, Windows):
        return {"day": value.day, "totals": plain(value.totals), "rows": {str(day): list(row) for day, row in sorted(value.rows.items())}}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def as_current(expected_v1: dict[str, Any]) -> dict[str, Any]:
    """The v1 fixture's values in today's terms: the identity while no migration changes fields."""
    return expected_v1


def _text(value: Any) -> str:
    """Compared as JSON text: 1 and 1.0, or a list and a dict, do not pass for each other."""
    return json.dumps(value, sort_keys=True)


V1 = sorted(p.stem for p in (FIXTURES / "state_v1").glob("*.msgpack"))


def test_the_v1_fixture_is_there() -> None:
    assert V1 == ["erased", "heavy_buyer", "new"]


@pytest.mark.parametrize("name", V1)
def test_a_v1_state_decodes_to_its_recorded_values(name: str) -> None:
    data = (FIXTURES / "state_v1" / f"{name}.msgpack").read_bytes()
    expected = as_current(json.loads((FIXTURES / "state_v1" / f"{name}.json").read_text())["state"])
    found = plain(decode(data))
    assert sorted(found) == sorted(expected)
    assert sorted(found["dna"]) == sorted(expected["dna"]), "DNA fields added or removed: migrate them (segments/state.py) and say so in as_current"
    for field, value in expected["dna"].items():
        assert _text(found["dna"][field]) == _text(value), f"dna.{field}"
    for field, value in expected.items():
        if field != "dna":
            assert _text(found[field]) == _text(value), field


@pytest.mark.parametrize("name", V1)
def test_a_v1_state_round_trips_under_the_current_format(name: str) -> None:
    data = (FIXTURES / "state_v1" / f"{name}.msgpack").read_bytes()
    state = decode(data)
    again = encode(state)
    assert msgpack.unpackb(again)[0] == msgpack.unpackb(encode(CustomerState(Dna())))[0], "written in the current format"
    assert plain(decode(again)) == plain(state)
    assert encode(decode(again)) == again
