"""When a message may be sent: quiet hours in the customer's time zone, and the best local hour.

Instants are epoch seconds; local times come from the IANA zone of the customer (``timezone``),
else the policy's ``default_timezone``, else UTC, through ``zoneinfo``, so daylight-saving
changes move the UTC instant of a local hour (09:00 in New York is 14:00Z in winter, 13:00Z in
summer). A local hour that does not exist on a spring-forward day is taken after the change
(02:00 → 03:00 in Europe/Paris); one that happens twice on a fall-back day, the first time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from microseg.segments.ruleset import ContactPolicy

__all__ = ["zone", "quiet_until", "best_hour_at", "local_hour"]


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None


def zone(policy: ContactPolicy, timezone: str | None) -> ZoneInfo:
    """The customer's zone, else the policy's default, else UTC."""
    found = _zone(timezone or policy.default_timezone) or _zone("UTC")
    assert found is not None
    return found


def local_hour(t: float, tz: ZoneInfo) -> int:
    """The local hour of day (0-23) of instant ``t``."""
    return datetime.fromtimestamp(t, tz).hour


def quiet_until(policy: ContactPolicy, t: float, timezone: str | None) -> float | None:
    """End of the quiet period containing ``t`` (epoch seconds), or None if ``t`` is not quiet."""
    start, end = policy.quiet_start_min, policy.quiet_end_min
    if start is None or end is None or start == end:
        return None
    tz = zone(policy, timezone)
    local = datetime.fromtimestamp(t, tz)
    minute = local.hour * 60 + local.minute
    quiet = start <= minute < end if start < end else minute >= start or minute < end
    if not quiet:
        return None
    day = local.date() if minute < end else local.date() + timedelta(days=1)
    naive = datetime(day.year, day.month, day.day, end // 60, end % 60)
    return naive.replace(tzinfo=tz).timestamp()


def best_hour_at(
    hours: Sequence[int] | None, start: float, end: float, policy: ContactPolicy, timezone: str | None, *, hours_zone: str | None = None
) -> float | None:
    """The first instant in ``[start, end]`` in the customer's most-engaged local hour that is not
    in quiet hours, or None (no engagement known, or no such instant: the caller sends at ``start``).

    ``hours``: engagement counts by local hour of day (24 numbers, ``Dna.engaged_hours``), in the
    zone ``hours_zone`` (default: the customer's, as quiet hours use it). Hours are tried from the
    most engaged (ties: the earlier hour); for each, ``start`` itself when it falls in that hour,
    else the top of that hour on the following local days, up to ``end``.
    """
    if not hours or not any(hours) or end < start:
        return None
    tz = zone(policy, timezone) if hours_zone is None else (_zone(hours_zone) or zone(policy, timezone))
    first = datetime.fromtimestamp(start, tz)
    days = int((end - start) // 86_400) + 2
    for hour in sorted((h for h in range(min(24, len(hours))) if hours[h] > 0), key=lambda h: (-hours[h], h)):
        if first.hour == hour and quiet_until(policy, start, timezone) is None:
            return start
        for offset in range(days + 1):
            day = first.date() + timedelta(days=offset)
            at = datetime(day.year, day.month, day.day, hour).replace(tzinfo=tz).timestamp()
            if at > end:
                break
            if at > start and quiet_until(policy, at, timezone) is None:
                return at
    return None
