"""The demo's live view fits the terminal: 80x24 shows every part within 80 columns and 24 lines,
with long names cut, never wrapped; a bigger terminal shows more rows (issue 18)."""

from __future__ import annotations

import time

import pytest
from rich.console import Console

from microseg.engine.tools.demo.board import Board
from microseg.engine.tools.demo.view import LiveScreen, render_board


def _busy_board(segments: int = 30, records: int = 400) -> Board:
    names = tuple(f"segment_{i:02d}_with_a_long_name" for i in range(segments))
    board = Board(started=time.time() - 30, segment_ids=names)
    now = time.time()
    for i in range(records):
        board.apply("change", {"change_id": f"c{i}", "customer_id": f"customer-{i:08d}", "segment": names[i % segments], "change": "exited" if i % 3 == 0 else "entered", "cause": "tick" if i % 5 == 0 else f"event-{i:016x}"}, now)
        board.apply("change", {"change_id": f"m{i}", "customer_id": f"customer-{i:08d}", "segment": "micro", "change": "moved", "to": f"stage{i % 4}|value{i % 3}|channel{i % 5}", "cause": "x"}, now)
        board.apply("message", {"decision_id": f"d{i}", "customer_id": f"customer-{i:08d}", "message": "winback_10pct_with_a_long_name", "channel": "email", "send_at": "2026-03-01T10:00:00.000Z", "reason": "r"}, now)
    board.produced = 1_234_567
    return board


def _lines(board: Board, width: int, height: int, notes: list[str] | None = None) -> list[str]:
    console = Console(width=width, height=height, record=True, file=open("/dev/null", "w"), force_terminal=True, color_system=None)  # noqa: SIM115
    console.print(render_board(board, "running: worker ready, producing events", 12_345.0, notes or ["12:00:00 a note " + "x" * 200], width=width, height=height, title="microseg demo"))
    return console.export_text().rstrip("\n").split("\n")


@pytest.mark.parametrize(("width", "height"), [(80, 24), (100, 30), (132, 43)])
def test_a_busy_board_fits_the_terminal(width: int, height: int) -> None:
    lines = _lines(_busy_board(), width, height)
    assert len(lines) == height and max(len(line) for line in lines) <= width
    text = "\n".join(lines)
    for part in ("segment populations", "latest entries / exits", "latest messages decided", "micro-segments", "largest:", "Ctrl-C to stop", "12:00:00 a note"):
        assert part in text, part
    assert "1,234,567 sent" in text and "12,345 events/s" in text
    assert lines[0].startswith("╭") and lines[-1].startswith("╰"), "the panel is closed: nothing cut at the bottom"


def test_a_taller_terminal_shows_more_rows() -> None:
    small = "\n".join(_lines(_busy_board(), 80, 24))
    tall = "\n".join(_lines(_busy_board(), 80, 48))
    assert tall.count("custome") > small.count("custome")
    assert tall.count("segment_") > small.count("segment_")


def test_an_empty_board_fits_too() -> None:
    lines = _lines(Board(started=time.time()), 80, 24, notes=[])
    assert len(lines) == 24 and max(len(line) for line in lines) <= 80


def test_the_live_screen_renders_at_its_console_size() -> None:
    screen = LiveScreen("microseg demo")
    screen.console = Console(width=80, height=24, record=True, file=open("/dev/null", "w"), force_terminal=True, color_system=None)  # noqa: SIM115
    screen.console.print(screen._render(_busy_board(), "running", 10.0))
    lines = screen.console.export_text().rstrip("\n").split("\n")
    assert len(lines) == 24 and max(len(line) for line in lines) <= 80


def test_the_console_address_shows_in_the_bottom_border_within_80x24() -> None:
    console = Console(width=80, height=24, record=True, file=open("/dev/null", "w"), force_terminal=True, color_system=None)  # noqa: SIM115
    console.print(render_board(_busy_board(), "running", 1.0, ["a note"], width=80, height=24, title="microseg demo", web="http://127.0.0.1:54321"))
    lines = console.export_text().rstrip("\n").split("\n")
    assert len(lines) == 24 and max(len(line) for line in lines) <= 80
    assert "console http://127.0.0.1:54321/console/" in lines[-1] and "Ctrl-C to stop" in lines[-1]
