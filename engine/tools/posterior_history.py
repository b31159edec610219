"""The posterior snapshots ``microseg replay --posteriors`` reads: a file of snapshot records, or
the workers' posteriors topic read from its start to its current end (``engine.worker.posteriors``
for the record shape; the file form is what a dump of the topic gives, one record per line).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from microseg.errors import MicrosegError
from microseg.segments.bandit import PosteriorHistory

from microseg.engine.worker.posteriors import read_history_lines

__all__ = ["load_history"]


def load_history(source: str, settings: Any = None) -> PosteriorHistory:
    """``replay --posteriors``: a file of snapshot records, or ``topic`` to read the posteriors
    topic of the configured broker (``MICROSEG_BROKER``) from its start to its current end."""
    if source != "topic":
        path = Path(source)
        if not path.is_file():
            raise MicrosegError(f"--posteriors {source}: no such file (give a file of snapshot records, or 'topic')")
        with path.open("rb") as lines:
            return read_history_lines(lines, str(path))
    from microseg.engine.kafka.broker import BrokerError, check_reachable
    from microseg.engine.tools.topic_purchases import _read  # the shared to-the-end reader

    from microseg.engine.tools.produce import configured_bootstrap

    if settings is None:
        raise MicrosegError("--posteriors topic needs a broker: set MICROSEG_BROKER or --broker")
    bootstrap = configured_bootstrap(settings)  # the configured brokers, else a local worker's embedded one
    check_reachable(bootstrap, settings)
    values: list[bytes] = []

    class _Fold:
        def add(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
            if value is not None:
                values.append(value)

    try:
        asyncio.run(_read(settings, bootstrap, settings.posteriors_topic, _Fold(), None))  # type: ignore[arg-type]
    except MicrosegError:
        raise
    except Exception as exc:  # noqa: BLE001 - a client error is one line, like every broker problem
        raise BrokerError(f"cannot read {settings.posteriors_topic} on {bootstrap}: {type(exc).__name__}: {exc}") from None
    return read_history_lines(values, settings.posteriors_topic)
