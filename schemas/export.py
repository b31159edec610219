"""JSON Schema for every published record, so consumers in other languages can validate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from microseg.schemas.events import PROPS_BY_TYPE, EventModel
from microseg.schemas.outputs import DeadLetter, NextBestMessage, SegmentChange, SuppressedDecision

__all__ = ["json_schemas", "write_schemas", "SCHEMA_DIR"]

SCHEMA_DIR = Path(__file__).parent / "json"

_RECORDS: dict[str, type[BaseModel]] = {
    "customer-event": EventModel,
    "segment-change": SegmentChange,
    "next-best-message": NextBestMessage,
    "suppressed-decision": SuppressedDecision,
    "dead-letter": DeadLetter,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema; event props get one schema per event type."""
    schemas = {f"{name}.schema.json": model.model_json_schema(by_alias=True) for name, model in _RECORDS.items()}
    for kind, props in PROPS_BY_TYPE.items():
        schema = props.model_json_schema()
        schema["title"] = f"{kind} props"
        schemas[f"props/{kind}.schema.json"] = schema
    return schemas


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
        written.append(path)
    return written
