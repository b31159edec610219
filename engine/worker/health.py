"""What the worker knows about itself: liveness (``/health``) and readiness (``/health/ready``).

Ready means the worker can do its job now: the broker answers, the input consumer is in its
group, every partition it was assigned is recovered from the changelog (none assigned counts as
ready: a spare worker is fine), and the rules and models topics have been read to the end they had
at start (so events are not evaluated under the local rules or model while newer ones are published).
Each condition is kept here, set by the part of the worker that knows it; ``readiness`` reads
them at one instant.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from microseg.engine.kafka.broker import probe_async

__all__ = ["BROKER_PROBE_INTERVAL_S", "BROKER_STALE_S", "Health", "probe_broker_forever"]

log = logging.getLogger(__name__)

BROKER_PROBE_INTERVAL_S = 1.0
"""How often the broker is asked for metadata (one small request to one bootstrap server)."""
BROKER_STALE_S = 4.0
"""A broker not answered for this long counts as unreachable: with one probe a second (each given
at most 2 s) a lost broker turns the worker not ready within about 6 s, inside the 10 s promised."""


@dataclass
class Health:
    """The readiness conditions, each set by the part of the worker that knows it."""

    broker_answered_at: float | None = None
    """``time.monotonic()`` of the last answered probe; None before the first."""
    broker_error: str = "not probed yet"
    joined: bool = False
    """The input consumer is in its group with an assignment (possibly empty)."""
    rules_end: int | None = None
    """End offset of the rules topic when the worker started; None until read."""
    rules_read: int = 0
    """Next offset of the rules topic the rules agent has applied (or refused)."""
    models_end: int | None = None
    """End offset of the models topic when the worker started; None until read."""
    models_read: int = 0
    """Next offset of the models topic the models agent has applied (or refused)."""
    posteriors_end: int | None = None
    """End offset of the posteriors topic when the worker started; None until read."""
    posteriors_read: int = 0
    """Next offset of the posteriors topic the posteriors agent has read (``engine.worker.posteriors``)."""
    clock: Any = field(default=time.monotonic, repr=False)

    def broker_ok(self) -> bool:
        return self.broker_answered_at is not None and self.clock() - self.broker_answered_at <= BROKER_STALE_S

    def readiness(self, assigned: Collection[int], ready: Collection[int]) -> tuple[bool, dict[str, Any]]:
        """(ready, body): the body names each condition and, for those that fail, why."""
        recovering = sorted(set(assigned) - set(ready))
        conditions: dict[str, dict[str, Any]] = {
            "broker": {"ok": self.broker_ok()},
            "group": {"ok": self.joined},
            "partitions": {"ok": not recovering, "assigned": sorted(assigned), "recovering": recovering},
            "rules": {"ok": self.rules_end is not None and self.rules_read >= self.rules_end},
            "model": {"ok": self.models_end is not None and self.models_read >= self.models_end},
            "posteriors": {"ok": self.posteriors_end is not None and self.posteriors_read >= self.posteriors_end},
        }
        if not conditions["broker"]["ok"]:
            since = None if self.broker_answered_at is None else round(self.clock() - self.broker_answered_at, 1)
            conditions["broker"] |= {"error": self.broker_error, "seconds_since_answer": since}
        if not self.joined:
            conditions["group"]["error"] = "the input consumer has not joined its group (starting, or rebalancing)"
        if recovering:
            conditions["partitions"]["error"] = f"partitions {recovering} are being recovered from the changelog"
        if not conditions["rules"]["ok"]:
            conditions["rules"] |= {
                "error": "the rules topic has not been read yet" if self.rules_end is None else "the rules topic is being read",
                "end": self.rules_end,
                "read": self.rules_read,
            }
        if not conditions["model"]["ok"]:
            conditions["model"] |= {
                "error": "the models topic has not been read yet" if self.models_end is None else "the models topic is being read",
                "end": self.models_end,
                "read": self.models_read,
            }
        if not conditions["posteriors"]["ok"]:
            conditions["posteriors"] |= {
                "error": "the posteriors topic has not been read yet" if self.posteriors_end is None else "the posteriors topic is being read",
                "end": self.posteriors_end,
                "read": self.posteriors_read,
            }
        ok = all(c["ok"] for c in conditions.values())
        failing = [name for name, c in conditions.items() if not c["ok"]]
        return ok, {"status": "ready" if ok else "not ready", "failing": failing, "conditions": conditions}


async def probe_broker_forever(health: Health, bootstrap: str, *, plaintext: bool, interval: float = BROKER_PROBE_INTERVAL_S) -> None:
    """Ask the broker for metadata every ``interval`` seconds and record the outcome in ``health``."""
    servers = [s for s in bootstrap.split(",") if s]
    while True:
        why = await probe_async(servers, plaintext=plaintext, timeout=2.0)
        if why is None:
            health.broker_answered_at = health.clock()
            health.broker_error = ""
        else:
            health.broker_error = f"cannot reach the broker at {bootstrap}: {why}"
        await asyncio.sleep(interval)
