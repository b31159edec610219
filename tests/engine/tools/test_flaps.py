"""Flapping figures: entries per customer and UTC day, short stays, and their table in ``rules preview``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from microseg.engine.tools.cli import app
from microseg.engine.tools.flaps import FlapCounter, SegmentFlaps, flap_table
from microseg.segments.testing import event_bytes


def _change(customer: str, segment: str, change: str, at: str) -> dict[str, Any]:
    return {"customer_id": customer, "segment": segment, "change": change, "at": at, "cause": "e"}


def test_entries_are_counted_per_customer_and_utc_day() -> None:
    counter = FlapCounter()
    counter.add([
        _change("a", "s", "entered", "2026-03-01T10:00:00Z"),
        _change("a", "s", "exited", "2026-03-01T10:00:05Z"),
        _change("a", "s", "entered", "2026-03-01T10:00:09Z"),
        _change("a", "s", "exited", "2026-03-01T23:30:00Z"),
        _change("a", "s", "entered", "2026-03-01T23:59:59.5Z"),
        _change("a", "s", "exited", "2026-03-02T00:00:00Z"),
        _change("a", "s", "entered", "2026-03-02T00:00:01Z"),
        _change("b", "s", "entered", "2026-03-01T12:00:00Z"),
        _change("b", "t", "entered", "2026-03-01T12:00:00Z"),
        {"customer_id": "b", "segment": "micro", "change": "moved", "at": "2026-03-01T12:00:00Z", "from": None, "to": "x"},
    ])
    s, t = counter.segments()
    assert s == SegmentFlaps("s", entries=5, max_per_day=3, worst=("a", "2026-03-01"), stays=3, short_stays=2)
    assert t == SegmentFlaps("t", entries=1, max_per_day=1, worst=("b", "2026-03-01"), stays=0, short_stays=0)
    assert counter.worst() == s


def test_a_stay_of_exactly_the_threshold_is_not_short_and_an_exit_without_entry_is_ignored() -> None:
    counter = FlapCounter(short=600)
    counter.changes([
        _change("a", "s", "exited", "2026-03-01T09:00:00Z"),
        _change("a", "s", "entered", "2026-03-01T10:00:00Z"),
        _change("a", "s", "exited", "2026-03-01T10:10:00Z"),
        _change("a", "s", "entered", "2026-03-01T11:00:00+01:00"),
        _change("a", "s", "exited", "2026-03-01T10:09:59Z"),
    ])
    (s,) = counter.segments()
    assert (s.entries, s.max_per_day, s.stays, s.short_stays) == (2, 2, 2, 1)


def test_nothing_entered_gives_no_worst_and_no_table() -> None:
    counter = FlapCounter()
    counter.messages([{"message": "m"}])
    counter.dead_letter({"reason": "x"})
    assert counter.worst() is None and counter.segments() == []
    assert flap_table(counter) is None


def test_rules_preview_names_the_segment_that_flaps_on_page_views(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(
        "version: 1\nsegments:\n"
        "  - id: naive_bouncer\n    when: bounces_30d >= 1\n"
        "  - id: visitor\n    when: sessions_30d >= 1\n"
    )
    lines = []
    for hour in (9, 11, 15):
        lines.append(event_bytes("c1", "session_started", f"2026-03-02T{hour:02d}:00:00Z", page="/"))
        lines.append(event_bytes("c1", "page_view", f"2026-03-02T{hour:02d}:00:10Z", page="/"))
        lines.append(event_bytes("c1", "page_view", f"2026-03-02T{hour:02d}:00:40Z", page="/about"))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    result = CliRunner().invoke(app, ["rules", "preview", str(rules), "--events", str(events)], terminal_width=200)
    assert result.exit_code == 0, result.output
    table = result.stdout[result.stdout.index("Flapping"):]
    (row,) = [line for line in table.splitlines() if "naive_bouncer" in line]
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == ["naive_bouncer", "3", "c1 2026-03-02", "3", "3"]
    assert "visitor" not in table
