"""``microseg bench``: one worker's throughput and latency, measured end to end, next to its ceilings.

One run, side by side (definitions in docs/performance.md):

- ``produce_per_s``: how fast the load generator pre-loaded the input topic (aiokafka, pre-built batches);
- ``raw_consume_per_s``: a plain aiokafka consumer reading the same topic (the ceiling);
- ``events_per_s``: one real ``microseg worker`` subprocess (Kafka in, RocksDB + changelog, outputs
  to Kafka) from the moment it owns its recovered partitions (input pre-loaded) to the newest
  record it wrote to the changes, messages or changelog topic;
- ``p50_ms``/``p99_ms``: a paced producer at a fixed rate against the running worker, from each
  input record's produce timestamp to the timestamp of the segment change it caused;
- ``replay_events_per_s``: ``engine.replay.replay`` over the same lines in-process (no Kafka);
- ``state_bytes_per_customer``: mean encoded state (``segments.state.encode``) after the replay;
- ``worker_peak_rss_mb``: the worker's VmHWM;
- ``peer_events_per_s`` (``--peer``): the same ``Core`` hosted in a minimal quix-streams app.

Targets of issue 6 are reported as met/missed in ``targets``; nothing here asserts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from microseg.engine.tools.processes import stop_process
from microseg.engine.settings import Settings, load_settings

__all__ = ["BenchConfig", "run_bench", "run_scale", "make_lines", "clone_rules", "TARGETS"]

TARGETS = {
    "events_per_s": 20_000,
    "replay_events_per_s": 50_000,
    "p99_ms": 100.0,
    "state_bytes_per_customer": 1024,
    "scale_customers_ratio": 0.8,
    "scale_segments_cost": 2.0,
}
EVENTS_PER_CUSTOMER_DAY = 2.8
"""About what the simulator's personas produce per customer per simulated day (measured: ~3.1)."""


@dataclass
class BenchConfig:
    events: int = 200_000
    customers: int = 20_000
    rules_dir: Path | None = None
    partitions: int = 4
    latency_rate: float = 5_000.0
    latency_seconds: float = 10.0
    peer: bool = False
    seed: int = 7
    profile: Path | None = None
    progress: bool = False
    raw: bool = True
    replay: bool = True
    worker_timeout_s: float = 900.0
    extra: dict[str, Any] = field(default_factory=dict)


# -- machine ------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    mem_gib = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    from microseg.segments.native import build

    core = build()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "core_build": "mypyc" if core.compiled else f"python ({core.reason})",
    }


# -- progress -----------------------------------------------------------------------------


class _Progress:
    """A rich progress bar on a terminal (stderr); silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self._bar = None
        self._task: Any = None
        self._current: tuple[str, float] | None = None
        self.seconds: dict[str, float] = {}
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )
            self._bar.start()

    def phase(self, description: str, total: float | None) -> None:
        now = time.perf_counter()
        if self._current is not None:
            name, since = self._current
            self.seconds[name] = round(self.seconds.get(name, 0.0) + now - since, 2)
        self._current = (description.split(":")[0], now)
        if self._bar is None:
            return
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total)

    def update(self, completed: float) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=completed)

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


# -- input --------------------------------------------------------------------------------


def make_lines(total: int, customers: int, seed: int = 7) -> tuple[list[bytes], list[bytes]]:
    """``total`` simulated event lines (no newline) for ``customers`` and their keys (customer ids).

    The simulated period is chosen so that the whole population is active (about
    ``total / customers`` events each) and ends a day before now, so no event is in the future.
    """
    from microseg.engine.tools.simulator import simulate_lines

    days = max(1, math.ceil(total / max(customers, 1) / EVENTS_PER_CUSTOMER_DAY))
    loads = orjson.loads
    while True:
        midnight = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        start = midnight - timedelta(days=days + 1)
        lines: list[bytes] = []
        keys: list[bytes] = []
        for line in simulate_lines(customers, days, seed, start):
            line = line.rstrip(b"\n")
            lines.append(line)
            keys.append(loads(line)["customer_id"].encode())
            if len(lines) >= total:
                return lines, keys
        days *= 2


def make_population_lines(total: int, customers: int, seed: int = 7, chunk: int = 10_000) -> tuple[list[bytes], list[bytes]]:
    """About ``total`` lines in which every one of ``customers`` appears: for large populations with few
    events each (``make_lines`` would cut the simulation off before late-starting customers arrive).

    The population is simulated in chunks of ``chunk`` customers over one day, each chunk with its
    own seed and customer-id prefix; each customer keeps its first ``ceil(total / customers)``
    events, and the chunks are interleaved line by line.
    """
    from microseg.engine.tools.simulator import simulate_lines

    cap = max(1, math.ceil(total / max(customers, 1)))
    midnight = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = midnight - timedelta(days=2)
    streams: list[list[tuple[bytes, bytes]]] = []
    for index in range(math.ceil(customers / chunk)):
        size = min(chunk, customers - index * chunk)
        kept: list[tuple[bytes, bytes]] = []
        seen: dict[str, int] = {}
        for line in simulate_lines(size, 1, seed + index, start):
            event = orjson.loads(line)
            customer = f"p{index}-{event['customer_id']}"
            if seen.get(customer, 0) >= cap:
                continue
            seen[customer] = seen.get(customer, 0) + 1
            event["customer_id"] = customer
            kept.append((orjson.dumps(event), customer.encode()))
        streams.append(kept)
    lines: list[bytes] = []
    keys: list[bytes] = []
    for row in itertools.zip_longest(*streams):
        for item in row:
            if item is not None:
                lines.append(item[0])
                keys.append(item[1])
    return lines[:total] if len(lines) > total else lines, keys[:total] if len(keys) > total else keys


def event_ids(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["event_id"] for line in lines]


# -- kafka helpers ------------------------------------------------------------------------


def _bench_settings(base: Settings, prefix: str, partitions: int) -> Settings:
    return base.model_copy(
        update={
            "input_topic": f"{prefix}-events",
            "changes_topic": f"{prefix}-changes",
            "messages_topic": f"{prefix}-messages",
            "dlq_topic": f"{prefix}-dlq",
            "rules_topic": f"{prefix}-rules",
            "changelog_topic": f"{prefix}-changelog",
            "group_id": f"{prefix}-group",
            "partitions": partitions,
        }
    )


async def preload(settings: Settings, bootstrap: str, lines: list[bytes], keys: list[bytes], on_sent: Callable[[int], None] | None = None) -> float:
    """Fill the input topic with pre-built batches keyed by customer; returns seconds taken."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import DefaultPartitioner

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap.split(","), acks=1, linger_ms=5, max_batch_size=1 << 20,
        max_request_size=8 << 20, enable_idempotence=False, **settings.aiokafka_kwargs(),
    )
    await producer.start()
    topic = settings.input_topic
    try:
        count = len(await producer.partitions_for(topic))
        every = list(range(count))
        partitioner = DefaultPartitioner()
        by_partition: dict[int, list[int]] = {p: [] for p in every}
        for index, key in enumerate(keys):
            by_partition[partitioner(key, every, every)].append(index)
        started = time.perf_counter()
        futures = []
        sent = 0
        for partition, indexes in by_partition.items():
            batch = producer.create_batch()
            for index in indexes:
                if batch.append(key=keys[index], value=lines[index], timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=keys[index], value=lines[index], timestamp=None)
                sent += 1
                if on_sent is not None and sent % 20_000 == 0:
                    on_sent(sent)
            if batch.record_count():
                futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


def _consumer(settings: Settings, bootstrap: str, **extra: Any) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        fetch_max_bytes=64 << 20, max_partition_fetch_bytes=8 << 20, fetch_max_wait_ms=100, **extra, **settings.aiokafka_kwargs(),
    )


async def raw_consume(settings: Settings, bootstrap: str, expected: int) -> float:
    """Seconds for a plain consumer (no group, no decoding) to read ``expected`` records of the input topic."""
    from aiokafka import TopicPartition

    consumer = _consumer(settings, bootstrap, max_poll_records=20_000)
    await consumer.start()
    try:
        partitions = await _partitions_of(consumer, settings.input_topic)
        consumer.assign([TopicPartition(settings.input_topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        got = 0
        started = time.perf_counter()
        deadline = started + 300
        while got < expected and time.perf_counter() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            got += sum(len(messages) for messages in batches.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def _partitions_of(consumer: Any, topic: str) -> list[int]:
    for _ in range(100):
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        await asyncio.sleep(0.1)
    raise RuntimeError(f"topic {topic} has no partitions")


async def read_topics(settings: Settings, bootstrap: str, topics: list[str], *, idle_s: float = 1.5) -> dict[str, list[tuple[int, bytes]]]:
    """Every record of ``topics`` as (timestamp ms, value), read from the start until the end."""
    from aiokafka import TopicPartition

    consumer = _consumer(settings, bootstrap, max_poll_records=50_000)
    await consumer.start()
    out: dict[str, list[tuple[int, bytes]]] = {t: [] for t in topics}
    try:
        tps = [TopicPartition(t, p) for t in topics for p in await _partitions_of(consumer, t)]
        consumer.assign(tps)
        await consumer.seek_to_beginning()
        idle_since = time.monotonic()
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=50_000)
            if any(batches.values()):
                idle_since = time.monotonic()
                for tp, messages in batches.items():
                    out[tp.topic].extend((m.timestamp, m.value) for m in messages)
                continue
            caught_up = True
            for tp in tps:
                highwater = consumer.highwater(tp)
                if highwater is None or await consumer.position(tp) < highwater:
                    caught_up = False
                    break
            if caught_up or time.monotonic() - idle_since > idle_s:
                break
        return out
    finally:
        await consumer.stop()


def _delete_topics(settings: Settings, bootstrap: str) -> None:
    """Best effort: the embedded broker keeps every topic in memory."""
    from kafka import KafkaAdminClient

    with contextlib.suppress(Exception):
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="microseg-bench", **({} if not settings.broker else settings.kafka_python_kwargs()))
        try:
            admin.delete_topics([*settings.topic_names, settings.rules_topic])
        finally:
            admin.close()


# -- the worker subprocess ----------------------------------------------------------------


_READY_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO microseg\.engine\.worker\.runtime: partition \d+ ready", re.MULTILINE)


class WorkerRun:
    """``python -m microseg worker`` on fresh topics, group and data dir, with ticks off."""

    def __init__(self, settings: Settings, bootstrap: str, embedded: bool, rules_dir: Path | None, workdir: Path) -> None:
        from microseg.engine.kafka.broker import free_port

        self.port = free_port()
        self.log_path = workdir / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MICROSEG_") or k.startswith(("MICROSEG_SECURITY", "MICROSEG_SASL", "MICROSEG_SSL"))}
        env.update(
            {
                "MICROSEG_BROKER": bootstrap,
                "MICROSEG_DATA_DIR": str(workdir / "data"),
                "MICROSEG_WEB_PORT": str(self.port),
                "MICROSEG_WEB_HOST": "127.0.0.1",
                "MICROSEG_TICKS": "false",
                "MICROSEG_PARTITIONS": str(settings.partitions),
                "MICROSEG_INPUT_TOPIC": settings.input_topic,
                "MICROSEG_CHANGES_TOPIC": settings.changes_topic,
                "MICROSEG_MESSAGES_TOPIC": settings.messages_topic,
                "MICROSEG_DLQ_TOPIC": settings.dlq_topic,
                "MICROSEG_RULES_TOPIC": settings.rules_topic,
                "MICROSEG_CHANGELOG_TOPIC": settings.changelog_topic,
                "MICROSEG_GROUP_ID": settings.group_id,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if embedded:
            env["MICROSEG_FIX_END_OFFSETS"] = "true"
        if rules_dir is not None:
            env["MICROSEG_RULES_DIR"] = str(rules_dir)
        if settings.model_path is not None:
            env["MICROSEG_MODEL_PATH"] = str(settings.model_path)
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerRun:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "microseg", "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _get(self, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
            return response.read()

    def check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"the worker exited with {self.process.returncode}:\n{self.log_tail()}")

    def log_tail(self, limit: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-limit:]
        return ""

    def health(self) -> dict[str, Any] | None:
        try:
            return orjson.loads(self._get("/health", 1.0))
        except (OSError, ValueError):
            return None

    def counted(self) -> int:
        """Input records the worker has accounted for: processed + rejected + duplicates (from /metrics)."""
        text = self._get("/metrics").decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(("microseg_events_processed_total{", "microseg_events_rejected_total{", "microseg_events_duplicate_total ")):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def wait_ready(self, partitions: int, timeout: float = 180.0) -> float:
        """Poll /health every 20 ms; the ``time.time()`` at which every partition was first seen ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            found = self.health()
            if found and len(found.get("ready", ())) >= partitions:
                return time.time()
            time.sleep(0.02)
        raise RuntimeError(f"the worker was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def wait_counted(self, expected: int, timeout: float, on_count: Callable[[int], None] | None = None) -> int:
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(OSError):
                seen = self.counted()
            if on_count is not None:
                on_count(seen)
            if seen >= expected:
                return seen
            time.sleep(0.25)
        raise RuntimeError(f"the worker accounted for {seen} of {expected} records within {timeout:.0f} s:\n{self.log_tail()}")

    def wait_idle(self, settle_s: float = 0.5, timeout: float = 30.0) -> None:
        """Until /health ``batches`` stops moving (the last batch's outputs and flush are done)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            found = self.health()
            batches = found.get("batches") if found else None
            if batches is not None and batches == last:
                return
            last = batches
            time.sleep(settle_s)

    def ready_logged_at(self) -> float | None:
        """When the worker logged its last ``partition N ready`` line (its own clock, ms resolution).

        The consumer starts fetching right after: this is when the first input is consumed. The
        worker's web endpoints share its event loop, so polling them would see this late.
        """
        found = None
        for match in _READY_LINE.finditer(self.log_tail(1 << 20)):
            found = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        return found

    def peak_rss_mb(self) -> float | None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        return None

    def stop(self) -> None:
        stop_process(self.process)


def _start_profiler(pid: int, path: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return None
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--output", str(path), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_profiler(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- latency ------------------------------------------------------------------------------


async def paced_produce(settings: Settings, bootstrap: str, lines: list[bytes], keys: list[bytes], rate: float,
                        on_sent: Callable[[int], None] | None = None) -> dict[int, int]:
    """Send ``lines`` at ``rate`` per second in 5 ms slices, each record stamped with its send time (ms).

    Returns the stamp of every line by index.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap.split(","), acks=1, linger_ms=0, enable_idempotence=False, **settings.aiokafka_kwargs())
    await producer.start()
    stamps: dict[int, int] = {}
    futures = []
    try:
        started = time.perf_counter()
        sent = 0
        while sent < len(lines):
            due = min(len(lines), int((time.perf_counter() - started) * rate) + 1)
            while sent < due:
                stamp = int(time.time() * 1000)
                futures.append(await producer.send(settings.input_topic, value=lines[sent], key=keys[sent], timestamp_ms=stamp))
                stamps[sent] = stamp
                sent += 1
            if on_sent is not None:
                on_sent(sent)
            await asyncio.sleep(0.005)
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return stamps


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


# -- replay and peer ----------------------------------------------------------------------


class _CountingSink:
    def __init__(self) -> None:
        self.count = 0

    def changes(self, records: Any) -> None:
        self.count += len(records)

    def messages(self, records: Any) -> None:
        self.count += len(records)

    def dead_letter(self, record: Any) -> None:
        self.count += 1


def replay_figures(lines: list[bytes], settings: Settings) -> dict[str, Any]:
    """The pure core over ``lines`` in-process; events/s and the mean encoded state size."""
    from microseg.engine.tools.replay import replay
    from microseg.engine.startup import load_predictive_model, load_ruleset, tune_gc
    from microseg.segments.process import Core
    from microseg.segments.state import encode

    core = Core(load_ruleset(settings), load_predictive_model(settings))
    tune_gc()
    started = time.perf_counter()
    stats, states = replay(lines, core, _CountingSink())
    seconds = time.perf_counter() - started
    sizes = [len(encode(s)) for s in states.values()]
    sizes.sort()
    return {
        "replay_events_per_s": round(len(lines) / seconds),
        "replay_seconds": round(seconds, 3),
        "state_bytes_per_customer": round(sum(sizes) / len(sizes)) if sizes else 0,
        "state_bytes_p99": sizes[min(len(sizes) - 1, int(len(sizes) * 0.99))] if sizes else 0,
        "customers_seen": len(states),
        "replay_changes": stats.changes,
        "replay_messages": stats.messages,
    }


def run_peer(settings: Settings, bootstrap: str, events: int, rules_dir: Path | None, workdir: Path, timeout: float) -> dict[str, Any]:
    """The quix-streams-hosted core (``engine.bench_peer``) in a subprocess over the same input topic."""
    if importlib.util.find_spec("quixstreams") is None:
        return {"peer_events_per_s": None, "peer_note": "skipped: quixstreams is not installed (pip install 'microseg[bench]')"}
    command = [
        sys.executable, "-m", "microseg.engine.tools.bench_peer",
        "--bootstrap", bootstrap, "--topic", settings.input_topic, "--output", f"{settings.input_topic}-peer-out",
        "--group", f"{settings.group_id}-peer", "--events", str(events), "--state-dir", str(workdir / "peer-state"),
    ]
    if rules_dir is not None:
        command += ["--rules", str(rules_dir)]
    log_path = workdir / "peer.log"
    with open(log_path, "wb") as log:
        try:
            done = subprocess.run(command, stdout=subprocess.PIPE, stderr=log, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"peer_events_per_s": None, "peer_note": f"failed: the quix-streams peer did not finish within {timeout:.0f} s"}
    for line in reversed(done.stdout.decode(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = log_path.read_text(errors="replace")[-1500:]
    return {"peer_events_per_s": None, "peer_note": f"failed: the quix-streams peer exited with {done.returncode}: {tail}"}


# -- one run ------------------------------------------------------------------------------


@contextlib.contextmanager
def _broker(base: Settings) -> Iterator[tuple[str, bool]]:
    from microseg.engine.kafka.broker import broker_for

    with broker_for(base, create_topics=False) as endpoint:
        yield endpoint.bootstrap, endpoint.embedded


def _worker_phase(cfg: BenchConfig, base: Settings, bootstrap: str, embedded: bool, lines: list[bytes], keys: list[bytes],
                  latency_lines: int, workdir: Path, progress: _Progress) -> tuple[dict[str, Any], Settings]:
    """Pre-load, raw consume, the worker end to end, then the latency phase; the worker stopped at the end."""
    from microseg.engine.kafka.broker import ensure_topics

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = _bench_settings(base, prefix, cfg.partitions)
    ensure_topics(bootstrap, settings)
    main_lines, main_keys = lines[: cfg.events], keys[: cfg.events]
    result: dict[str, Any] = {}

    progress.phase("pre-loading the input topic", cfg.events)
    seconds = asyncio.run(preload(settings, bootstrap, main_lines, main_keys, progress.update))
    result["produce_per_s"] = round(cfg.events / seconds)

    if cfg.raw:
        progress.phase("raw aiokafka consumer", None)
        result["raw_consume_per_s"] = round(cfg.events / asyncio.run(raw_consume(settings, bootstrap, cfg.events)))

    progress.phase("starting the worker", None)
    worker = WorkerRun(settings, bootstrap, embedded, cfg.rules_dir, workdir).start()
    profiler = None
    try:
        t_ready = worker.wait_ready(cfg.partitions)
        if cfg.profile is not None:
            profiler = _start_profiler(worker.pid, cfg.profile)
        progress.phase("worker: pre-loaded input", cfg.events)
        worker.wait_counted(cfg.events, cfg.worker_timeout_s, progress.update)
        worker.wait_idle()
        _stop_profiler(profiler)
        profiler = None
        topics = [settings.changes_topic, settings.messages_topic, settings.changelog_topic]
        written = asyncio.run(read_topics(settings, bootstrap, topics))
        t_last = max((ts for records in written.values() for ts, _ in records), default=None)
        if t_last is None:
            raise RuntimeError("the worker wrote nothing to its output and changelog topics")
        t_logged = worker.ready_logged_at()
        result["start_clock"] = "worker log" if t_logged is not None else "health poll"
        elapsed = t_last / 1000 - (t_logged if t_logged is not None else t_ready)
        result["events_per_s"] = round(cfg.events / elapsed)
        result["worker_seconds"] = round(elapsed, 3)
        result["changes_written"] = len(written[settings.changes_topic])
        result["changelog_records"] = len(written[settings.changelog_topic])

        if latency_lines:
            extra = lines[cfg.events : cfg.events + latency_lines]
            extra_keys = keys[cfg.events : cfg.events + latency_lines]
            ids = event_ids(extra)
            progress.phase(f"latency at {cfg.latency_rate:,.0f} events/s", len(extra))
            stamps = asyncio.run(paced_produce(settings, bootstrap, extra, extra_keys, cfg.latency_rate, progress.update))
            worker.wait_counted(cfg.events + len(extra), 120.0)
            worker.wait_idle()
            sent_at = {ids[i]: stamp for i, stamp in stamps.items()}
            changes = asyncio.run(read_topics(settings, bootstrap, [settings.changes_topic]))[settings.changes_topic]
            latencies = []
            for ts, value in changes:
                cause = orjson.loads(value).get("cause")
                if cause in sent_at:
                    latencies.append(max(ts - sent_at[cause], 0))
            result["p50_ms"] = percentile(latencies, 50)
            result["p99_ms"] = percentile(latencies, 99)
            result["latency_samples"] = len(latencies)
            result["latency_events"] = len(extra)
        result["worker_peak_rss_mb"] = worker.peak_rss_mb()
    except BaseException:
        _stop_profiler(profiler)
        raise
    finally:
        worker.stop()
    return result, settings


def _targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    def check(value: Any, target: float, higher: bool) -> dict[str, Any]:
        if value is None:
            return {"target": target, "value": None, "met": None}
        return {"target": target, "value": value, "met": bool(value >= target if higher else value <= target)}

    out = {
        "events_per_s": check(result.get("events_per_s"), TARGETS["events_per_s"], True),
        "replay_events_per_s": check(result.get("replay_events_per_s"), TARGETS["replay_events_per_s"], True),
        "p99_ms": check(result.get("p99_ms"), TARGETS["p99_ms"], False),
        "state_bytes_per_customer": check(result.get("state_bytes_per_customer"), TARGETS["state_bytes_per_customer"], False),
    }
    peer = result.get("peer_events_per_s")
    if peer:
        out["events_per_s_vs_peer"] = check(result.get("events_per_s"), peer, True) | {"goal": True}
    return out


def run_bench(cfg: BenchConfig, base: Settings | None = None) -> dict[str, Any]:
    """One full run; returns the JSON object ``microseg bench --json`` prints."""
    base = base or load_settings()
    if cfg.rules_dir is not None:
        base = base.model_copy(update={"rules_dir": cfg.rules_dir})
    progress = _Progress(cfg.progress)
    workdir = Path(tempfile.mkdtemp(prefix="microseg-bench-"))
    started = time.perf_counter()
    try:
        latency_lines = int(cfg.latency_rate * cfg.latency_seconds) if cfg.latency_rate > 0 and cfg.latency_seconds > 0 else 0
        progress.phase("simulating events", None)
        lines, keys = make_lines(cfg.events + latency_lines, cfg.customers, cfg.seed)
        result: dict[str, Any] = {
            "events": cfg.events,
            "customers": cfg.customers,
            "partitions": cfg.partitions,
            "rules": str(cfg.rules_dir) if cfg.rules_dir else "starter",
            "latency_rate": cfg.latency_rate,
            "latency_seconds": cfg.latency_seconds,
        }
        with _broker(base) as (bootstrap, embedded):
            result["broker"] = "embedded" if embedded else bootstrap
            figures, settings = _worker_phase(cfg, base, bootstrap, embedded, lines, keys, latency_lines, workdir, progress)
            result |= figures
            if cfg.replay:
                progress.phase("replay (no Kafka)", None)
                result |= replay_figures(lines[: cfg.events], base)
            if cfg.peer:
                progress.phase("quix-streams peer", None)
                result |= run_peer(settings, bootstrap, cfg.events, cfg.rules_dir, workdir, cfg.worker_timeout_s)
            else:
                result.setdefault("peer_events_per_s", None)
            if not embedded:
                _delete_topics(settings, bootstrap)
        for key in ("events_per_s", "produce_per_s", "raw_consume_per_s", "replay_events_per_s", "p50_ms", "p99_ms",
                    "state_bytes_per_customer", "worker_peak_rss_mb", "peer_events_per_s"):
            result.setdefault(key, None)
        progress.phase("done", None)
        result["phase_seconds"] = progress.seconds
        result["targets"] = _targets(result)
        result["machine"] = machine_info()
        result["bench_seconds"] = round(time.perf_counter() - started, 1)
        return result
    finally:
        progress.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# -- the growth series --------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.'])(\d+(?:\.\d+)?)(?![\w.'])")


def clone_rules(source: Path, target: Path, segments: int) -> int:
    """Copy the rule files of ``source`` to ``target`` and add clones of its segments, with scaled
    numeric thresholds, until there are ``segments`` segments; returns the count."""
    import yaml

    from microseg.segments.rulefiles import load_rules

    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.yaml")):
        shutil.copy(path, target / path.name)
    base = load_rules(source)
    originals = [(s.id, s.when.source) for s in base.segments]
    clones: list[dict[str, str]] = []
    round_ = 1
    while len(originals) + len(clones) < segments:
        factor = 1 + 0.15 * round_
        for seg_id, when in originals:
            if len(originals) + len(clones) >= segments:
                break

            def scale(match: re.Match[str]) -> str:
                text = match.group(1)
                if "." in text:
                    return f"{float(text) * factor:.3g}"
                return str(max(int(text), round(int(text) * factor)))

            clones.append({"id": f"{seg_id}_x{round_}", "description": f"clone of {seg_id}, thresholds x{factor:.2f}", "when": _NUMBER.sub(scale, when)})
        round_ += 1
    if clones:
        (target / "zz_scale_clones.yaml").write_text(yaml.safe_dump({"version": 1, "segments": clones}, sort_keys=False))
    return len(load_rules(target).segments)


def run_scale(cfg: BenchConfig, out: Path, base: Settings | None = None, *, customers: tuple[int, ...] = (10_000, 100_000, 1_000_000),
              segments: tuple[int, ...] = (0, 250), events_per_customer: int = 2) -> dict[str, Any]:
    """The growth series; writes ``scale.md``, ``scale.json`` and ``scale.png`` to ``out``.

    Customers: ``events_per_customer`` events for each customer (``make_population_lines``: every
    customer present, the same event mix at every size). Segments: the starter rules (0 = as
    shipped) and clones up to 250, at ``cfg.customers`` and ``cfg.events``.
    """
    from microseg.engine.startup import packaged_rules_dir

    base = base or load_settings()
    out.mkdir(parents=True, exist_ok=True)
    source = cfg.rules_dir or packaged_rules_dir()
    rows: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="microseg-scale-"))
    progress = _Progress(cfg.progress)
    try:
        points: list[tuple[str, int, int, Path | None]] = []
        for count in customers:
            points.append(("customers", count, events_per_customer * count, cfg.rules_dir))
        for count in segments:
            rules_dir = cfg.rules_dir
            if count:
                rules_dir = workdir / f"rules-{count}"
                clone_rules(source, rules_dir, count)
            points.append(("segments", cfg.customers, cfg.events, rules_dir))
        with _broker(base) as (bootstrap, embedded):
            for series, count, events, rules_dir in points:
                from microseg.segments.rulefiles import load_rules

                n_segments = len(load_rules(rules_dir or source).segments)
                progress.note(f"{series}: {count:,} customers, {n_segments} segments, {events:,} events")
                if events / count >= 10:
                    lines, keys = make_lines(events, count, cfg.seed)
                    generator = "simulate"
                else:
                    lines, keys = make_population_lines(events, count, cfg.seed)
                    generator = "population"
                events = len(lines)
                point_cfg = replace(cfg, events=events, customers=count, rules_dir=rules_dir, raw=False, profile=None)
                settings_base = base.model_copy(update={"rules_dir": rules_dir}) if rules_dir else base
                point_dir = workdir / f"{series}-{count}-{n_segments}"
                point_dir.mkdir()
                figures, settings = _worker_phase(point_cfg, settings_base, bootstrap, embedded, lines, keys, 0, point_dir, progress)
                replayed = replay_figures(lines, settings_base)
                _delete_topics(settings, bootstrap)
                row = {
                    "series": series, "generator": generator, "customers": count, "customers_seen": replayed["customers_seen"], "segments": n_segments,
                    "events": events, "events_per_s": figures["events_per_s"], "replay_events_per_s": replayed["replay_events_per_s"],
                    "produce_per_s": figures["produce_per_s"], "state_bytes_per_customer": replayed["state_bytes_per_customer"],
                    "worker_peak_rss_mb": figures["worker_peak_rss_mb"],
                }
                rows.append(row)
                (out / "scale.json").write_text(json.dumps({"rows": rows}, indent=2))
                del lines, keys
    finally:
        progress.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = _scale_summary(rows)
    report = {"rows": rows, "targets": summary, "machine": machine_info(), "partitions": cfg.partitions}
    (out / "scale.json").write_text(json.dumps(report, indent=2))
    (out / "scale.md").write_text(scale_markdown(report))
    with contextlib.suppress(ImportError):
        plot_scale(rows, out / "scale.png")
    return report


def _scale_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_customers = [r for r in rows if r["series"] == "customers"]
    by_segments = [r for r in rows if r["series"] == "segments"]
    summary: dict[str, Any] = {}
    if len(by_customers) >= 2:
        small, large = by_customers[0], by_customers[-1]
        ratio = large["events_per_s"] / small["events_per_s"]
        summary["customers_ratio"] = {"from": small["customers"], "to": large["customers"], "value": round(ratio, 3),
                                      "target": f">= {TARGETS['scale_customers_ratio']}", "met": ratio >= TARGETS["scale_customers_ratio"]}
    if len(by_segments) >= 2:
        small, large = by_segments[0], by_segments[-1]
        cost = small["events_per_s"] / large["events_per_s"]
        summary["segments_cost"] = {"from": small["segments"], "to": large["segments"], "value": round(cost, 3),
                                    "target": f"<= {TARGETS['scale_segments_cost']}", "met": cost <= TARGETS["scale_segments_cost"]}
    return summary


def scale_markdown(report: dict[str, Any]) -> str:
    lines = [
        "| series | customers | customers seen | segments | events | worker events/s | replay events/s | state bytes/customer | worker peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['series']} ({r.get('generator', 'simulate')}) | {r['customers']:,} | {r['customers_seen']:,} | {r['segments']} | {r['events']:,} | {r['events_per_s']:,} | "
            f"{r['replay_events_per_s']:,} | {r['state_bytes_per_customer']} | {r['worker_peak_rss_mb']} |"
        )
    lines.append("")
    for name, item in report["targets"].items():
        lines.append(f"- {name}: {item['value']} (target {item['target']}): {'met' if item['met'] else 'missed'}")
    m = report["machine"]
    lines.append(f"\nMachine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']} GiB RAM; {report['partitions']} partitions.")
    return "\n".join(lines) + "\n"


def plot_scale(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, series, x_key, label in ((axes[0], "customers", "customers", "customers"), (axes[1], "segments", "segments", "segments")):
        pts = [r for r in rows if r["series"] == series]
        if not pts:
            continue
        xs = [r[x_key] for r in pts]
        ax.plot(xs, [r["events_per_s"] for r in pts], "o-", label="worker end to end")
        ax.plot(xs, [r["replay_events_per_s"] for r in pts], "s--", label="replay (no Kafka)")
        ax.axhline(TARGETS["events_per_s"], color="grey", linestyle=":", label="20k target")
        if series == "customers":
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("events/s")
        ax.set_ylim(bottom=0)
        ax.set_title(f"throughput vs {label}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- presentation -------------------------------------------------------------------------

_ROWS = (
    ("events_per_s", "worker end to end (events/s)"),
    ("produce_per_s", "load generator (events/s)"),
    ("raw_consume_per_s", "raw aiokafka consumer (events/s)"),
    ("replay_events_per_s", "replay, no Kafka (events/s)"),
    ("peer_events_per_s", "quix-streams peer (events/s)"),
    ("p50_ms", "produce -> segment change p50 (ms)"),
    ("p99_ms", "produce -> segment change p99 (ms)"),
    ("state_bytes_per_customer", "state bytes per customer (mean)"),
    ("worker_peak_rss_mb", "worker peak RSS (MiB)"),
)


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    targets = result.get("targets", {})
    table = Table(title=f"microseg bench: {result['events']:,} events, {result['customers']:,} customers, {result['partitions']} partitions")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("", justify="left")
    for key, label in _ROWS:
        value = result.get(key)
        text = "-" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"
        target = targets.get(key)
        mark = "" if not target or target["met"] is None else "[green]met[/]" if target["met"] else "[red]missed[/]"
        table.add_row(label, text, "" if not target else f"{target['target']:,}", mark)
    vs = targets.get("events_per_s_vs_peer")
    if vs and vs["met"] is not None:
        table.add_row("goal: worker >= peer", "", "", "[green]met[/]" if vs["met"] else "[red]missed[/]")
    console = Console()
    console.print(table)
    if result.get("peer_note"):
        console.print(result["peer_note"], highlight=False)
    m = result["machine"]
    console.print(f"machine: {m['nproc']} cores, {m['cpu']}, {m['ram_gib']} GiB; broker {result['broker']}; {result['bench_seconds']} s", highlight=False)
