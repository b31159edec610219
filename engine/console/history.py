"""Segment populations over time: snapshots a worker keeps, a bounded ring, for the console's charts.

Every ``MICROSEG_CONSOLE_SNAPSHOT_S`` seconds (an hour by default) the worker records, for the
partitions it owns: each segment's population, the cumulative entries and exits per segment
(``microseg_segment_transitions_total``), the events processed so far and the rules version in
force. The newest ``MICROSEG_CONSOLE_SNAPSHOTS`` are kept (168: a week of hours) and written to
``<data_dir>/console/snapshots.json`` after each one, so a restarted worker keeps its history.

Entries and exits per interval are differences of the cumulative counts between consecutive
snapshots; a counter that went down (the worker restarted, its counters started again from 0)
counts from 0, as Prometheus's ``increase`` does on a reset.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Snapshot", "History", "Moves"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """The worker's segments at one instant ``t`` (epoch seconds)."""

    t: float
    populations: dict[str, int]
    entries: dict[str, int]
    """Cumulative entries per segment since the worker started."""
    exits: dict[str, int]
    """Cumulative exits per segment since the worker started."""
    events: int
    """Cumulative events processed since the worker started."""
    rules_version: str


@dataclass(frozen=True)
class Moves:
    """Entries and exits of one segment between two snapshots ending at ``t`` (epoch seconds),
    ``seconds`` apart."""

    t: float
    seconds: float
    entries: int
    exits: int


def _increase(now: int, before: int) -> int:
    return now - before if now >= before else now


class History:
    """The newest ``limit`` snapshots, oldest first; persisted to ``path`` when one is given."""

    def __init__(self, limit: int, path: Path | None = None) -> None:
        self.limit = max(2, limit)
        self.path = path
        self._ring: deque[Snapshot] = deque(maxlen=self.limit)
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            rows = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError) as exc:
            log.warning("console snapshots at %s could not be read (%s); starting a new history", path, exc)
            return
        for row in rows if isinstance(rows, list) else []:
            try:
                self._ring.append(
                    Snapshot(
                        float(row["t"]), {str(k): int(v) for k, v in row["populations"].items()},
                        {str(k): int(v) for k, v in row["entries"].items()}, {str(k): int(v) for k, v in row["exits"].items()},
                        int(row["events"]), str(row["rules_version"]),
                    )
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                continue  # one bad row is skipped, the rest kept

    def _save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            scratch = self.path.with_suffix(".tmp")
            scratch.write_bytes(orjson.dumps([asdict(s) for s in self._ring]))
            os.replace(scratch, self.path)
        except OSError as exc:
            log.warning("console snapshots could not be written to %s (%s); they are kept in memory", self.path, exc)

    def take(self, t: float, populations: Mapping[str, int], moves: Mapping[tuple[str, str], float], events: float, rules_version: str) -> Snapshot:
        """Record a snapshot; ``moves`` maps (segment, ``entered``/``exited``) to cumulative counts."""
        snapshot = Snapshot(
            t,
            dict(populations),
            {s: int(n) for (s, d), n in moves.items() if d == "entered"},
            {s: int(n) for (s, d), n in moves.items() if d == "exited"},
            int(events),
            rules_version,
        )
        self._ring.append(snapshot)
        self._save()
        return snapshot

    def snapshots(self) -> list[Snapshot]:
        return list(self._ring)

    def population(self, segment: str, extra: Iterable[Snapshot] = ()) -> list[tuple[float, int]]:
        """(t, population) of ``segment`` in every snapshot (0 where it did not exist), then ``extra``."""
        return [(s.t, s.populations.get(segment, 0)) for s in [*self._ring, *extra]]

    def moves(self, segment: str, extra: Iterable[Snapshot] = ()) -> list[Moves]:
        """Entries and exits of ``segment`` between consecutive snapshots (and ``extra``, e.g. now)."""
        rows = [*self._ring, *extra]
        return [
            Moves(
                b.t, b.t - a.t,
                _increase(b.entries.get(segment, 0), a.entries.get(segment, 0)),
                _increase(b.exits.get(segment, 0), a.exits.get(segment, 0)),
            )
            for a, b in zip(rows, rows[1:])
        ]

    def rules_versions(self) -> list[tuple[float, str]]:
        """(first seen, version) for each rules version in force at a snapshot, oldest first."""
        seen: list[tuple[float, str]] = []
        for s in self._ring:
            if not seen or seen[-1][1] != s.rules_version:
                seen.append((s.t, s.rules_version))
        return seen

    def as_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "snapshots": [asdict(s) for s in self._ring]}
