"""Where replay's records go: a JSONL file (``--out``/``--dlq``), a list in tests, counters in previews.

The worker delivers the same records to Kafka through ``engine.worker.delivery.KafkaSink``; the
records themselves come from the same core in both, which is what makes ``microseg replay``
reproduce what the worker emits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

import orjson

__all__ = ["Sink", "ListSink", "JsonlSink", "SEGMENT_CHANGES", "NEXT_BEST_MESSAGES", "MESSAGE_HOLDOUTS", "DLQ"]

SEGMENT_CHANGES = "segment-changes"
NEXT_BEST_MESSAGES = "next-best-messages"
MESSAGE_HOLDOUTS = "message-holdouts"
DLQ = "customer-events-dlq"


class Sink(Protocol):
    def changes(self, records: Iterable[dict[str, Any]]) -> None: ...

    def messages(self, records: Iterable[dict[str, Any]]) -> None: ...

    def dead_letter(self, record: dict[str, Any]) -> None: ...


class HoldoutSink(Protocol):
    """A sink that also takes holdout decisions and held-back decisions (replay calls these when present)."""

    def holdouts(self, records: Iterable[dict[str, Any]]) -> None: ...

    def suppressed(self, records: Iterable[dict[str, Any]]) -> None: ...


@dataclass
class ListSink:
    """Collects records in memory (tests, previews)."""

    change_records: list[dict[str, Any]] = field(default_factory=list)
    message_records: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    holdout_records: list[dict[str, Any]] = field(default_factory=list)

    def changes(self, records: Iterable[dict[str, Any]]) -> None:
        self.change_records.extend(records)

    def messages(self, records: Iterable[dict[str, Any]]) -> None:
        self.message_records.extend(records)

    def dead_letter(self, record: dict[str, Any]) -> None:
        self.dead_letters.append(record)

    def holdouts(self, records: Iterable[dict[str, Any]]) -> None:
        self.holdout_records.extend(records)


class JsonlSink:
    """Writes ``{"topic", "key", "value"}`` lines, the form ``microseg replay --out`` documents."""

    def __init__(self, out: IO[bytes] | None, dlq: IO[bytes] | None = None) -> None:
        self._out = out
        self._dlq = dlq

    def _write(self, topic: str, records: Iterable[dict[str, Any]]) -> None:
        if self._out is None:
            return
        write = self._out.write
        for record in records:
            write(orjson.dumps({"topic": topic, "key": record["customer_id"] or record["anonymous_id"], "value": record}) + b"\n")

    def changes(self, records: Iterable[dict[str, Any]]) -> None:
        self._write(SEGMENT_CHANGES, records)

    def messages(self, records: Iterable[dict[str, Any]]) -> None:
        self._write(NEXT_BEST_MESSAGES, records)

    def holdouts(self, records: Iterable[dict[str, Any]]) -> None:
        self._write(MESSAGE_HOLDOUTS, records)

    def dead_letter(self, record: dict[str, Any]) -> None:
        if self._dlq is not None:
            self._dlq.write(orjson.dumps(record) + b"\n")
