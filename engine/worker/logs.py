"""Repeated log lines, at most one per kind per window.

A worker that loses its broker hears about it from every client at once (the input consumer, the
producer, Faust's own consumer and producer), each retrying several times a second: about 85
error lines a second, which bury the one line that says what happened. ``RepeatFilter`` lets the
first line of a kind through, drops the repeats for ``window`` seconds, and the next line of that
kind after the window says how many were dropped. A kind is the logger, the level and the message
template with its numbers blanked (so ``node 1`` and ``node 2`` are one kind).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

__all__ = ["RepeatFilter", "install_repeat_filter"]

_NUMBER = re.compile(r"\d+")


class RepeatFilter(logging.Filter):
    """At most one record per kind per ``window`` seconds, for records at ``level`` or above."""

    def __init__(self, window: float = 10.0, level: int = logging.WARNING, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.level = level
        self.clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, int, str], list[float | int]] = {}
        """kind -> [instant of the last line let through, repeats dropped since]"""

    @staticmethod
    def kind(record: logging.LogRecord) -> tuple[str, int, str]:
        return record.name, record.levelno, _NUMBER.sub("#", str(record.msg))[:300]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        key = self.kind(record)
        now = self.clock()
        with self._lock:
            seen = self._kinds.get(key)
            if seen is not None and now - seen[0] < self.window:
                seen[1] = int(seen[1]) + 1
                return False
            dropped = int(seen[1]) if seen is not None else 0
            self._kinds[key] = [now, 0]
            if len(self._kinds) > 10_000:  # bounded: kinds not seen for a window are forgotten
                self._kinds = {k: v for k, v in self._kinds.items() if now - v[0] < self.window}
        if dropped:
            record.msg = f"{record.msg} [{dropped} more like this in the last {now - float(seen[0]):.0f} s not logged]"  # type: ignore[index]
        return True


def install_repeat_filter(window: float = 10.0) -> RepeatFilter:
    """Put one ``RepeatFilter`` on every handler of the root logger (where every library's records end)."""
    found = RepeatFilter(window)
    for handler in logging.getLogger().handlers:
        for existing in [f for f in handler.filters if isinstance(f, RepeatFilter)]:
            handler.removeFilter(existing)
        handler.addFilter(found)
    return found
