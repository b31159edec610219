"""The worker for real: subprocesses on the embedded broker, RocksDB state, SIGKILL, failover."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from microseg.engine.tools.produce import produce_file, produce_lines
from microseg.engine.tools.replay import read_lines, replay
from microseg.engine.settings import Settings
from microseg.engine.tools.sinks import ListSink
from microseg.engine.startup import load_predictive_model, load_ruleset

from tests.conftest import consume

pytestmark = [pytest.mark.broker]


def _settings(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in env.items()})


def _replayed(path: Path, settings: Settings) -> ListSink:
    from microseg.segments.step import Core

    sink = ListSink()
    replay(read_lines(str(path)), Core(load_ruleset(settings), load_predictive_model(settings)), sink)
    return sink


def _by_id(records: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {r[key]: r for r in records}


def _journey_case(env: dict[str, str], journeys: Path) -> tuple[Settings, list[bytes], set[str]]:
    """Settings, the journey lines, and the change ids replay gives for them."""
    settings = _settings(env)
    expected = set(_by_id(_replayed(journeys, settings).change_records, "change_id"))
    return settings, list(read_lines(str(journeys))), expected


def _wait_for_ids(bootstrap: str, topic: str, expected: set[str], key: str, timeout: float = 180.0) -> list[dict[str, Any]]:
    return consume(bootstrap, topic, until=lambda got: expected <= {r[key] for r in got}, timeout=timeout)


def test_worker_output_equals_replay(broker: str, workers: Any, unique_topics: dict[str, str], sample_journeys: Path) -> None:
    env = {**unique_topics, "MICROSEG_TICKS": "false"}
    settings = _settings(env)
    expected = _replayed(sample_journeys, settings)
    # the journeys are history (January 2026): against the processing clock every decision is stale, in
    # replay as in the worker; decisions on a shared clock are compared in test_equivalence
    assert expected.change_records and not expected.message_records and not expected.holdout_records
    workers(env).wait_assigned()
    produce_file(settings, broker, sample_journeys)
    changes = _wait_for_ids(broker, settings.changes_topic, set(_by_id(expected.change_records, "change_id")), "change_id")
    assert _by_id(changes, "change_id") == _by_id(expected.change_records, "change_id")
    # a batch's outputs are delivered together, so its decisions would be there with its changes
    assert consume(broker, settings.messages_topic, until=lambda got: True, timeout=5) == []
    assert consume(broker, settings.holdouts_topic, until=lambda got: True, timeout=5) == []


@pytest.mark.parametrize("restart_with", ["same data dir", "wiped data dir"])
def test_sigkill_mid_stream_loses_nothing(
    broker: str, workers: Any, unique_topics: dict[str, str], sample_journeys: Path, tmp_path: Path, restart_with: str
) -> None:
    env = {**unique_topics, "MICROSEG_TICKS": "false", "MICROSEG_MAX_BATCH": "200"}
    settings = _settings(env)
    expected = set(_by_id(_replayed(sample_journeys, settings).change_records, "change_id"))
    first = workers(env, tmp_path / "state-a")
    first.wait_assigned()
    produce_file(settings, broker, sample_journeys)
    consume(broker, settings.changes_topic, until=lambda got: len(got) >= len(expected) // 4)
    first.kill()
    second = workers(env, tmp_path / ("state-a" if restart_with == "same data dir" else "state-b"))
    second.wait_assigned(timeout=180)
    changes = _wait_for_ids(broker, settings.changes_topic, expected, "change_id", timeout=240)
    assert {c["change_id"] for c in changes} == expected, "duplicates are fine; missing or foreign ids are not"


def test_two_workers_split_partitions_and_fail_over(
    broker: str, workers: Any, unique_topics: dict[str, str], sample_journeys: Path, tmp_path: Path
) -> None:
    env = {**unique_topics, "MICROSEG_TICKS": "false"}
    settings, lines, expected = _journey_case(env, sample_journeys)
    one, two = workers(env), workers(env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        a, b = one.health(), two.health()
        if a and b and a["partitions"] and b["partitions"]:
            break
        time.sleep(0.5)
    assert set(a["partitions"]).isdisjoint(b["partitions"])
    assert sorted(a["partitions"] + b["partitions"]) == list(range(settings.partitions))
    produce_lines(settings, broker, lines[: len(lines) // 2])
    consume(broker, settings.changes_topic, until=lambda got: len(got) > len(expected) // 5)
    two.kill()
    produce_lines(settings, broker, lines[len(lines) // 2 :])
    changes = _wait_for_ids(broker, settings.changes_topic, expected, "change_id", timeout=240)
    assert {c["change_id"] for c in changes} == expected
    assert sorted(one.health()["partitions"]) == list(range(settings.partitions))


def test_bad_records_go_to_the_dead_letter_topic(broker: str, workers: Any, unique_topics: dict[str, str]) -> None:
    from kafka import KafkaProducer

    settings = _settings(unique_topics)
    workers(unique_topics).wait_assigned()
    good = {"event_id": "g1", "customer_id": "c-1", "type": "session_started", "ts": "2026-05-01T10:00:00Z", "channel": "web"}
    producer = KafkaProducer(bootstrap_servers=broker)
    producer.send(settings.input_topic, key=b"c-1", value=b"{not json")
    producer.send(settings.input_topic, key=b"c-1", value=orjson.dumps({**good, "type": "teleported"}))
    producer.send(settings.input_topic, key=b"c-2", value=orjson.dumps(good))
    producer.send(settings.input_topic, key=b"c-1", value=b"x" * 100_000)
    producer.send(settings.input_topic, key=b"c-1", value=orjson.dumps(good))
    producer.flush()
    producer.close()
    dead = consume(broker, settings.dlq_topic, until=lambda got: len(got) >= 4)
    reasons = sorted(d["reason"].split(":")[0].split(" (")[0] for d in dead)
    assert any("not valid JSON" in r for r in reasons)
    assert any("unknown event type" in r for r in reasons)
    assert any("does not match customer_id" in d["reason"] for d in dead)
    assert any("the limit is" in d["reason"] for d in dead)
    assert all(d["topic"] == settings.input_topic and isinstance(d["offset"], int) and isinstance(d["partition"], int) for d in dead)
    changes = consume(broker, settings.changes_topic, until=lambda got: any(c["cause"] == "g1" for c in got))
    assert {c["customer_id"] for c in changes} == {"c-1"}


def test_graceful_restart_resumes_from_local_state(
    broker: str, workers: Any, unique_topics: dict[str, str], sample_journeys: Path, tmp_path: Path
) -> None:
    env = {**unique_topics, "MICROSEG_TICKS": "false"}
    settings, lines, expected = _journey_case(env, sample_journeys)
    first = workers(env, tmp_path / "state")
    first.wait_assigned()
    produce_lines(settings, broker, lines[: len(lines) // 2])
    consume(broker, settings.changes_topic, until=lambda got: len(got) > len(expected) // 5)
    time.sleep(2)
    first.stop()
    assert first.process is not None and first.process.returncode is not None
    second = workers(env, tmp_path / "state")
    second.wait_assigned(timeout=180)
    produce_lines(settings, broker, lines[len(lines) // 2 :])
    changes = _wait_for_ids(broker, settings.changes_topic, expected, "change_id", timeout=240)
    assert {c["change_id"] for c in changes} == expected
    log = second.log_path.read_text()
    assert "did not close cleanly" not in first.log_path.read_text()
    assert "partition 0 ready" in log
