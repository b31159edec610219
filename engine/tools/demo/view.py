"""The demo on screen: plain lines when piped, a rich live board on a terminal."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from typing import IO, Any

from microseg.engine.tools.demo.board import Board, clock_text

__all__ = ["PlainView", "LiveScreen"]


_BANDS = (("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6-20", 6, 20), ("21+", 21, 10**12))


class PlainView:
    """Piped output: one line per move or message, plus a summary line every few seconds."""

    def __init__(self, out: IO[str], every_s: float) -> None:
        self.out = out
        self.every_s = every_s
        self._last_summary = time.monotonic()

    def say(self, text: str) -> None:
        self.out.write(f"{clock_text(time.time())} {text}\n")
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


class LiveScreen:
    """The rich live view on a terminal."""

    def __init__(self, title: str) -> None:
        from rich.console import Console

        self.console = Console()
        self.title = title
        self._live: Any = None
        self._notes: deque[str] = deque(maxlen=4)

    def say(self, text: str) -> None:
        self._notes.append(f"{clock_text(time.time())} {text}")
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
                moves.add_row(clock_text(move.seen), move.customer_id, Text(move.change, style=style), move.segment, move.cause)
            msgs = Table(expand=True, box=None, title="latest messages decided", title_justify="left")
            for column in ("time", "customer", "message", "channel", "send at"):
                msgs.add_column(column, no_wrap=True)
            for decision in list(reversed(board.decisions))[:6]:
                msgs.add_row(clock_text(decision.seen), decision.customer_id, decision.message, decision.channel, decision.send_at)
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
