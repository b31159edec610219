"""Contact caps: how many sends a rolling window allows, globally and per channel, and when it opens again.

A send counts in a window of length W at instant s when its ``send_at`` is after s − W (sends
deferred into the future count from the moment they are decided). ``per_day`` is a 24 h window,
``per_week`` 7 × 24 h. A full window opens again when enough of its sends have left it: with n
sends in it and a limit L, at the (n − L + 1)-th oldest send's ``send_at`` + W.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from microseg.segments.ruleset import ContactPolicy

__all__ = ["DAY", "WEEK", "opening", "blocked_until", "Send"]

DAY = 86_400.0
WEEK = 7 * DAY

Send = tuple[float, str, str]
"""``(send_at, message, channel)``; the channel is ``""`` for sends stored before channels were."""


def opening(times: Sequence[float], limit: int | None, window: float, s: float) -> float | None:
    """None when fewer than ``limit`` of ``times`` are in the window at ``s``; else the instant the
    window opens again (``inf`` for a limit of 0)."""
    if limit is None:
        return None
    inside = sorted(x for x in times if x > s - window)
    if len(inside) < limit:
        return None
    if limit <= 0:
        return math.inf
    return inside[len(inside) - limit] + window


def _latest(*found: float | None) -> float | None:
    late = [f for f in found if f is not None]
    return max(late) if late else None


def blocked_until(policy: ContactPolicy, sends: Sequence[Send], s: float, channel: str | None) -> float | None:
    """None when a send at ``s`` (on ``channel``; None: the global caps only) is within every cap;
    else when the caps next allow it."""
    every = [x for x, _, _ in sends]
    found = _latest(opening(every, policy.per_day, DAY, s), opening(every, policy.per_week, WEEK, s))
    if channel is not None and policy.channel_caps:
        per_day, per_week = policy.channel_cap(channel)
        if per_day is not None or per_week is not None:
            mine = [x for x, _, c in sends if c == channel]
            found = _latest(found, opening(mine, per_day, DAY, s), opening(mine, per_week, WEEK, s))
    return found
