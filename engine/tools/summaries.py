"""How the tools tell a person what a run did: counts by kind as words, and the summary of a replay.

A count by kind reads ``cap 12, cooldown 5, quiet 3`` (largest first, then by name), or ``none``,
never a Python dict. Numbers have thousands separators. ``--json`` options print the same
figures as one JSON object for programs instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["counted", "counts_text", "replay_summary_lines"]


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 customer``, ``0 customers``, ``1,234 customers``: the number with thousands separators
    and the noun in the singular for exactly one (``plural``: default ``noun`` + ``s``)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def counts_text(counts: Mapping[str, int], *, limit: int = 10, empty: str = "none") -> str:
    """``kind n, kind n, ...`` for the non-zero counts, largest first (ties by name); at most
    ``limit`` kinds, then ``and k more kinds`` (``1 more kind``); ``empty`` when nothing was counted."""
    found = sorted(((kind, n) for kind, n in counts.items() if n), key=lambda item: (-item[1], str(item[0])))
    if not found:
        return empty
    text = ", ".join(f"{kind} {n:,}" for kind, n in found[:limit])
    if len(found) > limit:
        text += f" and {counted(len(found) - limit, 'more kind')}"
    return text


def replay_summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """The lines ``microseg replay`` prints after a run, from its ``--json`` summary's fields
    (``lines``, ``events``, ``rejected``, ``duplicates``, ``changes``, ``messages``, ``suppressed``,
    ``customers``, ``seconds``, ``events_per_s``, ``state_bytes_*``, ``rules_version``, ``model``)."""
    rate = summary.get("events_per_s")
    return [
        f"{counted(summary['lines'], 'line')}: {counted(summary['events'], 'event')}, {summary['rejected']:,} rejected, "
        f"{counted(summary['duplicates'], 'duplicate')}",
        f"{counted(summary['changes'], 'segment change')}, {counted(summary['messages'], 'message')}; held back: {counts_text(summary.get('suppressed') or {})}",
        f"{counted(summary['customers'], 'customer')}; state bytes mean {summary['state_bytes_mean']:,}, "
        f"median {summary['state_bytes_p50']:,}, max {summary['state_bytes_max']:,}",
        f"{summary['seconds']:.2f} s ({'-' if rate is None else f'{rate:,}'} lines/s); rules {summary['rules_version']}, model {summary['model']}",
    ]
