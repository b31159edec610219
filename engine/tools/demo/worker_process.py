"""The demo's worker: ``python -m microseg worker`` in its own session, and the directory it keeps its state in."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from microseg.engine.kafka.broker import _set_parent_death_signal, free_port
from microseg.engine.tools.demo.options import DemoOptions

__all__ = ["DemoWorker", "prepare_dirs"]


_WORKER_MARK = ".microseg-demo-worker"


class DemoWorker:
    """``python -m microseg worker`` in its own session, with a parent-death signal, logging to a file."""

    def __init__(self, bootstrap: str, embedded: bool, data_dir: Path, options: DemoOptions) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.log_path = data_dir / "worker.log"
        self.stop_timeout = options.worker_stop_timeout_s
        self.env = {
            **os.environ,
            "MICROSEG_BROKER": bootstrap,
            "MICROSEG_DATA_DIR": str(data_dir),
            "MICROSEG_WEB_HOST": "127.0.0.1",
            "MICROSEG_WEB_PORT": str(self.port),
            "MICROSEG_TICKS": "true",
            "MICROSEG_TICK_INTERVAL_S": str(options.tick_interval_s),
            "PYTHONUNBUFFERED": "1",
        }
        if embedded:
            self.env["MICROSEG_FIX_END_OFFSETS"] = "true"
            self.env.setdefault("MICROSEG_SESSION_TIMEOUT_S", "6")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        parent = os.getpid()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "microseg", "worker"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: _set_parent_death_signal(parent),
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1.0) as response:
                found = orjson.loads(response.read())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, hurry: Callable[[], bool] = lambda: False) -> int | None:
        """SIGTERM the worker's process group; SIGKILL after the timeout, or as soon as ``hurry()`` says so."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while proc.poll() is None and time.monotonic() < deadline and not hurry():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return proc.returncode


def prepare_dirs(options: DemoOptions, embedded: bool) -> tuple[Path, Path, bool]:
    """The demo's directory (temporary unless given), the worker's state dir in it, and whether to delete it after.

    With the embedded broker nothing survives a run (Tansu keeps memory only), so a worker state
    left by an earlier demo in ``--data-dir`` is stale and is cleared first.
    """
    if options.data_dir is None:
        root = Path(tempfile.mkdtemp(prefix="microseg-demo-"))
        temporary = True
    else:
        root = options.data_dir
        root.mkdir(parents=True, exist_ok=True)
        temporary = False
    worker_dir = root / "worker"
    if embedded and (worker_dir / _WORKER_MARK).exists():
        shutil.rmtree(worker_dir)
    worker_dir.mkdir(parents=True, exist_ok=True)
    (worker_dir / _WORKER_MARK).write_text("state of a 'microseg demo' worker; cleared by the next demo on the embedded broker\n")
    return root, worker_dir, temporary
