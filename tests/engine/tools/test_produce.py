"""``microseg produce`` next to a worker that runs the embedded broker: found through the data
directory, as its --help says; without either, one line saying both ways, exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from microseg.engine.kafka.broker import free_port
from microseg.engine.kafka.local_broker import ADDRESS_FILE
from microseg.engine.tools.children import stop_process
from microseg.segments.testing import event_bytes


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "MICROSEG_DATA_DIR": str(data_dir), "PYTHONWARNINGS": "ignore::RuntimeWarning", **extra}
    env.pop("MICROSEG_BROKER", None)
    return env


def test_without_a_broker_or_a_worker_it_says_both_ways(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(event_bytes("c1", "session_started", "2026-03-01T10:00:00Z") + b"\n")
    found = subprocess.run([sys.executable, "-m", "microseg", "produce", str(events)], env=_env(tmp_path / "data"), capture_output=True, text=True, timeout=60)
    assert found.returncode == 2
    assert "set MICROSEG_BROKER or --broker" in found.stderr and "start 'microseg worker' with the same MICROSEG_DATA_DIR" in found.stderr


@pytest.mark.broker
def test_produce_reaches_the_embedded_broker_of_a_worker_with_the_same_data_dir(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "microseg", "worker"], env=_env(data_dir, MICROSEG_WEB_PORT=str(port)), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (data_dir / ADDRESS_FILE).exists():
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.3)
        events = tmp_path / "events.jsonl"
        events.write_bytes(b"".join(event_bytes(f"c{i}", "session_started", "2026-03-01T10:00:00Z", event_id=f"e{i}", channel="web") + b"\n" for i in range(25)))
        sent = subprocess.run([sys.executable, "-m", "microseg", "produce", str(events)], env=_env(data_dir), capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        assert "sent 25 events" in sent.stderr

        def processed() -> float:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    text = response.read().decode()
            except OSError:
                return 0.0
            return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == "microseg_events_processed_total")

        while processed() < 25:
            assert worker.poll() is None and time.monotonic() < deadline + 60, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
        assert processed() == 25
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            stop_process(worker)
        log.close()
    assert not (data_dir / ADDRESS_FILE).exists(), "a stopped worker removes its address"
