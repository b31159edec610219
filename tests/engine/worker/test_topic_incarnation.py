"""A worker restarted on an input topic that was deleted and created again reads it from its start:
the offsets its customers remember belong to the old topic and must not skip the new records."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from microseg.engine.settings import Settings
from microseg.segments.view import iso

from tests.conftest import consume, send_events

pytestmark = [pytest.mark.broker]


def _sessions(prefix: str, count: int) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {"event_id": f"{prefix}-{i}", "customer_id": "cust-1", "type": "session_started", "ts": iso(now - 3600 + i), "channel": "web"}
        for i in range(count)
    ]


def test_a_recreated_input_topic_is_read_from_its_start(broker: str, workers: Any, unique_topics: dict[str, str], tmp_path: Path) -> None:
    env = {**unique_topics, "MICROSEG_TICKS": "false", "MICROSEG_PARTITIONS": "1"}
    settings = Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in env.items()})
    first = workers(env, tmp_path / "state")
    first.wait_assigned()
    send_events(broker, settings.input_topic, _sessions("old", 5))  # offsets 0..4, remembered by cust-1
    consume(broker, settings.changes_topic, until=lambda got: any(c["cause"] == "old-0" for c in got))
    time.sleep(2)  # the batch's offsets committed
    first.stop()

    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.delete_topics([settings.input_topic])
    time.sleep(1)
    admin.create_topics([NewTopic(settings.input_topic, 1, 1)])
    admin.close()
    send_events(broker, settings.input_topic, [{
        "event_id": "new-0", "customer_id": "cust-1", "type": "purchase", "ts": iso(time.time() - 60), "channel": "web",
        "props": {"order_id": "o-1", "amount": 20.0},
    }])  # offset 0 of the new topic: below what cust-1 remembers of the old one

    second = workers(env, tmp_path / "state")  # the same data dir: the old offsets are in the store
    second.wait_assigned()
    changes = consume(broker, settings.changes_topic, until=lambda got: any(c["cause"] == "new-0" for c in got), timeout=90)
    assert any(c["cause"] == "new-0" and c["change"] == "entered" for c in changes)
    assert "was created again" in second.log_path.read_text()
