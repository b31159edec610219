"""The bench's progress: a rich bar per phase on a terminal, and the seconds each phase took."""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["PhaseProgress"]


class PhaseProgress:
    """A rich progress bar on a terminal (stderr); silent otherwise. ``seconds`` maps each phase
    (the description up to its first colon) to the wall seconds spent in it."""

    def __init__(self, enabled: bool) -> None:
        self._bar = None
        self._task: Any = None
        self._current: tuple[str, float] | None = None
        self.seconds: dict[str, float] = {}
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._bar.start()

    def phase(self, description: str, total: float | None) -> None:
        now = time.perf_counter()
        if self._current is not None:
            name, since = self._current
            self.seconds[name] = round(self.seconds.get(name, 0.0) + now - since, 2)
        self._current = (description.split(":")[0], now)
        if self._bar is None:
            return
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total)

    def update(self, completed: float) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=completed)

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
