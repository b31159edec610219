"""The shape of a rule file (CONTRACT §3) as pydantic models: structure checks and JSON Schema.

These models validate structure and scalar types only; expressions, cross references (message ->
segment, unique ids across files) and positions are handled by ``segments.rulefiles``. Editors
can use ``rulefile_json_schema()`` for completion and inline validation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr

__all__ = [
    "ID_PATTERN",
    "LABEL_PATTERN",
    "DURATION_PATTERN",
    "CLOCK_PATTERN",
    "SegmentModel",
    "CaseModel",
    "DimensionModel",
    "MicrosegmentsModel",
    "MessageModel",
    "VariantModel",
    "CapsModel",
    "ChannelCapsModel",
    "QuietHoursModel",
    "ContactPolicyModel",
    "EventDeclarationModel",
    "TraitModel",
    "AGGREGATE_NAMES",
    "RuleFileModel",
    "rulefile_json_schema",
]

ID_PATTERN = r"^[a-z0-9_]+$"
LABEL_PATTERN = r"^[A-Za-z0-9_.-]+$"
DURATION_PATTERN = r"^[0-9]{1,6}[dhm]$"
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
PROP_TYPE_PATTERN = r"^(string|number|bool|list\[string\])\??$"
WINDOW_PATTERN = r"^([0-9]{1,4}[dh]|lifetime)$"
AGGREGATE_NAMES = ("count", "sum", "avg", "min", "max", "distinct_count", "first", "last", "most_frequent")


def _bool_as_text(value: Any) -> Any:
    """YAML reads ``when: true`` as a bool; the language wants the text ``true``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


Id = Annotated[StrictStr, Field(pattern=ID_PATTERN, min_length=1, max_length=64)]
Label = Annotated[StrictStr, Field(pattern=LABEL_PATTERN, min_length=1, max_length=64)]
Expression = Annotated[StrictStr, BeforeValidator(_bool_as_text), Field(min_length=1, description="A rule expression (docs/rule-language.md).")]
Number = Annotated[float, Field(strict=True)]
Name = Annotated[StrictStr, Field(pattern=NAME_PATTERN, min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Channel = Annotated[StrictStr, Field(pattern=ID_PATTERN, min_length=1, max_length=32)]
Duration = Annotated[StrictStr, Field(pattern=DURATION_PATTERN, description="<n>d, <n>h or <n>m.")]


class VariantModel(BaseModel):
    """A message variant: an ``id`` and whatever the sending system needs (subject, template...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: Id


class SegmentModel(_Strict):
    id: Id
    description: StrictStr = ""
    when: Expression


class CaseModel(_Strict):
    label: Label
    when: Expression


class DimensionModel(_Strict):
    """One of: ``cases``; ``of`` + ``cuts`` + ``labels``; or ``of`` alone (categorical)."""

    name: Id
    description: StrictStr = ""
    cases: list[CaseModel] | None = Field(default=None, min_length=1)
    of: Expression | None = None
    cuts: list[Number] | None = Field(default=None, min_length=1)
    labels: list[Label] | None = None


class MicrosegmentsModel(_Strict):
    dimensions: list[DimensionModel] = Field(min_length=1)


class MessageModel(_Strict):
    id: Id
    description: StrictStr = ""
    segments: list[Id] | None = Field(default=None, min_length=1)
    when: Expression | None = None
    channel: Channel | Annotated[list[Channel], Field(min_length=1, max_length=8)] = Field(
        description="'preferred' (the most-engaged messaging channel), a messaging channel such as email, or a list tried in order."
    )
    priority: Annotated[StrictInt, Field(ge=-1_000_000, le=1_000_000)]
    cooldown: Duration
    holdout: Annotated[Number, Field(ge=0.0, le=1.0)] = 0.0
    valid_for: Duration = Field(default="1d", description="How long after its first possible send time a decision may be sent; older ones are suppressed 'stale'.")
    on_cap: Literal["defer", "suppress"] = Field(
        default="suppress", description="defer: hold the decision and re-decide when the cap window opens; suppress: drop it (reason 'cap')."
    )
    on_quiet: Literal["defer", "suppress"] | None = Field(default=None, description="Overrides contact_policy.quiet_hours.action for this message.")
    send_at: Literal["now", "best_hour"] = Field(default="now", description="best_hour: the customer's most-engaged local hour within validity.")
    variants: list[VariantModel] | None = Field(default=None, min_length=1, max_length=16)
    converts_on: Name | None = Field(default=None, description="The event type that counts as a conversion (default purchase).")
    attribution: Duration = Field(default="7d", description="A conversion counts within this long after the decision.")


class ChannelCapsModel(_Strict):
    per_day: Annotated[StrictInt, Field(ge=0)] | None = None
    per_week: Annotated[StrictInt, Field(ge=0)] | None = None


class CapsModel(BaseModel):
    """Global caps, and per channel: ``{per_day: 2, per_week: 5, email: {per_week: 2}}``."""

    model_config = ConfigDict(extra="allow", frozen=True)
    __pydantic_extra__: dict[str, ChannelCapsModel] = Field(init=False)  # type: ignore[assignment]

    per_day: Annotated[StrictInt, Field(ge=0)] | None = None
    per_week: Annotated[StrictInt, Field(ge=0)] | None = None


class QuietHoursModel(_Strict):
    start: Annotated[StrictStr, Field(pattern=CLOCK_PATTERN, description='"HH:MM", 24-hour local time.')]
    end: Annotated[StrictStr, Field(pattern=CLOCK_PATTERN, description='"HH:MM", 24-hour local time.')]
    action: Literal["defer", "suppress"] = Field(
        default="defer", description="defer: send when quiet hours end; suppress: drop the message (reason 'quiet')."
    )


ConsentMode = Literal["opt_in", "opt_out"]


class ContactPolicyModel(_Strict):
    caps: CapsModel | None = None
    quiet_hours: QuietHoursModel | None = None
    default_timezone: StrictStr | None = None
    consent: ConsentMode | dict[Channel, ConsentMode] = Field(
        default="opt_in", description="opt_in: a channel needs a grant; opt_out: allowed until revoked or unsubscribed; or per channel."
    )
    channels: list[Channel] | None = Field(
        default=None, min_length=1, max_length=16, description="The messaging channels (default email, sms, push, in_app, whatsapp)."
    )
    global_holdout: Annotated[Number, Field(ge=0.0, le=1.0)] = Field(default=0.0, description="A stable share of customers kept out of every message.")


class EventDeclarationModel(_Strict):
    """A custom event type, or extra props on a built-in one (CONTRACT §7)."""

    type: Name
    description: StrictStr = ""
    props: dict[Name, Annotated[StrictStr, Field(pattern=PROP_TYPE_PATTERN)]] = Field(
        default_factory=dict, max_length=64, description="prop name: string | number | bool | list[string], '?' for optional."
    )


class TraitModel(_Strict):
    """A computed trait: a DNA field folded from events (CONTRACT §7, docs/traits.md)."""

    id: Name
    description: StrictStr = ""
    events: list[Name] = Field(min_length=1, max_length=32)
    where: Expression | None = None
    aggregate: Literal[AGGREGATE_NAMES]  # type: ignore[valid-type]
    value: Expression | None = None
    window: Annotated[StrictStr, Field(pattern=WINDOW_PATTERN, description="<n>d (1..400), <n>h (1..168) or lifetime.")] = "lifetime"


def _only_version_1(value: int) -> int:
    if value != 1:
        raise ValueError(f"rule file version {value} is not supported; use 'version: 1'")
    return value


class RuleFileModel(_Strict):
    version: Annotated[StrictInt, AfterValidator(_only_version_1), Field(json_schema_extra={"const": 1})]
    segments: list[SegmentModel] = []
    microsegments: MicrosegmentsModel | None = None
    messages: list[MessageModel] = []
    contact_policy: ContactPolicyModel | None = None
    events: list[EventDeclarationModel] = []
    traits: list[TraitModel] = []


def rulefile_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one rule file, for editors and CI."""
    schema = RuleFileModel.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "microseg rule file"
    return schema
