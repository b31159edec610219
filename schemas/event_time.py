"""The ``ts`` of an input event: leap seconds, and what is wrong with a time that was refused.

``ts`` is an RFC 3339 date-time with a UTC offset (``Z`` or ``±hh:mm``), read as pydantic reads
it: ``t``/``z`` in lower case and a space for ``T`` are accepted (RFC 3339 allows both),
fractional seconds of any length are cut to microseconds. A leap second (``23:59:60Z``, or the
same instant with an offset) is clamped to ``23:59:59.999999Z`` of that UTC day, so it stays on
its day and before the next one's midnight; ``:60`` anywhere else is refused. A refused ``ts``
gets a reason that names its problem (``ts_problem``), not the parser's first complaint.
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta, timezone

__all__ = ["leap_second", "ts_problem"]

_TS_EXAMPLE = "an RFC 3339 time such as '2026-03-01T09:00:00Z' or '2026-03-01T10:00:00+01:00'"
_LEAP = re.compile(r"(\d{4}-\d{2}-\d{2}[Tt _]\d{2}:\d{2}):60(?:\.\d+)?([Zz]|[+-]\d{2}:?\d{2})")
_DATE = re.compile(r"([0-9]+)-([0-9]+)-([0-9]+)")
_TIME = re.compile(r"([0-9]+):([0-9]+)(?::([0-9]+))?")
_OFFSET = re.compile(r"[+-]([0-9]{2}):?([0-9]{2})")


def leap_second(text: str) -> str | None:
    """``text`` with a leap second (second 60) in the last minute of a UTC day, as the last
    microsecond of that day in UTC; None for anything else (decoded, or refused, as it is)."""
    match = _LEAP.fullmatch(text)
    if match is None:
        return None
    try:
        minute = datetime.fromisoformat(f"{match.group(1)}:00{match.group(2).upper()}")
    except ValueError:
        return None
    utc = minute.astimezone(timezone.utc)
    if (utc.hour, utc.minute) != (23, 59):
        return None
    return (utc + timedelta(seconds=59, microseconds=999_999)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ts_problem(text: str) -> str | None:
    """What is wrong with a ``ts`` text pydantic refused, in words; None if nothing is found here
    (the parser's own message is used then). Checked part by part, in reading order."""
    if not text.strip():
        return f"is empty; expected {_TS_EXAMPLE}"
    if text != text.strip():
        return "has spaces before or after it"
    date = _DATE.match(text)
    if date is None:
        if text.lstrip("+-").replace(".", "", 1).isdigit():
            return f"is a number in a string; expected {_TS_EXAMPLE}"
        return f"does not start with a date YYYY-MM-DD; expected {_TS_EXAMPLE}"
    year_text, month_text, day_text = date.groups()
    if len(year_text) != 4:
        return f"year {year_text} must have 4 digits (YYYY-MM-DD)"
    if len(month_text) != 2 or len(day_text) != 2:
        return "month and day must have 2 digits each (YYYY-MM-DD)"
    year, month, day = int(year_text), int(month_text), int(day_text)
    if not 1 <= month <= 12:
        return f"month {month_text} is not 01..12"
    days = calendar.monthrange(max(year, 1), month)[1]
    if not 1 <= day <= days:
        return f"day {day_text} does not exist: {year_text}-{month_text} has {days} days"
    if not 1990 <= year < 2100:
        return f"year {year_text} is outside 1990..2100"
    rest = text[date.end():]
    if not rest:
        return "is a date without a time of day and UTC offset; expected e.g. '2026-03-01T09:00:00Z'"
    if rest[0] not in "Tt _":
        return f"expected 'T' between the date and the time, found {rest[0]!r}"
    clock = _TIME.match(rest, 1)
    if clock is None:
        return "the time of day must be hh:mm:ss after the 'T'"
    hour, minute, second = clock.groups()
    if len(hour) != 2 or len(minute) != 2 or (second is not None and len(second) != 2):
        return "hours, minutes and seconds must have 2 digits each (hh:mm:ss)"
    if int(hour) > 23:
        return f"hour {hour} is not 00..23" + ("; the end of a day is 00:00:00 of the next" if hour == "24" else "")
    if int(minute) > 59:
        return f"minute {minute} is not 00..59"
    if second == "60":
        return "second 60 (a leap second) is accepted only in the last minute of a UTC day (23:59:60Z, or that instant with an offset)"
    if second is not None and int(second) > 59:
        return f"second {second} is not 00..59"
    rest = rest[clock.end():]
    if rest[:1] == ".":
        digits = len(rest) - len(rest[1:].lstrip("0123456789")) - 1
        if digits == 0:
            return "has a '.' with no digits after it (fractional seconds)"
        rest = rest[1 + digits:]
    if not rest:
        return "has no UTC offset; end it with 'Z' (UTC) or an offset such as '+01:00'"
    if rest in ("Z", "z"):
        return None
    offset = _OFFSET.match(rest)
    if offset is None:
        if rest[0] in "+-":
            return f"UTC offset {rest!r} must be ±hh:mm"
        if rest[0] in "Zz":
            return f"unexpected text {rest[1:]!r} after the UTC offset"
        return f"expected the UTC offset ('Z' or ±hh:mm) after the time, found {rest!r}"
    if int(offset.group(1)) > 23 or int(offset.group(2)) > 59:
        return f"UTC offset {offset.group(0)} is out of range (-23:59..+23:59)"
    if offset.end() != len(rest):
        return f"unexpected text {rest[offset.end():]!r} after the UTC offset"
    return None
