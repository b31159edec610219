"""Where a worker's embedded broker listens, for the commands run next to it.

``microseg worker`` without ``MICROSEG_BROKER`` runs an embedded broker on a free local port. So
that ``microseg produce``, ``rules publish/diff/history/rollback`` and ``model publish`` run from the same directory (the
same ``MICROSEG_DATA_DIR``) reach it without being told the port, the worker writes the broker's
``host:port`` to ``<data dir>/embedded-broker`` while it runs and removes it when it stops. A
command with no broker configured reads that file and uses the address if something listens
there (a file left by a killed worker is ignored).
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

__all__ = ["ADDRESS_FILE", "remember", "forget", "find"]

ADDRESS_FILE = "embedded-broker"


def remember(data_dir: Path, bootstrap: str) -> Path:
    """Write ``bootstrap`` (``host:port``) to ``data_dir/embedded-broker``; returns the file."""
    path = Path(data_dir) / ADDRESS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(bootstrap + "\n", encoding="utf-8")
    return path


def forget(data_dir: Path, bootstrap: str) -> None:
    """Remove the file if it still names ``bootstrap`` (another worker may have written its own since)."""
    path = Path(data_dir) / ADDRESS_FILE
    with contextlib.suppress(OSError):
        if path.read_text(encoding="utf-8").strip() == bootstrap:
            path.unlink()


def find(data_dir: Path, timeout: float = 1.0) -> str | None:
    """The ``host:port`` a worker with this data directory runs its embedded broker on, if the file
    is there and the port accepts a connection within ``timeout`` seconds; None otherwise."""
    try:
        bootstrap = (Path(data_dir) / ADDRESS_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    host, _, port = bootstrap.rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return bootstrap
    except OSError:
        return None
