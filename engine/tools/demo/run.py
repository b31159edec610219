"""``microseg demo``: start the broker (embedded unless configured) and the worker, run the streams,
watch, and stop everything in order on the duration, Ctrl-C or a failure."""

from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
from types import FrameType
from typing import IO, Any

from microseg.engine.kafka.broker import EmbeddedBroker, ensure_topics
from microseg.engine.settings import Settings
from microseg.engine.tools.demo.board import Board, RecentRate
from microseg.engine.tools.demo.options import DemoOptions
from microseg.engine.tools.demo.streams import follow_outputs, produce_live
from microseg.engine.tools.demo.view import LiveScreen, PlainView
from microseg.engine.tools.demo.worker_process import DemoWorker, prepare_dirs
from microseg.errors import MicrosegError

__all__ = ["run_demo"]


_JOIN_HINT = "waiting for the worker to join its consumer group (takes ~5-10 s on the embedded broker)"


class SignalStopper:
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

    def __enter__(self) -> SignalStopper:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def hurry(self) -> bool:
        return self.signals > 1


def _segment_ids(settings: Settings) -> tuple[str, ...]:
    from microseg.engine.startup import load_ruleset

    try:
        return tuple(load_ruleset(settings).segment_ids)
    except MicrosegError:
        return ()


def run_demo(settings: Settings, options: DemoOptions, *, out: IO[str] | None = None) -> int:
    """Run the demo until ``duration`` or SIGINT/SIGTERM; 0 on a clean stop (Ctrl-C included), 1 if a part failed."""
    stream = out or sys.stdout
    started = time.time()
    plain = options.plain or not stream.isatty()
    view: PlainView | LiveScreen = PlainView(stream, options.summary_every_s) if plain else LiveScreen("microseg demo")
    embedded = settings.broker is None
    stop = threading.Event()
    errors: list[str] = []
    root, worker_dir, temporary = prepare_dirs(options, embedded)
    broker: EmbeddedBroker | None = None
    worker: DemoWorker | None = None
    threads: list[threading.Thread] = []
    code = 0
    with SignalStopper(stop) as stopper:
        try:
            if embedded:
                broker = EmbeddedBroker().start()
                bootstrap = broker.bootstrap
                view.say(f"embedded broker (Tansu) on {bootstrap}, pid {broker.pid}")
            else:
                bootstrap = ",".join(settings.bootstrap_servers or ())
                view.say(f"configured broker {bootstrap}")
            worker = DemoWorker(bootstrap, embedded, worker_dir, options)
            worker.start()
            view.say(f"worker pid {worker.pid}, web http://127.0.0.1:{worker.port}, state and log in {worker_dir}")
            if isinstance(view, LiveScreen):
                view.web = f"http://127.0.0.1:{worker.port}"  # the console's address stays in the board's border
            ensure_topics(bootstrap, settings)
            board = Board(started, _segment_ids(settings))
            view.say(f"simulating {options.customers} customers at {options.rate:g} events/s after ~14 days of history")
            view.say(_JOIN_HINT)
            threads = [
                threading.Thread(target=produce_live, args=(settings, bootstrap, options, board, stop, errors), name="demo-producer", daemon=True),
                threading.Thread(target=follow_outputs, args=(settings, bootstrap, embedded, board, stop, errors), name="demo-follower", daemon=True),
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


def _watch(view: PlainView | LiveScreen, board: Board, worker: DemoWorker, options: DemoOptions, stop: threading.Event, errors: list[str], started: float) -> int:
    """The main loop: readiness, refreshes, the duration; returns 1 if the worker died."""
    rate = RecentRate()
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
