"""Membership diffs as segment-change records with deterministic ids (CONTRACT §4).

The id hashes what identifies a change — customer, segment, direction, instant, cause — so
a replay, or a worker reprocessing a batch after a crash, produces the same ids again and
consumers can drop duplicates.
"""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

from microseg.segments.view import iso

__all__ = ["diff", "stable_id", "MICRO"]

MICRO = "micro"


def stable_id(*parts: str) -> str:
    return blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


def _record(customer_id: str, segment: str, change: str, at: str, cause: str, version: str) -> dict[str, Any]:
    return {
        "change_id": stable_id(customer_id, segment, change, at, cause),
        "customer_id": customer_id,
        "segment": segment,
        "change": change,
        "at": at,
        "cause": cause,
        "rules_version": version,
    }


def diff(
    customer_id: str,
    before: tuple[str, ...],
    after: tuple[str, ...],
    code_before: str | None,
    code_after: str | None,
    *,
    t: float,
    cause: str,
    rules_version: str,
) -> list[dict[str, Any]]:
    """Exits first, then entries, then the micro move: the order consumers apply them in."""
    if before == after and code_before == code_after:
        return []
    at = iso(t)
    old, new = set(before), set(after)
    records = [_record(customer_id, s, "exited", at, cause, rules_version) for s in before if s not in new]
    records += [_record(customer_id, s, "entered", at, cause, rules_version) for s in after if s not in old]
    if code_before != code_after:
        move = _record(customer_id, MICRO, "moved", at, cause, rules_version)
        move["change_id"] = stable_id(customer_id, MICRO, code_before or "", code_after or "", at, cause)
        move["from"] = code_before
        move["to"] = code_after
        records.append(move)
    return records
