"""Messaging channels: which ones a customer may be messaged on, and which one they engage with most.

Only the policy's messaging channels (``ContactPolicy.channels``: email, sms, push, in_app,
whatsapp unless configured) carry messages; ``app``, ``web`` or ``store`` are where customers
act, not where they can be reached. Consent is per channel: ``opt_in`` (the default) needs a
``consent_changed`` grant; ``opt_out`` allows a channel until consent is revoked or the customer
unsubscribes from it (docs/dna.md, *channels*).
"""

from __future__ import annotations

from microseg.segments.dna_record import Dna
from microseg.segments.ruleset import ContactPolicy

__all__ = ["permitted", "engagement", "preferred_order", "FALLBACK_CHANNEL"]

FALLBACK_CHANNEL = "email"
"""Tried first among equally engaged channels when nothing is known (and listed as messaging)."""


def permitted(policy: ContactPolicy, dna: Dna, channel: str) -> bool:
    """Whether ``channel`` may carry a message to this customer under the policy's consent mode.

    ``dna.consent`` holds signed instants (positive: granted then; negative: revoked then) and
    ``dna.unsubscribed`` the instant of an unsubscribe still in force (positive)."""
    mode = policy.consent if not policy.consent_by_channel else policy.consent_mode(channel)
    if mode == "opt_out":
        return dna.consent.get(channel, 0.0) >= 0.0 and dna.unsubscribed.get(channel, -1.0) <= 0.0
    return dna.consent.get(channel, -1.0) > 0.0


def engagement(dna: Dna, channel: str) -> int:
    """Opens and clicks of campaigns on ``channel`` plus the activity events seen on it (all history)."""
    counts = dna.campaigns.get(channel)
    score = dna.channel_uses.get(channel, 0)
    if counts is not None:
        score += counts[1] + counts[2]
    return score


def preferred_order(policy: ContactPolicy, dna: Dna) -> tuple[str, ...]:
    """``channel: preferred`` as an ordered list: the customer's declared preferred channel when it
    is a messaging channel, then the messaging channels by engagement (most first; ties: email
    first, then the policy's order). The decision takes the first one it may use."""
    channels = policy.channels
    declared = dna.preferred_channel
    ranked = sorted(
        channels,
        key=lambda c: (c != declared, -engagement(dna, c), c != FALLBACK_CHANNEL, channels.index(c)),
    )
    return tuple(ranked)
