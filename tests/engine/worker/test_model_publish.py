"""A running worker gets a published model: it says which model it uses, re-evaluates everyone with
``cause: model:<version>``, refuses a bad record and keeps its model, and a restart takes the
published model again without re-emitting anything. Worker subprocess on the embedded broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from microseg.engine.settings import Settings
from microseg.segments.predictive import BgNbdParams, GammaGammaParams, PredictiveModel, load_default_model
from microseg.segments.view import iso

from tests.conftest import consume, send_events

pytestmark = [pytest.mark.broker]

CDNOW = PredictiveModel(BgNbdParams(0.2426, 4.4136, 0.7929, 2.4259), GammaGammaParams(6.2496, 3.7442, 15.4435))
RULES = """
version: 1
segments:
  - id: valuable
    when: clv_12m > 1000
  - id: buyer
    when: purchases_total >= 1
"""


def _settings(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in env.items() if k != "MICROSEG_RULES_DIR"})


def _until(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def _metric(worker: Any, name: str) -> float | None:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_a_published_model_reaches_a_running_worker(broker: str, workers: Any, unique_topics: dict[str, str], tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "value.yaml").write_text(RULES)
    env = {**unique_topics, "MICROSEG_RULES_DIR": str(rules), "MICROSEG_TICKS": "false"}
    settings = _settings(env)
    data_dir = tmp_path / "worker-data"
    worker = workers(env, data_dir=data_dir)
    health = worker.wait_assigned()
    demo = load_default_model()
    assert health["model"]["version"] == demo.version and health["model"]["origin"] == "packaged" and health["model"]["demo"] is True
    now = time.time()
    send_events(broker, settings.input_topic, [
        {"event_id": f"p{i}", "customer_id": f"c{i}", "type": "purchase", "ts": iso(now - 60), "props": {"order_id": f"o{i}", "amount": 40.0}}
        for i in range(3)
    ])
    consume(broker, settings.changes_topic, until=lambda got: sum(c["segment"] == "valuable" for c in got) == 3)

    model_file = tmp_path / "cdnow.json"
    model_file.write_text(CDNOW.to_json())
    published = subprocess.run(
        [sys.executable, "-m", "microseg", "model", "publish", str(model_file)],
        env={**os.environ, **env, "MICROSEG_BROKER": broker}, capture_output=True, timeout=120,
    )
    assert published.returncode == 0, published.stderr
    assert f"published predictive model {CDNOW.version}" in published.stdout.decode()

    cause = f"model:{CDNOW.version}"
    changes = consume(broker, settings.changes_topic, until=lambda got: sum(c["cause"] == cause for c in got) == 3)
    assert sorted((c["customer_id"], c["segment"], c["change"]) for c in changes if c["cause"] == cause) == [
        (f"c{i}", "valuable", "exited") for i in range(3)
    ]
    health = _until(lambda: (h := worker.health()) and h["model"]["version"] == CDNOW.version and h)
    assert health["model"]["origin"].startswith("published cdnow.json at ") and health["model"]["demo"] is False
    assert worker.get("/customers/c0")["model_version"] == CDNOW.version

    # a broken record on the models topic is refused, counted and logged; the model in force stays
    producer = KafkaProducer(bootstrap_servers=broker)
    producer.send(settings.models_topic, key=b"model", value=orjson.dumps({"model": {**CDNOW.to_dict(), "bgnbd": {"r": -1}}}))
    producer.flush()
    producer.close()
    _until(lambda: _metric(worker, "microseg_model_errors_total") == 1.0)
    assert worker.health()["model"]["version"] == CDNOW.version
    log = worker.log_path.read_text()
    assert f"is a demo model, fitted on simulated journeys" in log and "microseg fit --from-topic" in log
    assert "published model: parameter 'r' must be a finite number > 0" in log and f"keeping model {CDNOW.version}" in log

    # a restart starts from the packaged model, then takes the newest usable published one (the bad
    # record after it is refused again): nothing is re-emitted
    worker.stop()
    again = workers(env, data_dir=data_dir)
    again.wait_assigned()
    _until(lambda: (h := again.health()) and h["model"]["version"] == CDNOW.version)
    send_events(broker, settings.input_topic, [
        {"event_id": "late", "customer_id": "c9", "type": "purchase", "ts": iso(time.time()), "props": {"order_id": "o9", "amount": 40.0}}
    ])
    after = consume(broker, settings.changes_topic, until=lambda got: any(c["cause"] == "late" for c in got))
    assert [(c["segment"], c["cause"]) for c in after if c["customer_id"] == "c9"] == [("buyer", "late")], "c9 is scored by the published model"
    assert sum(c["cause"].startswith("model:") for c in after) == 3, "the restart re-emitted nothing"
