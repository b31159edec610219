"""Populations over time from Prometheus, when one scrapes the workers (``MICROSEG_CONSOLE_PROMETHEUS_URL``).

The worker's own snapshots (``engine.console.history``) cover the partitions it owns; Prometheus has
every worker's ``/metrics``, so with it the console's charts show the whole deployment:

- population: ``sum by (segment) (microseg_segment_population)``;
- entries and exits per step: ``sum by (segment, direction) (increase(microseg_segment_transitions_total[<step>s]))``
  (``increase`` handles counter resets and extrapolates to the window's edges, so values may be fractional).

Both are ``/api/v1/query_range`` over the same window and step as the snapshots (``MICROSEG_CONSOLE_SNAPSHOTS``
steps of ``MICROSEG_CONSOLE_SNAPSHOT_S``). Any failure (unreachable, an error answer, a bad body) is
reported as ``PrometheusError`` with a readable reason and the page falls back to the snapshots.
"""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import orjson

from microseg.errors import MicrosegError

__all__ = ["PrometheusError", "Prometheus", "POPULATION", "MOVES", "TIMEOUT_S"]

POPULATION = "sum by (segment) (microseg_segment_population)"
MOVES = "sum by (segment, direction) (increase(microseg_segment_transitions_total[{window}s]))"
TIMEOUT_S = 5.0


class PrometheusError(MicrosegError):
    """Prometheus could not answer a console query; the message says why."""


Series = dict[tuple[str, ...], list[tuple[float, float]]]


class Prometheus:
    """Range queries against one Prometheus server's HTTP API (``url``: its base, e.g. ``http://prometheus:9090``)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    async def range(self, query: str, start: float, end: float, step: float, labels: tuple[str, ...]) -> Series:
        """``query`` over [start, end] every ``step`` seconds: (label values) -> [(t, value)]."""
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{max(step, 1.0):.3f}"}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session:
                async with session.get(f"{self.url}/api/v1/query_range", params=params) as response:
                    body = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PrometheusError(f"Prometheus at {self.url} did not answer ({exc.__class__.__name__}: {exc})") from exc
        try:
            answer: dict[str, Any] = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise PrometheusError(f"Prometheus at {self.url} answered {response.status} with a body that is not JSON") from exc
        if answer.get("status") != "success":
            raise PrometheusError(f"Prometheus at {self.url} refused the query: {answer.get('errorType', response.status)}: {answer.get('error', '')}")
        found: Series = {}
        try:
            for item in answer["data"]["result"]:
                key = tuple(str(item["metric"].get(label, "")) for label in labels)
                points = [(float(t), float(v)) for t, v in item["values"]]
                found[key] = [(t, v) for t, v in points if math.isfinite(v)]
        except (KeyError, TypeError, ValueError) as exc:
            raise PrometheusError(f"Prometheus at {self.url} answered a result this console cannot read ({exc})") from exc
        return found

    async def populations(self, start: float, end: float, step: float) -> dict[str, list[tuple[float, float]]]:
        """Every segment's population (summed over the workers) over the window."""
        return {key[0]: points for key, points in (await self.range(POPULATION, start, end, step, ("segment",))).items()}

    async def moves(self, segment: str, start: float, end: float, step: float) -> list[tuple[float, float, float]]:
        """(t, entries, exits) of ``segment`` in the ``step`` seconds before each t."""
        found = await self.range(MOVES.format(window=int(max(step, 1.0))), start, end, step, ("segment", "direction"))
        entries = dict(found.get((segment, "entered"), []))
        exits = dict(found.get((segment, "exited"), []))
        return [(t, entries.get(t, 0.0), exits.get(t, 0.0)) for t in sorted(set(entries) | set(exits))]
