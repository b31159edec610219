"""The worker's log hygiene: repeated lines cut to one per kind per window, secrets never written.

A worker that loses its broker hears about it from every client at once (the input consumer, the
producer, Faust's own consumer and producer), each retrying several times a second: about 85
error lines a second, which bury the one line that says what happened. ``RepeatFilter`` lets the
first line of a kind through, drops the repeats for ``window`` seconds, and the next line of that
kind after the window says how many were dropped. A kind is the logger, the level and the message
template with its numbers blanked (so ``node 1`` and ``node 2`` are one kind).

``RedactFilter`` is the last line of defence for secrets (docs/security.md): no code logs a token
or a request line on purpose (Faust starts aiohttp with its access log off), but a library's
warning or a traceback might carry one. Every record is formatted, and the configured secrets'
values, whatever follows ``Bearer`` or ``Authorization``, the query string of anything that looks
like a request line or URL path, and the value of a bare ``token=``-like parameter are replaced
before a handler writes it.

``JsonFormatter`` writes each record as one JSON object (``MICROSEG_LOG_FORMAT=json``), for log
collectors that parse lines. In either format a record's text has terminal escape sequences
(colours, cursor moves a library might print) removed: logs go to files and collectors, not to
a terminal that would interpret them.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable

import orjson

from microseg.segments.view import iso

__all__ = [
    "RepeatFilter", "install_repeat_filter", "RedactFilter", "install_redaction", "REDACTED",
    "JsonFormatter", "TextFormatter", "install_format", "TEXT_FORMAT",
]

_NUMBER = re.compile(r"\d+")

REDACTED = "<redacted>"
_BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20|\+)[^\s\"',;]+")
_AUTHORIZATION = re.compile(r"(?i)\b(authorization['\"]?\s*[:=]\s*['\"]?)(?!\s*bearer\b)[^\s\"',;][^\"',;\n]*")
_TOKEN_PARAM = re.compile(r"(?i)\b(access_token|api_token|read_token|token|api_key|apikey|bearer)=[^&\s\"',;]+")
_QUERY = re.compile(r"(?P<path>(?:https?://[^\s/?#\"']+)?/[^\s?#\"']*)\?[^\s#\"']+")
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])|[\x00-\x08\x0b-\x1f\x7f]")
"""ANSI/VT escape sequences (CSI, OSC, two-character ones) and control characters other than tab and newline."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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


class RedactFilter(logging.Filter):
    """Rewrites each record with ``secrets``, bearer credentials and URL query strings replaced by
    ``REDACTED`` (the message is formatted here, once; the traceback text too)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if "?" in text:
            text = _QUERY.sub(lambda m: f"{m['path']}?{REDACTED}", text)
        if "=" in text:
            text = _TOKEN_PARAM.sub(lambda m: f"{m[1]}={REDACTED}", text)
        lowered = text.lower()
        if "bearer" in lowered:
            text = _BEARER.sub(lambda m: f"{m[1]} {REDACTED}", text)
        if "authorization" in lowered:
            text = _AUTHORIZATION.sub(lambda m: f"{m[1]}{REDACTED}", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that does not format is left to the handler's own error path
            return True
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def install_redaction(secrets: Iterable[str] = ()) -> RedactFilter:
    """Put one ``RedactFilter`` first on every handler of the root logger."""
    found = RedactFilter(secrets)
    for handler in logging.getLogger().handlers:
        for existing in [f for f in handler.filters if isinstance(f, RedactFilter)]:
            handler.removeFilter(existing)
        handler.filters.insert(0, found)
    return found


def strip_escapes(text: str) -> str:
    """``text`` without terminal escape sequences and control characters (tab and newline kept)."""
    return _ESCAPES.sub("", text) if ("\x1b" in text or not text.isprintable()) else text


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines (local time, as before), escape sequences removed."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return strip_escapes(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (RFC 3339 UTC, milliseconds, as output records write it),
    ``level``, ``logger``, ``message``, and ``exc`` (the traceback) or ``stack`` when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, str] = {
            "ts": iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": strip_escapes(record.getMessage()),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            body["exc"] = strip_escapes(record.exc_text)
        if record.stack_info:
            body["stack"] = strip_escapes(record.stack_info)
        return orjson.dumps(body).decode()


def install_format(kind: str = "text") -> logging.Formatter:
    """Put a ``JsonFormatter`` (``kind="json"``) or a ``TextFormatter`` on every handler of the root
    logger; Python warnings from then on are logged too (logger ``py.warnings``), so in JSON every
    line the worker writes is one object."""
    formatter: logging.Formatter = JsonFormatter() if kind == "json" else TextFormatter()
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
    logging.captureWarnings(True)
    return formatter
