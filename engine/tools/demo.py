"""``microseg demo``: embedded broker + a worker subprocess + simulated customers, watched live.

The worker runs as ``python -m microseg worker`` in its own session, so Ctrl-C reaches only the
demo, which then stops things in order (producer, worker, follower, broker); a parent-death
signal makes even ``kill -9`` of the demo leave no orphan. Segment populations and micro-segment
cells are computed from the ``segment-changes`` stream itself (idempotent under redelivery), so
the view needs nothing from the worker but its outputs and ``GET /health`` for readiness.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson

from microseg.engine.kafka.broker import EmbeddedBroker, _set_parent_death_signal, ensure_topics, free_port
from microseg.engine.settings import Settings
from microseg.errors import MicrosegError

__all__ = ["DemoOptions", "Board", "Move", "Decision", "run_demo"]

_JOIN_HINT = "waiting for the worker to join its consumer group (takes ~5-10 s on the embedded broker)"
_WORKER_MARK = ".microseg-demo-worker"


@dataclass(frozen=True)
class DemoOptions:
    """What ``microseg demo`` was asked for; ``duration=None`` runs until Ctrl-C."""

    customers: int = 300
    rate: float = 200.0
    duration: float | None = None
    seed: int = 7
    data_dir: Path | None = None
    plain: bool = False
    tick_interval_s: float = 2.0
    summary_every_s: float = 5.0
    worker_stop_timeout_s: float = 15.0


@dataclass(frozen=True)
class Move:
    """One segment entry or exit as seen on ``segment-changes``."""

    seen: float
    customer_id: str
    segment: str
    change: str
    cause: str

    def line(self) -> str:
        return f"{_clock(self.seen)} {self.customer_id} {self.change} {self.segment} (cause {self.cause})"


@dataclass(frozen=True)
class Decision:
    """One next-best-message decision as seen on ``next-best-messages``."""

    seen: float
    customer_id: str
    message: str
    channel: str
    send_at: str
    reason: str

    def line(self) -> str:
        return f"{_clock(self.seen)} {self.customer_id} message {self.message} via {self.channel}, send at {self.send_at} ({self.reason})"


def _clock(moment: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(moment))


class _Rate:
    """Events per second over the last few seconds, from (time, running total) samples."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float, total: int) -> float:
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window_s:
            self._samples.popleft()
        first_t, first_n = self._samples[0]
        return (total - first_n) / (now - first_t) if now > first_t else 0.0


@dataclass
class Board:
    """Everything the view shows, fed by the follower thread and read by the main thread under ``lock``.

    Membership is kept per customer and change ids are deduplicated, so redelivered records
    (at-least-once) never skew the counts.
    """

    started: float
    segment_ids: tuple[str, ...] = ()
    keep: int = 12
    lock: threading.Lock = field(default_factory=threading.Lock)
    members: dict[str, set[str]] = field(default_factory=dict)
    entered: Counter[str] = field(default_factory=Counter)
    exited: Counter[str] = field(default_factory=Counter)
    codes: dict[str, str] = field(default_factory=dict)
    cells: Counter[str] = field(default_factory=Counter)
    moves: deque[Move] = field(default_factory=deque)
    decisions: deque[Decision] = field(default_factory=deque)
    pending: list[str] = field(default_factory=list)
    seen_ids: set[str] = field(default_factory=set)
    changes: int = 0
    micro_moves: int = 0
    ticks: int = 0
    messages: int = 0
    first_entry: float | None = None
    produced: int = 0
    producing_done: bool = False

    def apply(self, topic_kind: str, record: dict[str, Any], now: float) -> None:
        """Fold one output record in; ``topic_kind`` is ``change`` or ``message``."""
        with self.lock:
            if topic_kind == "change":
                self._change(record, now)
            else:
                self._message(record, now)

    def _change(self, record: dict[str, Any], now: float) -> None:
        change_id = str(record.get("change_id", ""))
        if change_id in self.seen_ids:
            return
        self.seen_ids.add(change_id)
        customer = str(record.get("customer_id", "?"))
        segment = str(record.get("segment", "?"))
        cause = str(record.get("cause", "?"))
        if cause == "tick":
            self.ticks += 1
        if segment == "micro":
            self.micro_moves += 1
            old, new = self.codes.pop(customer, None), record.get("to")
            if old is not None:
                self.cells[old] -= 1
                if self.cells[old] <= 0:
                    del self.cells[old]
            if new:
                self.codes[customer] = str(new)
                self.cells[str(new)] += 1
            return
        self.changes += 1
        kind = str(record.get("change", "?"))
        members = self.members.setdefault(segment, set())
        if kind == "entered":
            members.add(customer)
            self.entered[segment] += 1
            if self.first_entry is None:
                self.first_entry = now
        elif kind == "exited":
            members.discard(customer)
            self.exited[segment] += 1
        move = Move(now, customer, segment, kind, cause)
        self._remember(self.moves, move)
        self.pending.append(move.line())

    def _message(self, record: dict[str, Any], now: float) -> None:
        decision_id = "m:" + str(record.get("decision_id", ""))
        if decision_id in self.seen_ids:
            return
        self.seen_ids.add(decision_id)
        self.messages += 1
        decision = Decision(
            now,
            str(record.get("customer_id", "?")),
            str(record.get("message", "?")),
            str(record.get("channel", "?")),
            str(record.get("send_at", "?")),
            str(record.get("reason", "")),
        )
        self._remember(self.decisions, decision)
        self.pending.append(decision.line())

    def _remember(self, queue: deque[Any], item: Any) -> None:
        queue.append(item)
        while len(queue) > self.keep:
            queue.popleft()

    def populations(self) -> list[tuple[str, int, int, int]]:
        """``(segment, members, entered, exited)`` for every known segment, largest first."""
        names = list(dict.fromkeys([*self.segment_ids, *self.members]))
        rows = [(s, len(self.members.get(s, ())), self.entered[s], self.exited[s]) for s in names]
        return sorted(rows, key=lambda r: (-r[1], -r[2], r[0]))

    def drain(self) -> list[str]:
        with self.lock:
            lines, self.pending = self.pending, []
        return lines

    def summary(self, now: float, rate: float) -> str:
        with self.lock:
            top = ", ".join(f"{s} {n}" for s, n, _, _ in self.populations()[:5] if n)
            return (
                f"{_clock(now)} summary: {self.produced:,} events produced ({rate:,.0f}/s now), "
                f"{self.changes:,} segment changes ({self.ticks:,} by time), {self.messages:,} messages, "
                f"{len(self.cells):,} micro cells over {len(self.codes):,} customers; largest: {top or '-'}"
            )


_BANDS = (("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6-20", 6, 20), ("21+", 21, 10**12))


class _Worker:
    """``python -m microseg worker`` in its own session, with a parent-death signal, logging to a file."""

    def __init__(self, bootstrap: str, embedded: bool, data_dir: Path, options: DemoOptions) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.log_path = data_dir / "worker.log"
        self.stop_timeout = options.worker_stop_timeout_s
        self.env = {
            **os.environ,
            "MICROSEG_BROKER": bootstrap,
            "MICROSEG_DATA_DIR": str(data_dir),
            "MICROSEG_WEB_HOST": "127.0.0.1",
            "MICROSEG_WEB_PORT": str(self.port),
            "MICROSEG_TICKS": "true",
            "MICROSEG_TICK_INTERVAL_S": str(options.tick_interval_s),
            "PYTHONUNBUFFERED": "1",
        }
        if embedded:
            self.env["MICROSEG_FIX_END_OFFSETS"] = "true"
            self.env.setdefault("MICROSEG_SESSION_TIMEOUT_S", "6")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        parent = os.getpid()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "microseg", "worker"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: _set_parent_death_signal(parent),
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1.0) as response:
                found = orjson.loads(response.read())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, hurry: Callable[[], bool] = lambda: False) -> int | None:
        """SIGTERM the worker's process group; SIGKILL after the timeout, or as soon as ``hurry()`` says so."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while proc.poll() is None and time.monotonic() < deadline and not hurry():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return proc.returncode


def _produce(settings: Settings, bootstrap: str, options: DemoOptions, board: Board, stop: threading.Event, errors: list[str]) -> None:
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
        for due, event in live(options.customers, options.rate, options.seed, lambda: datetime.now(timezone.utc)):
            delay = due.timestamp() - time.time()
            if delay > 0.002 and stop.wait(delay):
                break
            if stop.is_set():
                break
            producer.send(topic, key=str(event["customer_id"]).encode(), value=orjson.dumps(event))
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


def _follow(settings: Settings, bootstrap: str, embedded: bool, board: Board, stop: threading.Event, errors: list[str]) -> None:
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


class _Stopper:
    """SIGINT/SIGTERM set ``stop``; a second one asks for haste (the worker is killed, not drained)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.signals = 0
        self.reason: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        self.reason = self.reason or signal.Signals(signum).name
        self.stop.set()

    def __enter__(self) -> _Stopper:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def hurry(self) -> bool:
        return self.signals > 1


class _Plain:
    """Piped output: one line per move or message, plus a summary line every few seconds."""

    def __init__(self, out: IO[str], every_s: float) -> None:
        self.out = out
        self.every_s = every_s
        self._last_summary = time.monotonic()

    def say(self, text: str) -> None:
        self.out.write(f"{_clock(time.time())} {text}\n")
        self.out.flush()

    def refresh(self, board: Board, status: str, rate: float) -> None:
        lines = board.drain()
        if lines:
            self.out.write("\n".join(lines) + "\n")
        if time.monotonic() - self._last_summary >= self.every_s:
            self._last_summary = time.monotonic()
            self.out.write(board.summary(time.time(), rate) + "\n")
        self.out.flush()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        yield


class _Screen:
    """The rich live view on a terminal."""

    def __init__(self, title: str) -> None:
        from rich.console import Console

        self.console = Console()
        self.title = title
        self._live: Any = None
        self._notes: deque[str] = deque(maxlen=4)

    def say(self, text: str) -> None:
        self._notes.append(f"{_clock(time.time())} {text}")
        if self._live is None:
            self.console.print(self._notes[-1])

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        from rich.live import Live

        with Live(console=self.console, refresh_per_second=4, transient=False, redirect_stdout=False) as live:
            self._live = live
            try:
                yield
            finally:
                self._live = None

    def refresh(self, board: Board, status: str, rate: float) -> None:
        board.drain()
        if self._live is not None:
            self._live.update(self._render(board, status, rate))

    def _render(self, board: Board, status: str, rate: float) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        with board.lock:
            now = time.time()
            first = f"{board.first_entry - board.started:.1f} s" if board.first_entry else "-"
            head = Text.assemble(
                (f"{status}\n", "bold cyan"),
                f"elapsed {now - board.started:5.1f} s · first entry after {first} · ",
                (f"{rate:,.0f} events/s", "bold"),
                f" ({board.produced:,} produced{', stream ended' if board.producing_done else ''}) · "
                f"{board.changes:,} segment changes ({board.ticks:,} by time) · {board.messages:,} messages",
            )
            pops = Table(expand=True, box=None, title="segment populations", title_justify="left")
            for column, justify in (("segment", "left"), ("in", "right"), ("entered", "right"), ("exited", "right")):
                pops.add_column(column, justify=justify)  # type: ignore[arg-type]
            for segment, size, entered, exited in board.populations()[:18]:
                pops.add_row(segment, f"{size:,}", f"{entered:,}", f"{exited:,}", style=None if size else "dim")
            moves = Table(expand=True, box=None, title="latest entries / exits", title_justify="left")
            for column in ("time", "customer", "change", "segment", "cause"):
                moves.add_column(column, no_wrap=True)
            for move in reversed(board.moves):
                style = "green" if move.change == "entered" else "red"
                moves.add_row(_clock(move.seen), move.customer_id, Text(move.change, style=style), move.segment, move.cause)
            msgs = Table(expand=True, box=None, title="latest messages decided", title_justify="left")
            for column in ("time", "customer", "message", "channel", "send at"):
                msgs.add_column(column, no_wrap=True)
            for decision in list(reversed(board.decisions))[:6]:
                msgs.add_row(_clock(decision.seen), decision.customer_id, decision.message, decision.channel, decision.send_at)
            sizes = list(board.cells.values())
            bands = " · ".join(f"{name}: {sum(1 for n in sizes if lo <= n <= hi)}" for name, lo, hi in _BANDS)
            biggest = ", ".join(f"{code} ({n})" for code, n in board.cells.most_common(3))
            micro = Text(
                f"{len(board.cells):,} micro-segment cells over {len(board.codes):,} customers "
                f"({board.micro_moves:,} moves) — cells by size {bands}\nlargest: {biggest or '-'}"
            )
        grid = Table.grid(expand=True)
        grid.add_column(ratio=2)
        grid.add_column(ratio=3)
        grid.add_row(pops, Group(moves, msgs))
        notes = Text("\n".join(self._notes), style="dim")
        return Panel(Group(head, grid, Panel(micro, title="micro-segments", title_align="left"), notes), title=self.title, subtitle="Ctrl-C to stop")


def _segment_ids(settings: Settings) -> tuple[str, ...]:
    from microseg.engine.startup import load_ruleset

    try:
        return tuple(load_ruleset(settings).segment_ids)
    except MicrosegError:
        return ()


def _prepare_dirs(options: DemoOptions, embedded: bool) -> tuple[Path, Path, bool]:
    """The demo's directory (temporary unless given), the worker's state dir in it, and whether to delete it after.

    With the embedded broker nothing survives a run (Tansu keeps memory only), so a worker state
    left by an earlier demo in ``--data-dir`` is stale and is cleared first.
    """
    if options.data_dir is None:
        root = Path(tempfile.mkdtemp(prefix="microseg-demo-"))
        temporary = True
    else:
        root = options.data_dir
        root.mkdir(parents=True, exist_ok=True)
        temporary = False
    worker_dir = root / "worker"
    if embedded and (worker_dir / _WORKER_MARK).exists():
        shutil.rmtree(worker_dir)
    worker_dir.mkdir(parents=True, exist_ok=True)
    (worker_dir / _WORKER_MARK).write_text("state of a 'microseg demo' worker; cleared by the next demo on the embedded broker\n")
    return root, worker_dir, temporary


def run_demo(settings: Settings, options: DemoOptions, *, out: IO[str] | None = None) -> int:
    """Run the demo until ``duration`` or SIGINT/SIGTERM; 0 on a clean stop (Ctrl-C included), 1 if a part failed."""
    stream = out or sys.stdout
    started = time.time()
    plain = options.plain or not stream.isatty()
    view: _Plain | _Screen = _Plain(stream, options.summary_every_s) if plain else _Screen("microseg demo")
    embedded = settings.broker is None
    stop = threading.Event()
    errors: list[str] = []
    root, worker_dir, temporary = _prepare_dirs(options, embedded)
    broker: EmbeddedBroker | None = None
    worker: _Worker | None = None
    threads: list[threading.Thread] = []
    code = 0
    with _Stopper(stop) as stopper:
        try:
            if embedded:
                broker = EmbeddedBroker().start()
                bootstrap = broker.bootstrap
                view.say(f"embedded broker (Tansu) on {bootstrap}, pid {broker.pid}")
            else:
                bootstrap = ",".join(settings.bootstrap_servers or ())
                view.say(f"configured broker {bootstrap}")
            worker = _Worker(bootstrap, embedded, worker_dir, options)
            worker.start()
            view.say(f"worker pid {worker.pid}, web http://127.0.0.1:{worker.port}, state and log in {worker_dir}")
            ensure_topics(bootstrap, settings)
            board = Board(started, _segment_ids(settings))
            view.say(f"simulating {options.customers} customers at {options.rate:g} events/s after ~14 days of history")
            view.say(_JOIN_HINT)
            threads = [
                threading.Thread(target=_produce, args=(settings, bootstrap, options, board, stop, errors), name="demo-producer", daemon=True),
                threading.Thread(target=_follow, args=(settings, bootstrap, embedded, board, stop, errors), name="demo-follower", daemon=True),
            ]
            for thread in threads:
                thread.start()
            code = _watch(view, board, worker, options, stop, errors, started)
        except MicrosegError as exc:
            view.say(f"error: {exc}")
            code = 2
        finally:
            stop.set()
            view.say(f"stopping ({stopper.reason or ('duration reached' if code == 0 else 'error')}): producer, worker, broker")
            for thread in threads:
                if thread.name == "demo-producer":
                    thread.join(10)
            if worker is not None:
                returned = worker.stop(lambda: stopper.hurry)
                view.say(f"worker stopped (exit {returned})")
            for thread in threads:
                thread.join(10)
            if broker is not None:
                broker.stop()
                view.say("embedded broker stopped")
            if temporary:
                shutil.rmtree(root, ignore_errors=True)
    for error in errors:
        view.say(f"error: {error}")
    return code or (1 if errors else 0)


def _watch(view: _Plain | _Screen, board: Board, worker: _Worker, options: DemoOptions, stop: threading.Event, errors: list[str], started: float) -> int:
    """The main loop: readiness, refreshes, the duration; returns 1 if the worker died."""
    rate = _Rate()
    ready_at: float | None = None
    announced_entry = False
    next_health = 0.0
    status = _JOIN_HINT
    deadline = None if options.duration is None else started + options.duration
    with view.running():
        while not stop.is_set():
            now = time.time()
            if not worker.alive():
                errors.append(f"the worker exited with {worker.process.returncode if worker.process else '?'}; its log ends:\n{worker.log_tail()}")
                return 1
            if ready_at is None and now >= next_health:
                next_health = now + 0.5
                health = worker.health()
                if health and health.get("partitions"):
                    ready_at = now
                    parts = ",".join(str(p) for p in health["partitions"])
                    status = f"worker ready after {ready_at - started:.1f} s (partitions {parts})"
                    view.say(status)
            if not announced_entry and board.first_entry is not None:
                announced_entry = True
                view.say(f"first segment entry {board.first_entry - started:.1f} s after start")
            if ready_at is not None:
                status = f"running: worker pid {worker.pid}, ready after {ready_at - started:.1f} s"
            view.refresh(board, status, rate.sample(now, board.produced))
            if deadline is not None and now >= deadline:
                return 0
            stop.wait(0.25)
        view.refresh(board, status, rate.sample(time.time(), board.produced))
    return 0
