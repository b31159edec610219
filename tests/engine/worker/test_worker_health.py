"""The worker about itself, tried as an ops engineer would: readiness that follows the broker, a log
that stays short while the broker is gone, and a worker that dies with its own embedded broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from microseg.engine.kafka.broker import EmbeddedBroker, free_port

from tests.conftest import WorkerProcess, topic_env

pytestmark = [pytest.mark.broker]


def _ready(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
    except OSError:
        return None


def _poll(check: Any, timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    return None


def test_ready_follows_the_broker_and_the_log_stays_short(tmp_path: Path) -> None:
    """Not ready before the group is joined and partitions recovered; ready then; not ready within
    10 s of the broker's death (while /health, liveness, still answers); and the log of the broker-less
    worker grows by a few lines, not the ~85 error lines a second it wrote before."""
    log_path = tmp_path / "worker.log"
    with EmbeddedBroker() as private:
        worker = WorkerProcess(private.bootstrap, {**topic_env("health"), "MICROSEG_PARTITIONS": "2"}, tmp_path / "data", log_path).start()
        try:
            first = _poll(lambda: _ready(worker.port), 60, every=0.05)
            assert first is not None, log_path.read_text()[-3000:]
            assert first[0] == 503 and "group" in first[1]["failing"], f"ready before joining its group: {first}"
            assert worker.health() is not None, "liveness answers from the start"
            ready = _poll(lambda: (r := _ready(worker.port)) and r[0] == 200 and r, 90)
            assert ready, f"never ready: {_ready(worker.port)}\n{log_path.read_text()[-3000:]}"
            body = ready[1]
            assert body["status"] == "ready" and body["failing"] == []
            assert body["conditions"]["partitions"]["assigned"] == [0, 1] and body["conditions"]["partitions"]["recovering"] == []
            size_before = len(log_path.read_text().splitlines())

            os.killpg(private.pid, signal.SIGKILL)  # the broker dies hard: no goodbye to its clients
            killed = time.monotonic()
            not_ready = _poll(lambda: (r := _ready(worker.port)) and r[0] == 503 and r, 15, every=0.1)
            seconds = time.monotonic() - killed
            assert not_ready, f"still ready 15 s after the broker died: {_ready(worker.port)}"
            print(f"\nnot ready {seconds:.1f} s after the broker was killed")
            assert seconds <= 10.0
            assert "broker" in not_ready[1]["failing"]
            assert "cannot reach the broker at" in not_ready[1]["conditions"]["broker"]["error"]
            assert worker.health() is not None, "/health is liveness: it answers while the broker is gone"

            time.sleep(20)  # the worker keeps retrying without its broker
            assert worker.process is not None and worker.process.poll() is None, "a configured broker that goes away is waited for"
            lines = log_path.read_text().splitlines()[size_before:]
            rate = len(lines) / (time.monotonic() - killed)
            print(f"{len(lines)} log lines in {time.monotonic() - killed:.0f} s without the broker ({rate:.1f}/s)")
            kinds = {re.sub(r"^\S+ \S+ ", "", line)[:60] for line in lines}
            assert len(lines) <= 3 * len(kinds) + 10, "at most one line per kind per 10 s:\n" + "\n".join(lines[-40:])
            assert rate < 2.0, "\n".join(lines[-40:])
        finally:
            worker.stop()


def test_worker_exits_non_zero_when_its_embedded_broker_dies(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MICROSEG_")},
        "MICROSEG_DATA_DIR": str(tmp_path / "data"),
        "MICROSEG_WEB_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "microseg", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        found = _poll(lambda: re.search(r"embedded broker \(Tansu\) listening on \S+, pid (\d+)", log_path.read_text()), 60)
        assert found, log_path.read_text()[-3000:]
        assert _poll(lambda: (r := _ready(port)) and r[0] == 200, 60), log_path.read_text()[-3000:]
        os.kill(int(found.group(1)), signal.SIGKILL)
        killed = time.monotonic()
        code = process.wait(40)
        seconds = time.monotonic() - killed
        print(f"\nworker exited with {code} {seconds:.1f} s after its embedded broker was killed")
        assert code == 2
        tail = log_path.read_text()
        assert "the embedded broker (pid" in tail and "the worker stops (exit code 2)" in tail
        assert "Traceback" not in tail, tail[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
