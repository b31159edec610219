"""Control groups: a message's ``holdout`` share and the policy's ``global_holdout`` share.

Membership is a hash of the customer id (and the message id for a message's holdout), compared
with the share: stable for a customer across events, restarts, workers and rule versions (the
rule set's version is not hashed), and growing a share only adds customers to the group.
"""

from __future__ import annotations

from hashlib import blake2b

from microseg.segments.ruleset import Message

__all__ = ["in_holdout", "in_global_holdout"]

_SCALE = 2.0**64


def _share(text: str) -> float:
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "big") / _SCALE


def in_holdout(customer_id: str, message: Message) -> bool:
    """The customer is in ``message``'s control group."""
    return message.holdout > 0 and _share(f"{customer_id}\x1f{message.id}") < message.holdout


def in_global_holdout(customer_id: str, share: float) -> bool:
    """The customer is in the share kept out of every message."""
    return share > 0 and _share(f"{customer_id}\x1fglobal_holdout") < share
