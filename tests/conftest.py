"""Shared fixtures: one embedded broker per test session, and a scratch data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from microseg.engine.kafka.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """Bootstrap ``host:port`` of one embedded broker shared by the session (mark users ``@pytest.mark.broker``)."""
    with EmbeddedBroker() as embedded:
        yield embedded.bootstrap


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    """An empty directory for state stores."""
    path = tmp_path / "data"
    path.mkdir()
    return path


# -- workers on the embedded broker -----------------------------------------------------

import itertools  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from typing import Any  # noqa: E402

import orjson  # noqa: E402

from microseg.engine.kafka.broker import free_port  # noqa: E402
from microseg.engine.tools.children import stop_process  # noqa: E402

_names = itertools.count()


def topic_env(prefix: str) -> dict[str, str]:
    """Topic and group names of their own, so tests sharing the session broker never meet."""
    return {
        "MICROSEG_INPUT_TOPIC": f"{prefix}-events",
        "MICROSEG_CHANGES_TOPIC": f"{prefix}-changes",
        "MICROSEG_MESSAGES_TOPIC": f"{prefix}-messages",
        "MICROSEG_DLQ_TOPIC": f"{prefix}-dlq",
        "MICROSEG_RULES_TOPIC": f"{prefix}-rules",
        "MICROSEG_MODELS_TOPIC": f"{prefix}-models",
        "MICROSEG_POSTERIORS_TOPIC": f"{prefix}-posteriors",
        "MICROSEG_POSTERIOR_COUNTS_TOPIC": f"{prefix}-posterior-counts",
        "MICROSEG_CHANGELOG_TOPIC": f"{prefix}-changelog",
        "MICROSEG_IDENTITY_TOPIC": f"{prefix}-identity",
        "MICROSEG_ERASURE_AUDIT_TOPIC": f"{prefix}-erasures-audit",
        "MICROSEG_MEMBERSHIPS_TOPIC": f"{prefix}-memberships",
        "MICROSEG_HOLDOUTS_TOPIC": f"{prefix}-holdouts",
        "MICROSEG_GROUP_ID": f"{prefix}-group",
    }


class WorkerProcess:
    """``microseg worker`` as a subprocess, as an operator would run it."""

    def __init__(self, bootstrap: str, env: dict[str, str], data_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            **env,
            "MICROSEG_BROKER": bootstrap,
            "MICROSEG_FIX_END_OFFSETS": "true",
            "MICROSEG_DATA_DIR": str(data_dir),
            "MICROSEG_WEB_PORT": str(self.port),
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "WorkerProcess":
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "microseg", "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        return self

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return orjson.loads(response.read())

    def health(self) -> dict[str, Any] | None:
        try:
            return self.get("/health")
        except OSError:
            return None

    def wait_assigned(self, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}")
            found = self.health()
            if found and found["partitions"]:
                return found
            time.sleep(0.3)
        raise AssertionError(f"worker got no partitions in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def workers(broker: str, tmp_path: Path) -> Iterator[Any]:
    """Factory: ``workers(env, data_dir=None)`` starts a worker; all are stopped at the end."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], data_dir: Path | None = None) -> WorkerProcess:
        index = len(started)
        worker = WorkerProcess(broker, env, data_dir or tmp_path / f"worker-{index}", tmp_path / f"worker-{index}.log")
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def unique_topics() -> dict[str, str]:
    return topic_env(f"t{os.getpid()}-{next(_names)}-{int(time.time())}")


def send_events(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    """Events as JSON onto ``topic``, keyed by customer_id, flushed before returning."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for event in events:
        producer.send(topic, key=event["customer_id"].encode(), value=orjson.dumps(event))
    producer.flush()
    producer.close()


def consume(bootstrap: str, topic: str, *, until: Any, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Read ``topic`` from the start until ``until(records)`` holds (or fail after ``timeout``)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None, consumer_timeout_ms=1000)
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for message in consumer:
                records.append(orjson.loads(message.value))
            if until(records):
                return records
        raise AssertionError(f"{topic}: condition not met after {timeout}s with {len(records)} records")
    finally:
        consumer.close()


@pytest.fixture(scope="session")
def sample_journeys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated journey file shared by the worker tests (every event type, several channels)."""
    from microseg.engine.tools.simulator import simulate

    path = tmp_path_factory.mktemp("journeys") / "journeys.jsonl"
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with open(path, "wb") as handle:
        for event in simulate(120, 45, 21, start):
            handle.write(orjson.dumps(event) + b"\n")
    return path
