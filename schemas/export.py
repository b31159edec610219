"""JSON Schema for every published record, so consumers in other languages can validate.

Records are declared here (``schemas/``); the DNA's shape is declared by the field registry in
``segments`` (which this package may not import), so its schema is passed in:
``json_schemas(dna=BUILTINS.json_schema())`` adds ``customer-dna.schema.json``. The input
events are those of an event catalog (``schemas.event_catalog``): the built-in types, or a rule
set's with its custom types (``microseg schema --rules DIR``).
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel

from microseg.schemas.event_catalog import DEFAULT_CATALOG, EventCatalog
from microseg.schemas.outputs import DeadLetter, NextBestMessage, SegmentChange, SuppressedDecision

__all__ = ["json_schemas", "write_schemas", "SCHEMA_DIR", "DNA_SCHEMA"]

SCHEMA_DIR = Path(__file__).parent / "json"
DNA_SCHEMA = "customer-dna.schema.json"

_RECORDS: dict[str, type[BaseModel]] = {
    "segment-change": SegmentChange,
    "next-best-message": NextBestMessage,
    "suppressed-decision": SuppressedDecision,
    "dead-letter": DeadLetter,
}


def json_schemas(dna: Mapping[str, Any] | None = None, catalog: EventCatalog | None = None) -> dict[str, dict[str, Any]]:
    """File name -> schema; event props get one schema per event type of ``catalog`` (default: the
    built-in types). ``dna``: the schema of a customer's DNA (``segments.fields.Registry.json_schema()``),
    written as ``DNA_SCHEMA``."""
    events = (catalog or DEFAULT_CATALOG).json_schemas()
    schemas = {"customer-event.schema.json": events.pop("customer-event.schema.json")}
    schemas.update({f"{name}.schema.json": model.model_json_schema(by_alias=True) for name, model in _RECORDS.items()})
    if dna is not None:
        schemas[DNA_SCHEMA] = dict(dna)
    schemas.update(events)
    return schemas


def write_schemas(directory: Path = SCHEMA_DIR, dna: Mapping[str, Any] | None = None, catalog: EventCatalog | None = None) -> list[Path]:
    """Write every schema of ``json_schemas(dna, catalog)`` under ``directory``; the paths written."""
    written = []
    for name, schema in json_schemas(dna, catalog).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        written.append(path)
    return written
