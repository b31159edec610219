"""Topic names of a test's own for every topic setting, so console tests never share a topic of
the session's broker with another test (which may have made it with another partition count)."""

from __future__ import annotations

from microseg.engine.settings import Settings


def own_topics(env: dict[str, str]) -> dict[str, str]:
    """Fill ``env`` with a name under the test's prefix for every ``*_topic`` setting it does not set."""
    prefix = env["MICROSEG_INPUT_TOPIC"].removesuffix("-events")
    for name in Settings.model_fields:
        if name.endswith("_topic"):
            env.setdefault(f"MICROSEG_{name.upper()}", f"{prefix}-{name.removesuffix('_topic').replace('_', '-')}")
    return env
