"""Every Kafka client the worker and the commands use, built in one place from ``Settings``.

Security settings (SASL/SSL) pass through to each client; the tuning that matters for
correctness is here too: outputs and changelog share one producer with ``acks=all`` (one batch in
flight per partition keeps order without the idempotent producer, which Tansu refuses — turn
``MICROSEG_IDEMPOTENT_PRODUCER`` on for real Kafka), the input consumer commits by hand.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from microseg.engine.settings import Settings

__all__ = ["output_producer", "SharedProducer", "input_consumer", "state_reader", "sync_producer"]


def _servers(bootstrap: str) -> list[str]:
    return bootstrap.split(",")


def output_producer(settings: Settings, bootstrap: str) -> AIOKafkaProducer:
    """The worker's one producer: segment changes, messages, dead letters and the state changelog."""
    return AIOKafkaProducer(
        bootstrap_servers=_servers(bootstrap),
        client_id=f"{settings.group_id}-out",
        enable_idempotence=settings.idempotent_producer,
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
        **settings.aiokafka_kwargs(),
    )


class SharedProducer:
    """The worker's one output producer, shared by the output sink and the state changelog.

    aiokafka clients must be created inside the running event loop, so the producer is made and
    started by the first ``start()`` and stopped by ``stop()`` (once, whoever calls it first).
    """

    def __init__(self, settings: Settings, bootstrap: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = output_producer(self.settings, self.bootstrap)
            await producer.start()
            self._producer = producer
        return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


def input_consumer(settings: Settings, bootstrap: str, assignor: Any = None) -> AIOKafkaConsumer:
    """The hot path's consumer in the worker group: batches of up to ``max_batch``, manual commits;
    ``assignor`` (``kafka.assignor.CopartitionedAssignor``) deals the partitions and the routing table."""
    strategy = {} if assignor is None else {"partition_assignment_strategy": (assignor,)}
    return AIOKafkaConsumer(
        bootstrap_servers=_servers(bootstrap),
        group_id=settings.group_id,
        client_id=f"{settings.group_id}-worker",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=1000,
        rebalance_timeout_ms=int(max(settings.session_timeout_s * 3, 30) * 1000),
        max_poll_interval_ms=300_000,
        max_poll_records=settings.max_batch,
        fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_wait_ms=int(settings.batch_within_s * 1000),
        **strategy,
        **settings.aiokafka_kwargs(),
    )


def state_reader(bootstrap: str, client_kwargs: dict[str, Any], *, client_id: str) -> AIOKafkaConsumer:
    """A group-less consumer that reads a changelog partition from the start (state recovery)."""
    return AIOKafkaConsumer(
        bootstrap_servers=_servers(bootstrap),
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 << 20,
        fetch_max_bytes=64 << 20,
        **client_kwargs,
    )


def sync_producer(settings: Settings, bootstrap: str, **tuning: Any) -> Any:
    """A blocking kafka-python producer for the commands (``produce``, ``rules publish``)."""
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=_servers(bootstrap), **tuning, **settings.kafka_python_kwargs())
