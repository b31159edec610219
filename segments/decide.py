"""Next-best-message: the right message, on the right channel, at the right time — or a reason not to.

Eligible messages are tried by priority (then id). Gates, in order: holdout (the customer is in
the message's deliberate control group: nothing is sent, no substitute), consent and cooldown
(skip to the next message), caps (nothing more may be sent), quiet hours (``send_at`` moves to
their end in the customer's time zone, or the decision is dropped when the policy says
``suppress``). Every skip is reported with its reason so it can be counted and explained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from hashlib import blake2b
from typing import Any
from zoneinfo import ZoneInfo

from microseg.segments.changes import stable_id
from microseg.segments.ruleset import ContactPolicy, Message, RuleSet
from microseg.segments.view import iso

__all__ = ["Decision", "decide", "in_holdout", "quiet_until", "FALLBACK_CHANNEL"]

FALLBACK_CHANNEL = "email"
_DAY = 86_400.0
_WEEK = 7 * _DAY


@dataclass(slots=True, init=False)
class Decision:
    """What ``decide`` concluded: at most one message to send, and the ones held back."""

    message: dict[str, Any] | None
    suppressed: tuple[dict[str, Any], ...]
    sends: tuple[tuple[float, str], ...]
    last_sent: Mapping[str, float]

    def __init__(
        self,
        message: dict[str, Any] | None = None,
        suppressed: tuple[dict[str, Any], ...] = (),
        sends: tuple[tuple[float, str], ...] = (),
        last_sent: Mapping[str, float] | None = None,
    ) -> None:
        """Written out rather than generated: a compiled ``__init__`` is several times faster."""
        self.message = message
        self.suppressed = suppressed
        self.sends = sends
        self.last_sent = {} if last_sent is None else last_sent


def in_holdout(customer_id: str, message: Message) -> bool:
    """Stable per customer and message, so the control group does not churn between events."""
    if message.holdout <= 0:
        return False
    digest = blake2b(f"{customer_id}\x1f{message.id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < message.holdout


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None


def quiet_until(policy: ContactPolicy, t: float, timezone: str | None) -> float | None:
    """End of the quiet period containing ``t`` (epoch seconds), or None if ``t`` is not quiet."""
    start, end = policy.quiet_start_min, policy.quiet_end_min
    if start is None or end is None or start == end:
        return None
    zone = _zone(timezone or policy.default_timezone) or _zone("UTC")
    local = datetime.fromtimestamp(t, zone)
    minute = local.hour * 60 + local.minute
    quiet = start <= minute < end if start < end else minute >= start or minute < end
    if not quiet:
        return None
    day = local.date() if minute < end else local.date() + timedelta(days=1)
    naive = datetime(day.year, day.month, day.day, end // 60, end % 60)
    return naive.replace(tzinfo=zone).timestamp()


def _eligible(ruleset: RuleSet, segments: tuple[str, ...], ctx: Mapping[str, Any]) -> list[tuple[Message, list[str]]]:
    current = set(segments)
    found = []
    for message in ruleset.messages:
        matched = [s for s in message.segments if s in current]
        if matched or (message.when is not None and message.when.fn(ctx) is True):
            found.append((message, matched))
    found.sort(key=lambda pair: (-pair[0].priority, pair[0].id))
    return found


def _suppressed(customer_id: str, message: Message, reason: str, at: str) -> dict[str, Any]:
    return {"customer_id": customer_id, "message": message.id, "reason": reason, "at": at}


def decide(
    ruleset: RuleSet,
    ctx: Any,
    *,
    customer_id: str,
    segments: tuple[str, ...],
    sends: list[list[Any]],
    last_sent: Mapping[str, float],
    t: float,
    cause: str,
) -> Decision:
    """Pick at most one message for a customer at instant ``t``; pure, history passed in and out."""
    candidates = _eligible(ruleset, segments, ctx)
    recent = tuple((float(s), str(m)) for s, m in sends if s > t - _WEEK)
    if not candidates:
        return Decision(sends=recent, last_sent=dict(last_sent))
    policy = ruleset.policy
    at = iso(t)
    held: list[dict[str, Any]] = []
    for message, matched in candidates:
        if in_holdout(customer_id, message):
            held.append(_suppressed(customer_id, message, "holdout", at))
            break
        channel = message.channel
        if channel == "preferred":
            channel = ctx["preferred_channel"] or FALLBACK_CHANNEL
        if not ctx.consented(channel):
            held.append(_suppressed(customer_id, message, "consent", at))
            continue
        previous = last_sent.get(message.id)
        if previous is not None and t < previous + message.cooldown_s:
            held.append(_suppressed(customer_id, message, "cooldown", at))
            continue
        day_count = sum(1 for s, _ in recent if s > t - _DAY)
        if (policy.per_day is not None and day_count >= policy.per_day) or (
            policy.per_week is not None and len(recent) >= policy.per_week
        ):
            held.append(_suppressed(customer_id, message, "cap", at))
            break
        send_t = t
        end = quiet_until(policy, t, ctx.dna.timezone)
        if end is not None:
            if policy.quiet_action == "suppress":
                held.append(_suppressed(customer_id, message, "quiet", at))
                break
            send_t = end
        because = f"in {', '.join(matched)}" if matched else f"when: {message.when.source if message.when else ''}"
        record = {
            "decision_id": stable_id(customer_id, message.id, at, cause),
            "customer_id": customer_id,
            "message": message.id,
            "channel": channel,
            "send_at": iso(send_t),
            "segments": matched,
            "reason": f"{because}; priority {message.priority}",
            "rules_version": ruleset.version,
            "at": at,
            "cause": cause,
        }
        return Decision(
            message=record,
            suppressed=tuple(held),
            sends=recent + ((send_t, message.id),),
            last_sent={**last_sent, message.id: send_t},
        )
    return Decision(suppressed=tuple(held), sends=recent, last_sent=dict(last_sent))
