"""The committed JSON Schema of the DNA is the one the field declarations give."""

from __future__ import annotations

import orjson

from microseg.schemas.export import DNA_SCHEMA, SCHEMA_DIR, json_schemas
from microseg.segments.builtin_fields import BUILTINS
from microseg.segments.view import DnaView
from microseg.segments.dna import fold
from microseg.segments.testing import event, parse_ts


def test_committed_dna_schema_matches_the_declarations() -> None:
    schema = json_schemas(dna=BUILTINS.json_schema())[DNA_SCHEMA]
    committed = orjson.loads((SCHEMA_DIR / DNA_SCHEMA).read_bytes())
    assert committed == schema, f"refresh schemas/json/{DNA_SCHEMA} from BUILTINS.json_schema()"


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
