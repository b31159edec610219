"""``microseg demo`` end to end: piped output, --duration and Ctrl-C stop everything it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from microseg.engine.tools.demo import Board

ENTERED = re.compile(r"^\d\d:\d\d:\d\d \S+ entered [a-z0-9_]+ \(cause \S+\)$")


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in ticks) of a live process, or None once it is gone (zombies count as gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def _descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root`` as pid -> start time (the start time guards against pid reuse)."""
    parents: dict[int, int] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := _stat(int(entry))) is not None:
            parents[int(entry)], starts[int(entry)] = found
    family, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in family:
                family[pid] = starts[pid]
                frontier.append(pid)
    return family


class DemoRun:
    """The demo as a subprocess with piped output: lines with arrival times, and every descendant seen."""

    def __init__(self, *args: str, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MICROSEG_")}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "microseg", "demo", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[tuple[float, str]] = []
        self.children: dict[int, int] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def watch(self, until: float, stop_when: object = None) -> None:
        """Record descendants until the demo exits, ``until`` passes, or ``stop_when()`` holds."""
        while self.proc.poll() is None and time.monotonic() - self.started < until:
            self.children.update(_descendants(self.proc.pid))
            if callable(stop_when) and stop_when():
                return
            time.sleep(0.3)

    def finish(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def first(self, pattern: re.Pattern[str]) -> float | None:
        return next((t for t, line in self.lines if pattern.match(line)), None)

    def survivors(self) -> list[int]:
        deadline = time.monotonic() + 3
        while True:
            alive = [pid for pid, start in self.children.items() if (found := _stat(pid)) is not None and found[1] == start]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.2)


def _pids(run: DemoRun) -> set[int]:
    return {int(m) for m in re.findall(r"pid (\d+)", run.text())}


@pytest.mark.broker
@pytest.mark.slow
def test_demo_with_duration_prints_entries_early_and_leaves_nothing_behind(tmp_path: Path) -> None:
    run = DemoRun("--duration", "40", "--customers", "50", "--rate", "100", cwd=tmp_path)
    try:
        run.watch(until=90)
        code = run.finish(60)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    ended = time.monotonic() - run.started
    output = run.text()
    assert code == 0, output[-3000:]
    first_entry = run.first(ENTERED)
    assert first_entry is not None, output[-3000:]
    assert first_entry < ended - 15, f"first entry at {first_entry:.1f} s of {ended:.1f} s"
    assert "worker ready after" in output and "summary:" in output
    assert "stopping (duration reached)" in output and "embedded broker stopped" in output
    assert _pids(run) <= set(run.children), f"broker and worker pids {_pids(run)} not among the children seen {run.children}"
    assert len(run.children) >= 2
    assert run.survivors() == []
    print(f"first entry line {first_entry:.1f} s after start; demo ran {ended:.1f} s")


@pytest.mark.broker
@pytest.mark.slow
def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    run = DemoRun("--customers", "50", "--rate", "100", "--duration", "120", cwd=tmp_path)
    try:
        run.watch(until=60, stop_when=lambda: run.first(ENTERED) is not None)
        assert run.proc.poll() is None, run.text()[-3000:]
        assert run.first(ENTERED) is not None, run.text()[-3000:]
        run.children.update(_descendants(run.proc.pid))
        interrupted = time.monotonic()
        run.proc.send_signal(signal.SIGINT)
        code = run.finish(40)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    output = run.text()
    assert code == 0, output[-3000:]
    assert "stopping (SIGINT)" in output and "embedded broker stopped" in output
    assert time.monotonic() - interrupted < 25
    assert _pids(run) <= set(run.children)
    assert run.survivors() == []


def _change(change_id: str, customer: str, segment: str, change: str, cause: str = "e-1", **extra: object) -> dict[str, object]:
    return {"change_id": change_id, "customer_id": customer, "segment": segment, "change": change, "cause": cause, **extra}


def test_board_counts_members_once_and_tracks_cells() -> None:
    board = Board(started=0.0, segment_ids=("cart_abandoner", "never"))
    board.apply("change", _change("a", "c-1", "cart_abandoner", "entered", "e-9813"), 43203.0)
    board.apply("change", _change("a", "c-1", "cart_abandoner", "entered", "e-9813"), 43203.0)
    board.apply("change", _change("b", "c-2", "cart_abandoner", "entered"), 1.0)
    board.apply("change", _change("c", "c-2", "cart_abandoner", "exited", "tick"), 2.0)
    board.apply("change", _change("m1", "c-1", "micro", "moved", **{"from": None, "to": "new|low"}), 2.0)
    board.apply("change", _change("m2", "c-2", "micro", "moved", **{"from": None, "to": "new|low"}), 2.0)
    board.apply("change", _change("m3", "c-2", "micro", "moved", **{"from": "new|low", "to": None}), 2.0)
    board.apply("message", {"decision_id": "d", "customer_id": "c-1", "message": "cart_reminder", "channel": "email", "send_at": "x", "reason": "r"}, 3.0)
    assert board.populations() == [("cart_abandoner", 1, 2, 1), ("never", 0, 0, 0)]
    assert dict(board.cells) == {"new|low": 1}
    assert (board.changes, board.ticks, board.micro_moves, board.messages, board.first_entry) == (3, 1, 3, 1, 43203.0)
    lines = board.drain()
    assert len(lines) == 4 and board.drain() == []
    assert ENTERED.match(lines[0]) and lines[0].endswith("c-1 entered cart_abandoner (cause e-9813)")
    assert "message cart_reminder via email" in lines[3]
