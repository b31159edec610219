"""The demo's two Kafka threads: simulated customers onto the input topic, the worker's outputs onto the board.

Both run until ``stop`` is set; an error is appended to ``errors`` and sets ``stop``.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import orjson

from microseg.engine.settings import Settings
from microseg.engine.tools.demo.board import Board
from microseg.engine.tools.demo.options import DemoOptions

__all__ = ["produce_live", "follow_outputs"]


def produce_live(settings: Settings, bootstrap: str, options: DemoOptions, board: Board, stop: threading.Event, errors: list[str]) -> None:
    """Send the simulator's live stream to the input topic, each event at its due time."""
    from kafka import KafkaProducer

    from microseg.engine.tools.simulator import live

    security = settings.kafka_python_kwargs() if settings.broker else {}
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks=1, linger_ms=5, batch_size=256 * 1024, **security)
    except Exception as exc:  # noqa: BLE001 - reported on screen, the demo stops
        errors.append(f"producer: {exc}")
        stop.set()
        return
    topic = settings.input_topic
    sent = 0
    try:
        for due, event in live(options.customers, options.rate, options.seed, lambda: datetime.now(timezone.utc), anonymous=True):
            delay = due.timestamp() - time.time()
            if delay > 0.002 and stop.wait(delay):
                break
            if stop.is_set():
                break
            producer.send(topic, key=str(event.get("customer_id") or event["anonymous_id"]).encode(), value=orjson.dumps(event))
            sent += 1
            if sent % 64 == 0 or delay > 0:
                board.produced = sent
        producer.flush(10)
    except Exception as exc:  # noqa: BLE001 - reported on screen, the demo stops
        errors.append(f"producer: {exc}")
        stop.set()
    finally:
        board.produced = sent
        board.producing_done = True
        producer.close(timeout=5)


def follow_outputs(settings: Settings, bootstrap: str, embedded: bool, board: Board, stop: threading.Event, errors: list[str]) -> None:
    """Read ``segment-changes`` and ``next-best-messages`` into the board until stopped."""
    from kafka import KafkaConsumer

    security = settings.kafka_python_kwargs() if settings.broker else {}
    kinds = {settings.changes_topic: "change", settings.messages_topic: "message"}
    try:
        consumer = KafkaConsumer(
            *kinds,
            bootstrap_servers=bootstrap.split(","),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if embedded else "latest",
            **security,
        )
    except Exception as exc:  # noqa: BLE001 - reported on screen, the demo stops
        errors.append(f"follower: {exc}")
        stop.set()
        return
    try:
        while not stop.is_set():
            batch = consumer.poll(timeout_ms=200, max_records=2000)
            now = time.time()
            for tp, messages in batch.items():
                for message in messages:
                    try:
                        record = orjson.loads(message.value)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(record, dict):
                        board.apply(kinds[tp.topic], record, now)
    except Exception as exc:  # noqa: BLE001 - reported on screen, the demo stops
        errors.append(f"follower: {exc}")
        stop.set()
    finally:
        consumer.close()
