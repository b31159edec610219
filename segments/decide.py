"""Next-best-message: the right message, on the right channel, at the right time — or a reason not to.

Eligible messages are tried by priority (then id). Gates, in order, each with its suppression
reason (counted in metrics, shown by explain):

1. ``stale`` — the decision could not be sent before it expires: ``expires_at`` is the first
   instant it could have been sent (its time, after quiet hours when they defer) + ``valid_for``,
   and the earliest send is the later of its time and the processing clock ``now``. So history,
   backfills and restarts never produce sends for the past. Try the next message.
2. ``consent`` — no channel of the message (``preferred``: every messaging channel by engagement)
   may be used under the policy's consent mode. Try the next message.
3. ``cooldown`` — the same message was sent less than ``cooldown`` ago. Try the next message.
4. ``cap`` — the global caps, or the caps of every permitted channel, are full: nothing more is
   sent now.
5. ``quiet`` — the send time falls in quiet hours and the message (``on_quiet``) or the policy
   says ``suppress``; ``defer`` moves ``send_at`` to their end. Nothing more is sent.
6. ``global_holdout``, ``holdout`` — the customer is in the policy's global control group or the
   message's: the decision is complete (channel, ``send_at``, variant) but goes to the holdout
   records (topic ``message-holdouts``), never to ``next-best-messages``; no substitute.

A decision held back by consent, cooldown or (with ``on_cap: defer``) a cap stays *pending* until
it expires: it is re-decided at the instant its cooldown ends or its cap window opens (a wake-up,
``pending_wake``) and at every evaluation of the customer (so a consent granted later releases
it), only for the pending messages, with the same deterministic ids in the worker and in replay.

Pure: ``now`` (the processing clock: the wall clock in the worker, ``--now`` in replay) is passed
in. Every decision has ``send_at`` ≥ max(its ``at``, ``now``) and ``expires_at`` ≥ ``send_at``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from microseg.segments.bandit import EMPTY_SNAPSHOT, choose_variant, snapshot_at
from microseg.segments.changes import stable_id
from microseg.segments.messages.caps import WEEK, Send, blocked_until
from microseg.segments.messages.channels import FALLBACK_CHANNEL, permitted, preferred_order
from microseg.segments.messages.holdouts import in_global_holdout, in_holdout
from microseg.segments.messages.timing import best_hour_at, quiet_until
from microseg.segments.ruleset import Message, RuleSet
from microseg.segments.view import iso

__all__ = ["Decision", "decide", "in_holdout", "in_global_holdout", "quiet_until", "pending_wake", "FALLBACK_CHANNEL", "REASONS"]

REASONS = ("stale", "consent", "cooldown", "cap", "quiet", "global_holdout", "holdout")
"""Every suppression reason, in gate order."""


@dataclass(slots=True, init=False)
class Decision:
    """What ``decide`` concluded: at most one message to send (or one holdout record), the ones held
    back, the contact history after it and the pending decisions (message id -> ``[expires_at,
    due, reason]``, ``due`` the instant to re-decide, 0 when only an event can release it)."""

    message: dict[str, Any] | None
    holdout: dict[str, Any] | None
    suppressed: tuple[dict[str, Any], ...]
    sends: tuple[tuple[float, str, str], ...]
    last_sent: Mapping[str, float]
    pending: dict[str, list[Any]]

    def __init__(
        self,
        message: dict[str, Any] | None = None,
        suppressed: tuple[dict[str, Any], ...] = (),
        sends: tuple[tuple[float, str, str], ...] = (),
        last_sent: Mapping[str, float] | None = None,
        holdout: dict[str, Any] | None = None,
        pending: dict[str, list[Any]] | None = None,
    ) -> None:
        """Written out rather than generated: a compiled ``__init__`` is several times faster."""
        self.message = message
        self.holdout = holdout
        self.suppressed = suppressed
        self.sends = sends
        self.last_sent = {} if last_sent is None else last_sent
        self.pending = {} if pending is None else pending


def pending_wake(pending: Mapping[str, list[Any]]) -> float | None:
    """The earliest instant a pending decision is due for a re-decision (None: none is timed)."""
    best = math.inf
    for entry in pending.values():
        due = entry[1]
        if 0 < due < best:
            best = due
    return None if best == math.inf else best


def with_pending_wake(wake: float | None, pending: Mapping[str, list[Any]]) -> float | None:
    """The customer's next wake-up: the rules' (``segments.timeline``) or a pending decision's, the earlier."""
    due = pending_wake(pending)
    return wake if due is None or (wake is not None and wake <= due) else due


def redecide_now(pending: Mapping[str, list[Any]], t: float, dirty: frozenset[str] | None) -> bool:
    """Whether an evaluation at ``t`` that read the DNA names ``dirty`` (None: all) can release a
    pending decision: one is due (its cooldown ended, its cap window opened), it has expired (to
    drop it), or consent may have changed for one held by consent."""
    for expires, due, reason in pending.values():
        if (0 < due <= t) or expires < t:
            return True
        if reason == "consent" and (dirty is None or "consented" in dirty or "unsubscribed" in dirty):
            return True
    return False


def _eligible(ruleset: RuleSet, segments: tuple[str, ...], ctx: Any) -> list[tuple[Message, list[str]]]:
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


def _variant(message: Message, posterior: Any, t: float, seed_key: str) -> tuple[str | None, str | None]:
    """The variant to send and the version of the posterior snapshot it was chosen from: Thompson
    sampling (``segments.bandit``) on the snapshot in force at event time ``t`` of the host's
    posterior (``Core.posterior``), the uniform prior (``EMPTY_SNAPSHOT``) without one."""
    if not message.variants:
        return None, None
    snapshot = snapshot_at(posterior, t) or EMPTY_SNAPSHOT
    return choose_variant(snapshot, message.id, message.variants, seed_key), snapshot.version


def _sends(sends: list[list[Any]], t: float) -> tuple[Send, ...]:
    """Sends of the last 7 days before ``t`` (or later), as ``(send_at, message, channel)``."""
    return tuple((float(s[0]), str(s[1]), str(s[2]) if len(s) > 2 else "") for s in sends if s[0] > t - WEEK)


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
    now: float | None = None,
    pending: Mapping[str, list[Any]] | None = None,
    only_pending: bool = False,
    posterior: Any = None,
) -> Decision:
    """Pick at most one message for a customer at instant ``t`` (epoch seconds); pure, history
    passed in and out. ``now``: the processing clock (None or not finite: ``t``). ``pending``: the
    decisions held before; ``only_pending``: re-decide those only (a wake-up or an event that
    changed no membership). A pending decision held again for the reason it was held for is not
    reported again (one suppression per reason, not one per evaluation)."""
    clock = t if now is None or not math.isfinite(now) or now < t else now
    recent = _sends(sends, t)
    before = {} if pending is None else pending
    candidates = _eligible(ruleset, segments, ctx)
    if only_pending:
        candidates = [pair for pair in candidates if pair[0].id in before]
    kept: dict[str, list[Any]] = {m.id: before[m.id] for m, _ in candidates if m.id in before and before[m.id][0] >= clock}
    if not candidates:
        return Decision(sends=recent, last_sent=last_sent, pending=kept)
    policy = ruleset.policy
    dna = ctx.dna
    timezone = dna.timezone
    at = iso(t)
    held: list[dict[str, Any]] = []

    def hold(message: Message, reason: str) -> None:
        if not (only_pending and before[message.id][2] == reason):
            held.append(_suppressed(customer_id, message, reason, at))

    for message, matched in candidates:
        mid = message.id
        kept.pop(mid, None)
        on_quiet = message.on_quiet or policy.quiet_action
        if only_pending:
            expires = before[mid][0]
        elif clock - t > message.valid_for_s + 86_400.0:  # stale whatever the quiet hours: skip the time zone work
            hold(message, "stale")
            continue
        else:
            first = quiet_until(policy, t, timezone) if on_quiet == "defer" else None
            expires = (t if first is None else first) + message.valid_for_s
        s = clock
        if s > expires:
            hold(message, "stale")
            continue
        order = preferred_order(policy, dna) if message.channel_order == ("preferred",) else message.channel_order
        allowed = [c for c in order if permitted(policy, dna, c)]
        if not allowed:
            hold(message, "consent")
            kept[mid] = [expires, 0.0, "consent"]
            continue
        previous = last_sent.get(mid)
        if previous is not None and s < previous + message.cooldown_s:
            hold(message, "cooldown")
            due = previous + message.cooldown_s
            if due <= expires:
                kept[mid] = [expires, due, "cooldown"]
            continue
        channel = ""
        opens = math.inf
        for name in allowed:
            until = blocked_until(policy, recent, s, name)
            if until is None:
                channel = name
                break
            opens = min(opens, until)
        if not channel:
            hold(message, "cap")
            if message.on_cap == "defer" and opens <= expires:
                kept[mid] = [expires, opens, "cap"]
            break
        end = quiet_until(policy, s, timezone)
        if end is not None:
            if on_quiet == "suppress":
                hold(message, "quiet")
                break
            s = end
            if s > expires:
                hold(message, "stale")
                continue
        if message.send_at == "best_hour":
            best = best_hour_at(dna.engaged_hours, s, expires, policy, timezone, hours_zone=timezone or "UTC")
            if best is not None:
                s = best
        decision_id = stable_id(customer_id, mid, at, cause)
        variant, posterior_version = _variant(message, posterior, t, decision_id)
        because = f"in {', '.join(matched)}" if matched else f"when: {message.when.source if message.when else ''}"
        record = {
            "decision_id": decision_id,
            "customer_id": customer_id,
            "message": mid,
            "channel": channel,
            "send_at": iso(s),
            "expires_at": iso(expires),
            "segments": matched,
            "reason": f"{because}; priority {message.priority}" + ("; held until now" if only_pending else ""),
            "rules_version": ruleset.version,
            "at": at,
            "cause": cause,
            "variant": variant,
            "posterior_version": posterior_version,
        }
        group = "global_holdout" if in_global_holdout(customer_id, policy.global_holdout) else "holdout" if in_holdout(customer_id, message) else ""
        if group:
            held.append(_suppressed(customer_id, message, group, at))
            record["holdout"] = group
            return Decision(suppressed=tuple(held), sends=recent, last_sent={**last_sent, mid: s}, holdout=record, pending=kept)
        return Decision(
            message=record,
            suppressed=tuple(held),
            sends=recent + ((s, mid, channel),),
            last_sent={**last_sent, mid: s},
            pending=kept,
        )
    return Decision(suppressed=tuple(held), sends=recent, last_sent=last_sent, pending=kept)
