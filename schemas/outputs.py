"""Output records (docs/dna.md, "Output records"): what consumers of the output topics receive.

The core builds these records as plain dicts for speed (``segments.changes``,
``segments.decide``); these models are their published shape, exported as JSON Schema and
checked against the core's output in the tests.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SegmentChange", "NextBestMessage", "DeadLetter", "SuppressedDecision"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentChange(_Record):
    """One entry or exit; ``segment == "micro"`` is a DNA-code move with ``from``/``to``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    change_id: str = Field(description="Deterministic: the same change replayed gets the same id.")
    customer_id: str | None = Field(description="The customer; null for a record of an anonymous visitor (then anonymous_id).")
    anonymous_id: str | None = Field(default=None, description="Only on records of an anonymous visitor (not identified yet; docs/dna.md, 'Merging two profiles'): its anonymous_id.")
    segment: str
    change: Literal["entered", "exited", "moved"]
    at: str = Field(description="Event time (RFC 3339, UTC) at which the membership changed.")
    cause: str = Field(description="The event_id, 'tick' (time passed), 'rules:<version>' (a rule change) or 'model:<version>' (a new predictive model).")
    rules_version: str
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None


class NextBestMessage(_Record):
    """A decision (docs/dna.md, ``next-best-messages``): on ``next-best-messages`` to send, or, with ``holdout`` set, on
    ``message-holdouts`` for a customer in a control group (same shape; never sent)."""

    decision_id: str = Field(description="Deterministic: the same decision replayed gets the same id.")
    customer_id: str | None = Field(description="The customer; null for a record of an anonymous visitor (then anonymous_id).")
    anonymous_id: str | None = Field(default=None, description="Only on records of an anonymous visitor (not identified yet; docs/dna.md, 'Merging two profiles'): its anonymous_id.")
    message: str
    channel: str = Field(description="A messaging channel the customer may be messaged on (email, sms, push, in_app, whatsapp unless configured).")
    send_at: str = Field(
        description="RFC 3339 UTC instant, never before the processing clock when the decision was made, after quiet hours in the customer's time zone (or at their best hour)."
    )
    expires_at: str = Field(
        description="Do not send after this instant: the first instant the decision could have been sent (its 'at', after quiet hours) + the message's valid_for; send_at <= expires_at."
    )
    segments: list[str]
    reason: str
    rules_version: str
    at: str = Field(description="Event time of the decision.")
    cause: str
    variant: str | None = Field(default=None, description="The chosen variant's id (messages with variants), else null.")
    posterior_version: str | None = Field(default=None, description="The posterior snapshot the variant was chosen from; null for the first variant without one.")
    holdout: Literal["holdout", "global_holdout"] | None = Field(
        default=None, description="Only on message-holdouts: the control group (the message's holdout, or the policy's global_holdout)."
    )


class SuppressedDecision(_Record):
    """A decision held back; counted in metrics and shown by explain, never sent."""

    customer_id: str | None = Field(description="The customer; null for a record of an anonymous visitor (then anonymous_id).")
    anonymous_id: str | None = Field(default=None, description="Only on records of an anonymous visitor (not identified yet; docs/dna.md, 'Merging two profiles'): its anonymous_id.")
    message: str
    reason: Literal["stale", "consent", "cooldown", "cap", "quiet", "global_holdout", "holdout"]
    at: str


class DeadLetter(_Record):
    reason: str
    topic: str
    partition: int | None
    offset: int | None
    raw: str = Field(description="The original record, decoded as UTF-8 with invalid bytes replaced.")
