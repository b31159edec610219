"""What every console page reads: the worker's runtime and settings, the access checks, the
population snapshots and the throughput samples (and the tasks that take them), the census of
stored customers and, when configured, Prometheus.

One ``Console`` per worker, made when the console is mounted; its two tasks start and stop with
the worker's web server (the console application's startup and cleanup signals).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from microseg.engine.console import readings
from microseg.engine.console.access import Access
from microseg.engine.console.census import Census
from microseg.engine.console.history import History, Snapshot
from microseg.engine.console.prometheus import Prometheus
from microseg.engine.console.session import Sessions
from microseg.engine.settings import Settings
from microseg.engine.worker.auth import Guard

__all__ = ["Console", "RECENT_S"]

log = logging.getLogger(__name__)

RECENT_S = 5.0
"""How often the ops page's throughput samples are taken (kept for 30 minutes, in memory)."""


class Console:
    """The console's state: the worker's runtime, settings, the access checks and the histories."""

    def __init__(self, settings: Settings, runtime: Any, bootstrap: str, guard: Guard, prefix: str) -> None:
        self.settings = settings
        self.runtime = runtime
        self.bootstrap = bootstrap
        self.sessions = Sessions(settings.api_token, settings.read_token)
        self.access = Access(guard, self.sessions, prefix, lambda reason: runtime.metrics.api_refused.labels(reason=reason).inc())
        self.history = History(settings.console_snapshots, Path(settings.data_dir) / "console" / "snapshots.json")
        self.recent = History(int(1800 / RECENT_S))
        self.census = Census(runtime)
        self.prometheus = Prometheus(settings.console_prometheus_url) if settings.console_prometheus_url else None
        self.candidates_root = settings.console_candidates_dir or Path(settings.data_dir) / "candidates"
        self._tasks: list[asyncio.Task[None]] = []

    # -- snapshots --------------------------------------------------------------------------

    def now(self) -> Snapshot:
        """The worker's segments at this instant, shaped like a stored snapshot (not stored)."""
        metrics = self.runtime.metrics
        moves = {(s, d): n for (s, d), n in readings.by_labels(metrics.transitions, "segment", "direction").items()}
        return Snapshot(
            time.time(), self.runtime.segment_populations(),
            {s: int(n) for (s, d), n in moves.items() if d == "entered"}, {s: int(n) for (s, d), n in moves.items() if d == "exited"},
            int(readings.total(metrics.events)), self.runtime.ruleset.version,
        )

    def _take(self, history: History) -> None:
        now = self.now()
        moves = {**{(s, "entered"): n for s, n in now.entries.items()}, **{(s, "exited"): n for s, n in now.exits.items()}}
        history.take(now.t, now.populations, moves, now.events, now.rules_version)

    async def _snapshots(self) -> None:
        """A snapshot once the worker is ready (or after one interval), then one every interval."""
        interval = self.settings.console_snapshot_s
        waited = 0.0
        while waited < interval and not self.runtime.readiness()[0]:
            await asyncio.sleep(1.0)
            waited += 1.0
        while True:
            try:
                self._take(self.history)
            except Exception:  # noqa: BLE001 - a snapshot lost is a gap in a chart, never a crash
                log.warning("console snapshot failed", exc_info=True)
            await asyncio.sleep(interval)

    async def _recent(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self._take(self.recent)
            await asyncio.sleep(RECENT_S)

    async def start(self, app: web.Application) -> None:
        self._tasks = [asyncio.ensure_future(self._snapshots()), asyncio.ensure_future(self._recent())]

    async def stop(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
