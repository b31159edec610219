"""Dead letters are keyed by the rejected record's customer_id when its text parsed (issue 18)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from microseg.engine.worker.delivery import dead_letter_key
from microseg.segments.pipeline import dead_letter


def _letter(raw: bytes) -> dict[str, Any]:
    return dead_letter("some reason", raw, topic="customer-events", partition=0, offset=1)


def test_the_key_is_the_customer_id_when_the_text_parsed() -> None:
    assert dead_letter_key(_letter(orjson.dumps({"customer_id": "c-1", "type": "teleported"}))) == b"c-1"
    assert dead_letter_key(_letter(orjson.dumps({"anonymous_id": "a-9", "type": "page_view"}))) == b"a-9"
    assert dead_letter_key(_letter(orjson.dumps({"customer_id": "c-1", "anonymous_id": "a-9"}))) == b"c-1"
    assert dead_letter_key(_letter("{\"customer_id\": \"clé\"}".encode())) == "clé".encode()


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'{"customer_id": 42}', b'{"customer_id": ""}', b'{"type": "x"}', b"\xff\xfe"])
def test_no_key_when_there_is_no_customer_id_to_read(raw: bytes) -> None:
    assert dead_letter_key(_letter(raw)) is None


@pytest.mark.broker
def test_the_worker_keys_its_dead_letters(broker: str, workers: Any, unique_topics: dict[str, str]) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    workers(unique_topics).wait_assigned()
    producer = KafkaProducer(bootstrap_servers=broker)
    bad_type = {"event_id": "b1", "customer_id": "c-1", "type": "teleported", "ts": "2026-05-01T10:00:00Z"}
    producer.send(unique_topics["MICROSEG_INPUT_TOPIC"], key=b"c-1", value=orjson.dumps(bad_type))
    producer.send(unique_topics["MICROSEG_INPUT_TOPIC"], key=b"c-2", value=b"{not json")
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(unique_topics["MICROSEG_DLQ_TOPIC"], bootstrap_servers=broker, auto_offset_reset="earliest", group_id=None, consumer_timeout_ms=1000)
    keys: dict[str, bytes | None] = {}
    deadline = time.monotonic() + 120
    try:
        while len(keys) < 2 and time.monotonic() < deadline:
            for message in consumer:
                keys[orjson.loads(message.value)["raw"]] = message.key
    finally:
        consumer.close()
    assert keys == {orjson.dumps(bad_type).decode(): b"c-1", "{not json": None}
