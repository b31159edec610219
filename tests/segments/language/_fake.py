"""A small evaluation context for language tests: DNA fields as a dict plus the DNA methods."""

from __future__ import annotations

from typing import Any

from microseg.segments.builtin_fields import FIELDS
from microseg.segments.fields import Kind

__all__ = ["FakeCtx", "base_values"]


class FakeCtx(dict):
    """``ctx[field]`` plus ``affinity``, ``consented``, ``open_rate``... backed by plain dicts."""

    def __init__(self, values: dict[str, Any] | None = None, **methods: Any) -> None:
        super().__init__(values or {})
        self.affinities: dict[str, float] = methods.get("affinities", {"shoes": 0.7, "bags": 0.2})
        self.consents: dict[str, bool] = methods.get("consents", {"email": True, "sms": False})
        self.opens: dict[str | None, float | None] = methods.get("opens", {None: 0.5, "email": 0.25, "push": None})
        self.clicks: dict[str | None, float | None] = methods.get("clicks", {None: None})
        self.unsubs: set[str] = methods.get("unsubs", {"sms"})
        self.attrs: dict[str, Any] = methods.get("attrs", {"tier": "gold", "visits": 5, "vip": True, "score": 2.5})

    def affinity(self, category: str) -> float:
        return self.affinities.get(category, 0.0)

    def consented(self, channel: str) -> bool:
        return self.consents.get(channel, False)

    def open_rate(self, channel: str | None = None) -> float | None:
        return self.opens.get(channel)

    def click_rate(self, channel: str | None = None) -> float | None:
        return self.clicks.get(channel)

    def unsubscribed(self, channel: str) -> bool:
        return channel in self.unsubs

    def attr(self, name: str) -> Any:
        return self.attrs.get(name)


def base_values() -> dict[str, Any]:
    """A value for every registry field: null where allowed, else 0, 'active' or ''."""
    values: dict[str, Any] = {}
    for name, spec in FIELDS.items():
        if spec.type.nullable:
            values[name] = None
        elif spec.type.kind is Kind.NUMBER:
            values[name] = 0
        elif spec.type.values:
            values[name] = "active"
        else:
            values[name] = None if spec.type.nullable else ""
    return values
