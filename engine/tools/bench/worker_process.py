"""The worker under test: ``python -m microseg worker`` as a subprocess, watched through its web
endpoints and its log, optionally with py-spy attached."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from microseg.engine.settings import Settings
from microseg.engine.tools.children import stop_process

__all__ = ["WorkerRun", "start_profiler", "stop_profiler"]


_READY_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO microseg\.engine\.worker\.runtime: partition \d+ ready", re.MULTILINE)


class WorkerRun:
    """``python -m microseg worker`` on fresh topics, group and data dir, with ticks off."""

    def __init__(self, settings: Settings, bootstrap: str, embedded: bool, rules_dir: Path | None, workdir: Path) -> None:
        from microseg.engine.kafka.broker import free_port

        self.port = free_port()
        self.log_path = workdir / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MICROSEG_") or k.startswith(("MICROSEG_SECURITY", "MICROSEG_SASL", "MICROSEG_SSL"))}
        env.update(
            {
                "MICROSEG_BROKER": bootstrap,
                "MICROSEG_DATA_DIR": str(workdir / "data"),
                "MICROSEG_WEB_PORT": str(self.port),
                "MICROSEG_WEB_HOST": "127.0.0.1",
                "MICROSEG_TICKS": "false",
                "MICROSEG_PARTITIONS": str(settings.partitions),
                "MICROSEG_INPUT_TOPIC": settings.input_topic,
                "MICROSEG_CHANGES_TOPIC": settings.changes_topic,
                "MICROSEG_MESSAGES_TOPIC": settings.messages_topic,
                "MICROSEG_DLQ_TOPIC": settings.dlq_topic,
                "MICROSEG_RULES_TOPIC": settings.rules_topic,
                "MICROSEG_MODELS_TOPIC": settings.models_topic,
                "MICROSEG_CHANGELOG_TOPIC": settings.changelog_topic,
                "MICROSEG_IDENTITY_TOPIC": settings.identity_topic,
                "MICROSEG_ERASURE_AUDIT_TOPIC": settings.erasure_audit_topic,
                "MICROSEG_MEMBERSHIPS_TOPIC": settings.memberships_topic,
                "MICROSEG_MEMBERSHIPS": str(settings.memberships).lower(),
                "MICROSEG_GROUP_ID": settings.group_id,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if embedded:
            env["MICROSEG_FIX_END_OFFSETS"] = "true"
        if rules_dir is not None:
            env["MICROSEG_RULES_DIR"] = str(rules_dir)
        if settings.model_path is not None:
            env["MICROSEG_MODEL_PATH"] = str(settings.model_path)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerRun:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "microseg", "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _get(self, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
            return response.read()

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"the worker exited with {self.process.returncode}:\n{self.log_tail()}")

    def log_tail(self, limit: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-limit:]
        return ""

    def health(self) -> dict[str, Any] | None:
        try:
            return orjson.loads(self._get("/health", 1.0))
        except (OSError, ValueError):
            return None

    def counted(self) -> int:
        """Input records the worker has accounted for: processed + rejected + duplicates (from /metrics)."""
        text = self._get("/metrics").decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(("microseg_events_processed_total{", "microseg_events_rejected_total{", "microseg_events_duplicate_total ")):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def wait_ready(self, partitions: int, timeout: float = 180.0) -> float:
        """Poll /health every 20 ms; the ``time.time()`` at which every partition was first seen ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            found = self.health()
            if found and len(found.get("ready", ())) >= partitions:
                return time.time()
            time.sleep(0.02)
        raise RuntimeError(f"the worker was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def wait_counted(self, expected: int, timeout: float, on_count: Callable[[int], None] | None = None) -> int:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError):
                seen = self.counted()
            if on_count is not None:
                on_count(seen)
            if seen >= expected:
                return seen
            time.sleep(0.25)
        raise RuntimeError(f"the worker accounted for {seen} of {expected} records within {timeout:.0f} s:\n{self.log_tail()}")

    def wait_idle(self, settle_s: float = 0.5, timeout: float = 30.0) -> None:
        """Until /health ``batches`` stops moving (the last batch's outputs and flush are done)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            found = self.health()
            batches = found.get("batches") if found else None
            if batches is not None and batches == last:
                return
            last = batches
            time.sleep(settle_s)

    def ready_logged_at(self) -> float | None:
        """When the worker logged its last ``partition N ready`` line (its own clock, ms resolution).

        The consumer starts fetching right after: this is when the first input is consumed. The
        worker's web endpoints share its event loop, so polling them would see this late.
        """
        found = None
        for match in _READY_LINE.finditer(self.log_tail(1 << 20)):
            found = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        return found

    def peak_rss_mb(self) -> float | None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        return None

    def stop(self) -> None:
        stop_process(self.process)


def start_profiler(pid: int, path: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--output", str(path), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
