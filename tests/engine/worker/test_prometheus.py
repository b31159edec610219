"""A real Prometheus (Debian's ``prometheus`` binary) scraping a live worker every second: its HTTP
API gives back the worker's event counter and a latency quantile, and it loads deploy/alerts.yml."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from microseg.engine.kafka.broker import free_port
from microseg.engine.tools.children import stop_process

from tests.conftest import send_events

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = shutil.which("prometheus")

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (apt-get install prometheus)"),
]


class Prometheus:
    """``prometheus`` on a free port with a temporary storage directory, scraping ``target``."""

    def __init__(self, target: str, tmp_path: Path) -> None:
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / "deploy" / "alerts.yml")],
            "scrape_configs": [{"job_name": "microseg", "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}],
        }
        self.config = tmp_path / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log_path = tmp_path / "prometheus.log"
        self.command = [
            PROMETHEUS or "prometheus",
            f"--config.file={self.config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Prometheus":
        self.process = subprocess.Popen(self.command, stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        self.wait_until(lambda: self._get("/-/ready", raw=True) == b"Prometheus Server is Ready.\n", 60, "ready")
        return self

    def _get(self, path: str, *, raw: bool = False) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                body = response.read()
        except OSError:
            return None
        return body if raw else orjson.loads(body)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of ``promql`` now (``/api/v1/query``)."""
        found = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert found is not None and found["status"] == "success", found
        return found["data"]["result"]

    def value(self, promql: str) -> float | None:
        """The single value of ``promql``, or None when the vector is empty."""
        result = self.query(promql)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def wait_until(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log_path.read_text()[-3000:]
            found = condition()
            if found:
                return found
            time.sleep(0.5)
        raise AssertionError(f"prometheus: {what} not met in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        home = tmp_path / f"prometheus-{len(started)}"
        home.mkdir()
        found = Prometheus(target, home)
        started.append(found.start())
        return found

    yield start
    for found in started:
        found.stop()


def _worker_counter(worker: Any, name: str) -> float:
    """The worker's own ``/metrics`` value of a counter, summed over its labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples if s.name == name)


def test_prometheus_scrapes_the_event_counter_and_a_latency_quantile(
    broker: str, workers: Any, unique_topics: dict[str, str], sample_journeys: Path, prometheus: Any
) -> None:
    worker = workers(unique_topics)
    worker.wait_assigned()
    server = prometheus(f"127.0.0.1:{worker.port}")
    server.wait_until(lambda: server.value('up{job="microseg"}') == 1.0, 60, "the worker is scraped (up == 1)")

    events = [orjson.loads(line) for line in sample_journeys.read_bytes().splitlines()]
    send_events(broker, unique_topics["MICROSEG_INPUT_TOPIC"], events)

    def settled() -> float | None:  # the worker counted everything and Prometheus has scraped that count
        processed = _worker_counter(worker, "microseg_events_processed_total")
        rejected = _worker_counter(worker, "microseg_events_rejected_total")
        duplicates = _worker_counter(worker, "microseg_events_duplicate_total")
        if processed + rejected + duplicates < len(events):
            return None
        scraped = server.value("sum(microseg_events_processed_total)")
        return scraped if scraped == processed else None

    total = server.wait_until(settled, 120, "the event counter reaches every event sent")
    assert 0 < total <= len(events)
    by_type = {r["metric"]["type"]: float(r["value"][1]) for r in server.query("sum by (type) (microseg_events_processed_total)")}
    assert sum(by_type.values()) == total and {"purchase", "session_started"} <= set(by_type)

    # latency quantiles from the histograms, as the dashboard draws them
    p99_core = server.value("histogram_quantile(0.99, sum by (le) (microseg_processing_seconds_bucket))")
    assert p99_core is not None and 0 < p99_core <= 0.01, "core time per event: microseconds to a few milliseconds"
    p50_delivery = server.wait_until(
        lambda: server.value("histogram_quantile(0.5, sum by (le) (rate(microseg_produce_to_output_seconds_bucket[1m])))"),
        30,
        "a produce-to-output median over the last minute",
    )
    assert not math.isnan(p50_delivery) and 0 < p50_delivery < 60

    # the worker is ready, and the alert rules are loaded and evaluated; none of them fires here
    assert server.value("microseg_ready") == 1.0
    groups = server.wait_until(lambda: (server._get("/api/v1/rules") or {}).get("data", {}).get("groups"), 30, "rules loaded")
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert {"MicrosegConsumerLagGrowing", "MicrosegDeadLetterRate", "MicrosegRuleSetRefused", "MicrosegNoEvents", "MicrosegWorkerNotReady"} <= set(rules)
    assert all(rule["health"] == "ok" for rule in rules.values()), {n: r.get("lastError") for n, r in rules.items()}
    assert not [rule["name"] for rule in rules.values() if rule["state"] == "firing"]
