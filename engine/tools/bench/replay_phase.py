"""The replay phase: the pure core over the bench's lines in-process (no Kafka), and the state size it leaves."""

from __future__ import annotations

import time
from typing import Any

from microseg.engine.settings import Settings

__all__ = ["replay_figures"]


class _CountingSink:
    """Counts the records a replay emits, keeping none."""

    def __init__(self) -> None:
        self.count = 0

    def changes(self, records: Any) -> None:
        self.count += len(records)

    def messages(self, records: Any) -> None:
        self.count += len(records)

    def dead_letter(self, record: Any) -> None:
        self.count += 1


def replay_figures(lines: list[bytes], settings: Settings) -> dict[str, Any]:
    """The pure core over ``lines`` in-process (``engine.tools.replay.replay``).

    Returns ``replay_events_per_s``, ``replay_seconds``, ``state_bytes_per_customer`` (mean encoded
    state, bytes), ``state_bytes_p99``, ``customers_seen``, ``replay_changes``, ``replay_messages``,
    ``model`` (the predictive model's version, or ``none``; a demo model is said so on stderr).
    """
    import sys

    from microseg.engine.model_in_use import FIT_FOR_BENCH, load_model_in_use

    from microseg.engine.tools.replay import replay
    from microseg.engine.startup import load_ruleset, tune_gc
    from microseg.segments.step import Core
    from microseg.segments.state import encode

    in_use = load_model_in_use(settings.model_path)
    if (warning := in_use.demo_warning(FIT_FOR_BENCH)) is not None:
        print(f"warning: {warning}", file=sys.stderr)
    core = Core(load_ruleset(settings), in_use.model)
    tune_gc()
    started = time.perf_counter()
    stats, states = replay(lines, core, _CountingSink())
    seconds = time.perf_counter() - started
    sizes = [len(encode(s)) for s in states.values()]
    sizes.sort()
    return {
        "replay_events_per_s": round(len(lines) / seconds),
        "replay_seconds": round(seconds, 3),
        "state_bytes_per_customer": round(sum(sizes) / len(sizes)) if sizes else 0,
        "state_bytes_p99": sizes[min(len(sizes) - 1, int(len(sizes) * 0.99))] if sizes else 0,
        "customers_seen": len(states),
        "replay_changes": stats.changes,
        "replay_messages": stats.messages,
        "model": in_use.version,
    }
