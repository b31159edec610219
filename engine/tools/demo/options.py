"""What ``microseg demo`` was asked for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["DemoOptions"]


@dataclass(frozen=True)
class DemoOptions:
    """What ``microseg demo`` was asked for; ``duration=None`` runs until Ctrl-C.

    ``rate`` is events per second once the history is sent; durations and intervals are seconds.
    """

    customers: int = 300
    rate: float = 200.0
    duration: float | None = None
    seed: int = 7
    data_dir: Path | None = None
    plain: bool = False
    tick_interval_s: float = 2.0
    summary_every_s: float = 5.0
    worker_stop_timeout_s: float = 15.0
