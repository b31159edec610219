"""``microseg produce``: a JSONL file of events onto the input topic, keyed by customer_id."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from microseg.engine.settings import Settings
from microseg.errors import ConfigError

__all__ = ["ProduceSummary", "configured_bootstrap", "produce_file", "produce_lines"]


@dataclass(frozen=True)
class ProduceSummary:
    """What a produce call did: lines ``sent`` (unkeyed ones included), ``skipped`` (sent without a
    key: no customer_id), over ``seconds`` of wall time."""

    sent: int
    skipped: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def _key(line: bytes) -> bytes | None:
    """The customer_id as the key, else the anonymous_id (CONTRACT §8); lines that are not JSON
    objects go keyless (the worker dead-letters them)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    customer = (data.get("customer_id") or data.get("anonymous_id")) if isinstance(data, dict) else None
    return customer.encode() if isinstance(customer, str) and customer else None


NO_BROKER = (
    "no broker configured and no worker with an embedded broker in {data_dir}: set MICROSEG_BROKER or --broker "
    "to the workers' broker, or start 'microseg worker' with the same MICROSEG_DATA_DIR (it logs 'broker HOST:PORT (embedded)')"
)


def configured_bootstrap(settings: Settings) -> str:
    """The brokers as one ``host:port,...`` string: the configured ones, else the embedded broker of a
    worker running with the same data directory (``engine.kafka.local_broker``); raises
    ``ConfigError`` saying both ways when there is neither."""
    if settings.bootstrap_servers is not None:
        return ",".join(settings.bootstrap_servers)
    from microseg.engine.kafka.local_broker import find

    found = find(settings.data_dir)
    if found is None:
        raise ConfigError(NO_BROKER.format(data_dir=settings.data_dir))
    return found


def produce_lines(settings: Settings, bootstrap: str, lines: Iterable[bytes], *, rate: float = 0.0, on_line: Callable[[int], None] | None = None) -> ProduceSummary:
    """Send JSON ``lines`` (trailing newline optional, blank lines skipped) to ``settings.input_topic``.

    Keyed by ``customer_id`` so a customer's events keep their order on one partition; ``rate``
    paces to that many lines per second (0 = as fast as possible); ``on_line`` gets each line's
    size in bytes (newline included). Returns when every line is acknowledged (``acks=1``).
    Raises ``BrokerError`` (one line) within seconds when no bootstrap server answers.
    """
    from kafka.errors import KafkaError

    from microseg.engine.kafka.broker import BrokerError, check_reachable
    from microseg.engine.kafka.clients import sync_producer

    check_reachable(bootstrap, settings)
    try:
        producer = sync_producer(settings, bootstrap, acks=1, linger_ms=5, batch_size=512 * 1024, max_request_size=8 << 20)
    except KafkaError as exc:  # answered the probe, then not the client (TLS or SASL handshake, a broker going away)
        raise BrokerError(f"cannot reach the broker at {bootstrap}: {exc}") from None
    sent = skipped = 0
    started = time.perf_counter()
    try:
        for line in lines:
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            key = _key(line)
            if key is None:
                skipped += 1
            producer.send(settings.input_topic, key=key, value=line)
            sent += 1
            if on_line is not None:
                on_line(len(line) + 1)
            if rate > 0:
                ahead = sent / rate - (time.perf_counter() - started)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush()
    finally:
        producer.close(timeout=30)
    return ProduceSummary(sent, skipped, time.perf_counter() - started)


def produce_file(settings: Settings, bootstrap: str, path: Path, *, rate: float = 0.0, on_line: Callable[[int], None] | None = None) -> ProduceSummary:
    """``produce_lines`` over the lines of a JSONL file."""
    with open(path, "rb") as handle:
        return produce_lines(settings, bootstrap, handle, rate=rate, on_line=on_line)
