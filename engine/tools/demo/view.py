"""The demo on screen: plain lines when piped, a rich live board on a terminal."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from typing import IO, Any

from microseg.engine.tools.demo.board import Board, clock_text

__all__ = ["PlainView", "LiveScreen", "render_board", "FIXED_LINES"]


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
        self.web: str | None = None
        """The worker's web address (``http://127.0.0.1:PORT``) once known: the console's link in the border."""

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
        """The board, sized to the terminal: every line cut (never wrapped) to its width, and as many
        rows of each table as its height leaves once the fixed lines are drawn (80x24 at least)."""
        width, height = self.console.size
        return render_board(board, status, rate, list(self._notes), width=width, height=height, title=self.title, web=self.web)


def _table(title: str, columns: list[tuple[str, str, int | None]]) -> Any:
    """A borderless table whose cells never wrap: ``(header, justify, width or None for the rest)``."""
    from rich.table import Table

    table = Table(expand=True, box=None, title=title, title_justify="left", padding=(0, 1), pad_edge=False, title_style="bold")
    for header, justify, size in columns:
        table.add_column(header, justify=justify, no_wrap=True, overflow="ellipsis", width=size, ratio=None if size else 1)  # type: ignore[arg-type]
    return table


FIXED_LINES = 13
"""Lines drawn whatever the height: the panel's 2 borders, 2 of status, 2 of micro-segments, the
newest note, and the title and header of each of the 3 tables."""


def render_board(board: Board, status: str, rate: float, notes: list[str], *, width: int, height: int, title: str, web: str | None = None) -> Any:
    """The live view as one rich renderable of at most ``width`` columns and ``height`` lines (at
    least 80x24 is assumed; smaller terminals cut the bottom): the status, the segment populations
    two to a line, the latest entries and exits, the latest messages, the micro-segment cells and
    the newest note. Table rows are shared out from what the height leaves after ``FIXED_LINES``.
    ``web``: the worker's address; the bottom border then links its console."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    def line(*parts: Any) -> Text:
        text = Text.assemble(*parts)
        text.no_wrap, text.overflow = True, "ellipsis"
        return text

    with board.lock:
        now = time.time()
        rows = max(height - FIXED_LINES, 3)
        populations = board.populations()
        pairs = (len(populations) + 1) // 2
        pop_rows = min(pairs, max(1, rows - 4), max(1, (rows + 1) // 2))
        move_rows = min(len(board.moves), max(1, (rows - pop_rows + 1) // 2)) if board.moves else 1
        message_rows = max(1, rows - pop_rows - move_rows)
        first = f"{board.first_entry - board.started:.1f} s" if board.first_entry else "-"
        head = [
            line((status, "bold cyan"), f" · elapsed {now - board.started:,.0f} s · first entry after {first}"),
            line(
                (f"{rate:,.0f} events/s", "bold"),
                f" · {board.produced:,} sent{' (done)' if board.producing_done else ''} · {board.changes:,} changes "
                f"({board.ticks:,} by time) · {board.messages:,} messages",
            ),
        ]
        pops = _table("segment populations", [("segment", "left", None), ("in", "right", 6), ("+", "right", 5), ("-", "right", 5)] * 2)
        shown = populations[: pop_rows * 2]
        for index in range(pop_rows):
            cells: list[Any] = []
            for segment, size, entered, exited in shown[index * 2 : index * 2 + 2]:
                cells += [Text(segment, style=None if size else "dim"), f"{size:,}", f"{entered:,}", f"{exited:,}"]
            pops.add_row(*(cells + [""] * (8 - len(cells))))
        moves = _table("latest entries / exits", [("time", "left", 8), ("customer", "left", 12), ("change", "left", 7), ("segment", "left", None), ("cause", "left", 16)])
        for move in list(reversed(board.moves))[:move_rows]:
            style = "green" if move.change == "entered" else "red"
            moves.add_row(clock_text(move.seen), move.customer_id, Text(move.change, style=style), move.segment, move.cause)
        msgs = _table("latest messages decided", [("time", "left", 8), ("customer", "left", 12), ("message", "left", None), ("channel", "left", 8), ("send at (UTC)", "left", 17)])
        for decision in list(reversed(board.decisions))[:message_rows]:
            msgs.add_row(clock_text(decision.seen), decision.customer_id, decision.message, decision.channel, decision.send_at[:16].replace("T", " "))
        sizes = list(board.cells.values())
        bands = " ".join(f"{name}:{sum(1 for n in sizes if lo <= n <= hi)}" for name, lo, hi in _BANDS)
        biggest = ", ".join(f"{code} ({n})" for code, n in board.cells.most_common(3))
        micro = [
            line(("micro-segments ", "bold"), f"{len(board.cells):,} cells over {len(board.codes):,} customers ({board.micro_moves:,} moves) · by size {bands}"),
            line(f"largest: {biggest or '-'}"),
        ]
    note = line((notes[-1] if notes else "", "dim"))
    subtitle = f"console {web}/console/ · Ctrl-C to stop" if web else "Ctrl-C to stop"
    return Panel(Group(*head, pops, moves, msgs, *micro, note), title=title, subtitle=subtitle, width=width, height=height, padding=(0, 1))
