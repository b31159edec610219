"""Repeated log lines are cut to one per kind per window, saying how many were dropped; readiness
names each condition that fails."""

from __future__ import annotations

import logging

from microseg.engine.worker.health import BROKER_STALE_S, Health
from microseg.engine.worker.logs import RepeatFilter


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(msg: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def _passed(found: RepeatFilter, record: logging.LogRecord) -> str | None:
    return record.getMessage() if found.filter(record) else None


def test_one_line_per_kind_per_window_then_the_count_of_dropped_ones() -> None:
    clock = _Clock()
    found = RepeatFilter(window=10.0, clock=clock)
    assert _passed(found, _record("Unable connect to node with id %s: %s", 1, "refused")) == "Unable connect to node with id 1: refused"
    for step in range(84):  # the rest of a second of a broker-less worker, same kind
        clock.now += 0.1
        assert _passed(found, _record("Unable connect to node with id %s: %s", step % 3, "refused")) is None
    assert _passed(found, _record("Heartbeat failed")) == "Heartbeat failed", "another kind has its own window"
    assert _passed(found, _record("Unable connect to node %d", 7, level=logging.WARNING)) is not None, "the level is part of the kind"
    clock.now += 2.0  # 10.4 s after the first line
    again = _passed(found, _record("Unable connect to node with id %s: %s", 2, "refused"))
    assert again == "Unable connect to node with id 2: refused [84 more like this in the last 10 s not logged]"
    clock.now += 10.5
    assert _passed(found, _record("Unable connect to node with id %s: %s", 2, "refused")) == "Unable connect to node with id 2: refused", "nothing dropped, nothing said"


def test_numbers_in_an_already_formatted_message_are_one_kind_and_info_is_never_dropped() -> None:
    clock = _Clock()
    found = RepeatFilter(window=10.0, clock=clock)
    assert found.filter(_record("fetch from 10.0.0.1:9092 failed after 12 ms"))
    assert not found.filter(_record("fetch from 10.0.0.2:9092 failed after 340 ms"))
    for _ in range(5):
        assert found.filter(_record("partition 3 ready", level=logging.INFO, name="microseg"))


def test_the_filter_on_a_handler_cuts_what_reaches_the_stream() -> None:
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RepeatFilter(window=10.0))
    logger = logging.getLogger("microseg.test.repeats")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for _ in range(200):
            logger.error("Failed fetch messages from %s: %s", 111, "NodeNotReadyError")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == ["Failed fetch messages from 111: NodeNotReadyError"]


def test_readiness_names_each_failing_condition() -> None:
    clock = _Clock()
    health = Health(clock=clock)
    ok, body = health.readiness(assigned=set(), ready=set())
    assert not ok and body["failing"] == ["broker", "group", "rules", "model", "posteriors"], "nothing known yet"
    health.broker_answered_at = clock.now
    health.joined = True
    health.rules_end = 3
    health.rules_read = 1
    health.models_end = 2
    health.posteriors_end = 4
    health.posteriors_read = 1
    ok, body = health.readiness(assigned={0, 1}, ready={1})
    assert not ok and body["failing"] == ["partitions", "rules", "model", "posteriors"]
    assert body["conditions"]["posteriors"] == {"ok": False, "error": "the posteriors topic is being read", "end": 4, "read": 1}
    health.posteriors_read = 4
    assert body["conditions"]["model"] == {"ok": False, "error": "the models topic is being read", "end": 2, "read": 0}
    health.models_read = 2
    assert body["conditions"]["partitions"] == {"ok": False, "assigned": [0, 1], "recovering": [0], "error": "partitions [0] are being recovered from the changelog"}
    assert body["conditions"]["rules"]["read"] == 1 and body["conditions"]["rules"]["end"] == 3
    health.rules_read = 3
    assert health.readiness(assigned={0, 1}, ready={0, 1}) == (True, {"status": "ready", "failing": [], "conditions": health.readiness({0, 1}, {0, 1})[1]["conditions"]})
    assert health.readiness(assigned=set(), ready=set())[0], "no partitions assigned counts as ready (a spare worker)"
    clock.now += BROKER_STALE_S + 0.1
    health.broker_error = "cannot reach the broker at h:1: Connection refused"
    ok, body = health.readiness(assigned=set(), ready=set())
    assert not ok and body["failing"] == ["broker"]
    assert body["conditions"]["broker"]["error"] == "cannot reach the broker at h:1: Connection refused"
    assert body["conditions"]["broker"]["seconds_since_answer"] == round(BROKER_STALE_S + 0.1, 1)
