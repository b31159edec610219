"""What one ``microseg bench`` run is asked for (``BenchConfig``) and the targets its figures are held to.

Targets are those of issue 6: nothing asserts them, ``check_targets`` reports each as met or
missed in the result's ``targets``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BenchConfig", "TARGETS", "DEFAULT_EVENTS", "check_targets"]


TARGETS = {
    "events_per_s": 20_000,
    "replay_events_per_s": 50_000,
    "p99_ms": 100.0,
    "state_bytes_per_customer": 1024,
    "scale_customers_ratio": 0.8,
    "scale_segments_cost": 2.0,
}

DEFAULT_EVENTS = 200_000
"""Simulated events pre-loaded when ``BenchConfig.events`` is None and there is no data file."""


@dataclass
class BenchConfig:
    """One run: ``events`` pre-loaded for ``customers`` on ``partitions``; the latency phase offers
    ``latency_rate`` events/s for ``latency_seconds`` (0 skips it); ``profile`` is a py-spy output
    path; ``raw``/``replay``/``peer`` switch those phases; ``worker_timeout_s`` bounds the worker's run.

    With ``data`` (a JSON-lines event file, or a purchase history ``microseg import`` reads) the
    input is that file instead of the simulator's (``customers`` and ``seed`` are not used):
    ``events`` = its first lines (None: all of them), the latency phase the lines after those.
    Without ``data``, None means ``DEFAULT_EVENTS``."""

    events: int | None = 200_000
    customers: int = 20_000
    rules_dir: Path | None = None
    partitions: int = 4
    latency_rate: float = 5_000.0
    latency_seconds: float = 10.0
    peer: bool = False
    seed: int = 7
    profile: Path | None = None
    progress: bool = False
    raw: bool = True
    replay: bool = True
    worker_timeout_s: float = 900.0
    data: Path | None = None
    identities: bool = False
    """The identity mix (issue 17): 20% of the events anonymous, 5% identifies (``workload.identity_mix``)."""
    extra: dict[str, Any] = field(default_factory=dict)


def check_targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{figure: {"target", "value", "met"}}`` for the figures with a target (``met`` is None without a value);
    with a peer figure, also ``events_per_s_vs_peer`` (a goal, not a target)."""
    def check(value: Any, target: float, higher: bool) -> dict[str, Any]:
        if value is None:
            return {"target": target, "value": None, "met": None}
        return {"target": target, "value": value, "met": bool(value >= target if higher else value <= target)}

    out = {
        "events_per_s": check(result.get("events_per_s"), TARGETS["events_per_s"], True),
        "replay_events_per_s": check(result.get("replay_events_per_s"), TARGETS["replay_events_per_s"], True),
        "p99_ms": check(result.get("p99_ms"), TARGETS["p99_ms"], False),
        "state_bytes_per_customer": check(result.get("state_bytes_per_customer"), TARGETS["state_bytes_per_customer"], False),
    }
    peer = result.get("peer_events_per_s")
    if peer:
        out["events_per_s_vs_peer"] = check(result.get("events_per_s"), peer, True) | {"goal": True}
    return out
