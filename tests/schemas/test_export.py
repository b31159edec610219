"""The JSON Schema of the DNA comes from the field declarations and describes explain's snapshot."""

from __future__ import annotations

from pathlib import Path

import orjson

from microseg.schemas.export import DNA_SCHEMA, json_schemas, write_schemas
from microseg.segments.builtin_fields import BUILTINS
from microseg.segments.dna import fold
from microseg.segments.testing import event, parse_ts
from microseg.segments.view import DnaView


def test_dna_schema_is_written_with_the_records(tmp_path: Path) -> None:
    written = write_schemas(tmp_path, dna=BUILTINS.json_schema())
    assert tmp_path / DNA_SCHEMA in written
    assert orjson.loads((tmp_path / DNA_SCHEMA).read_bytes()) == json_schemas(dna=BUILTINS.json_schema())[DNA_SCHEMA]


def test_dna_schema_describes_a_snapshot() -> None:
    schema = BUILTINS.json_schema()
    dna = fold(None, event("c", "purchase", "2026-03-01T10:00:00Z", order_id="o", amount=12.5, channel="web"))
    snapshot = DnaView(dna, parse_ts("2026-03-02T00:00:00Z")).snapshot()
    assert list(snapshot) == schema["required"] == list(schema["properties"])
    kinds = {"number": (int, float), "string": str, "boolean": bool, "null": type(None)}
    for name, value in snapshot.items():
        declared = schema["properties"][name]["type"]
        allowed = tuple(t for k in ([declared] if isinstance(declared, str) else declared) for t in (kinds[k] if isinstance(kinds[k], tuple) else (kinds[k],)))
        assert isinstance(value, allowed), (name, value, declared)
    assert snapshot["journey_stage"] in schema["properties"]["journey_stage"]["enum"]


def test_records_without_dna_are_unchanged() -> None:
    assert DNA_SCHEMA not in json_schemas()
