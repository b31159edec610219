"""Stopping child processes the same way everywhere: ask politely, then insist."""

from __future__ import annotations

import signal
import subprocess

__all__ = ["stop_process"]


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds; no-op if already gone."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
