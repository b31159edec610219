"""``microseg import``: purchase histories (CSV, the CDNOW layout) as purchase events: times,
deterministic ids, bad rows reported with file:line and skipped, sorted output that decodes and replays."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from microseg.engine.tools.cli import app
from microseg.engine.tools.importer import CsvColumns, ImportInputError, ImportOptions, detect_layout, import_purchases
from microseg.engine.tools.replay import replay
from microseg.engine.tools.sinks import ListSink
from microseg.schemas.events import decode_event

CDNOW_SAMPLE = Path(__file__).parents[2] / "data" / "CDNOW_sample.txt"
STARTER = Path(__file__).parents[3] / "rules"
runner = CliRunner()


def _events(lines: list[bytes]) -> list[dict]:
    return [orjson.loads(line) for line in lines]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_rows_become_purchase_events_at_noon_utc(tmp_path: Path) -> None:
    src = _write(tmp_path / "tx.csv", "customer_id,date,amount,store\nc1,2024-03-01,29.33,x\nc2,2024-03-01T23:30:00+02:00,5,y\nc1,20240302,0,z\n")
    result = import_purchases(src)
    events = _events(result.lines)
    assert result.layout == "csv" and result.rows == 3 and not result.bad and result.customers == 2
    assert [(e["customer_id"], e["ts"], e["props"]["amount"]) for e in events] == [
        ("c1", "2024-03-01T12:00:00Z", 29.33),
        ("c2", "2024-03-01T21:30:00Z", 5.0),  # an RFC 3339 time keeps its instant, written in UTC
        ("c1", "2024-03-02T12:00:00Z", 0.0),
    ]
    for event in events:
        assert event["type"] == "purchase"
        assert event["event_id"].startswith("p-") and len(event["event_id"]) == 22
        assert event["props"]["order_id"] == event["event_id"]  # one order per row
        assert set(event) == {"event_id", "customer_id", "type", "ts", "props"}
    assert result.keys == [b"c1", b"c2", b"c1"]
    assert result.first_t == datetime(2024, 3, 1, 12, tzinfo=timezone.utc).timestamp()


def test_other_column_names_order_and_quantity_columns_and_a_delimiter(tmp_path: Path) -> None:
    src = _write(tmp_path / "tx.csv", "Client;Day;Total;order_id;quantity\nk9;2024-01-05;12.50;A-1;3\n")
    options = ImportOptions(columns=CsvColumns(customer_id="client", date="day", amount="total"), delimiter=";",
                            currency="USD", channel="web", item_category="music")
    (event,) = _events(import_purchases(src, options).lines)
    assert event["customer_id"] == "k9" and event["channel"] == "web"
    assert event["props"] == {"order_id": "A-1", "amount": 12.5, "currency": "USD",
                              "items": [{"product_id": "music", "category": "music", "quantity": 3, "price": 4.17}]}
    decode_event(orjson.dumps(event))
    with pytest.raises(ImportInputError, match="header lacks customer_id, amount"):
        import_purchases(src, ImportOptions(delimiter=";", columns=CsvColumns(date="day")))


def test_cdnow_sample_layout(tmp_path: Path) -> None:
    result = import_purchases(CDNOW_SAMPLE)
    assert result.layout == "cdnow"
    assert len(result.lines) == result.rows == 6919 and not result.bad
    assert result.customers == 2357
    first, last = _events(result.lines[:1])[0], _events(result.lines[-1:])[0]
    assert first["ts"] == "1997-01-01T12:00:00Z" and last["ts"] == "1998-06-30T12:00:00Z"
    assert first["customer_id"] == "00004" and first["props"]["amount"] == 29.33  # the master id, first column
    # The master file's own layout (four fields, lifetimes' header line) gives the same events for the same rows.
    master = _write(tmp_path / "CDNOW_master.txt", "customer_id date number_of_cds dollar_value\r\n"
                    "    00004   19970101   2   29.33\r\n    00004   19970118   2   29.73\r\n")
    assert detect_layout(master) == "cdnow"
    from_master = import_purchases(master)
    assert from_master.rows == 2 and not from_master.bad
    assert from_master.lines == [line for line in result.lines if b'"00004"' in line][:2]


def test_bad_rows_are_reported_with_file_and_line_and_the_rest_is_imported(tmp_path: Path) -> None:
    src = _write(tmp_path / "tx.csv", "\n".join([
        "customer_id,date,amount",
        "c1,2024-01-01,10",
        "c2,not-a-date,3.00",          # line 3
        "c3,2024-01-02,-1",            # line 4
        "c4",                          # line 5
        ",2024-01-02,1",               # line 6
        "c5,2024-01-02T10:00:00,1",    # line 7: no offset
        "c6,1970-01-01,1",             # line 8: before 1990
        "c7,2024-01-03,lots",          # line 9
        "c8,2024-01-03,7.5",
    ]) + "\n")
    result = import_purchases(src)
    assert [(b.line, b.reason.split(" ")[0]) for b in result.bad] == [
        (3, "unreadable"), (4, "amount"), (5, "expected"), (6, "customer_id"), (7, "timestamp"), (8, "date"), (9, "amount")]
    assert "no UTC offset" in result.bad[4].reason and ">= 0" in result.bad[1].reason and result.bad[2].text == "c4"
    assert [e["customer_id"] for e in _events(result.lines)] == ["c1", "c8"]
    assert result.rows == 9

    out, rejects = tmp_path / "events.jsonl", tmp_path / "rejects.jsonl"
    done = runner.invoke(app, ["import", str(src), "--out", str(out), "--rejects", str(rejects)])
    assert done.exit_code == 0, done.output
    assert f"{src}:3: unreadable date 'not-a-date'" in done.output
    assert f"{src}:7: timestamp" in done.output
    assert "imported 2 purchases of 2 customers" in done.output and "7 rows skipped" in done.output
    assert out.read_bytes() == b"\n".join(result.lines) + b"\n"
    reported = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert [r["source"] for r in reported] == [f"{src}:{n}" for n in (3, 4, 5, 6, 7, 8, 9)]
    assert reported[0]["row"] == "c2,not-a-date,3.00"


def test_cdnow_bad_rows_and_nothing_importable(tmp_path: Path) -> None:
    src = _write(tmp_path / "cdnow.txt", "00001 19970101 1 11.77\n00002 19970112 one 12.00\n00003 19970230 1 5\n00004 19970101 1\n")
    result = import_purchases(src)
    assert [(b.line, b.reason) for b in result.bad] == [
        (2, "quantity 'one' is not a whole number"),
        (3, "unreadable date '19970230' (use YYYY-MM-DD, YYYYMMDD or an RFC 3339 timestamp)"),
        (4, "expected 4 fields (customer_id YYYYMMDD quantity amount) or 5 (with a sample id), got 3"),
    ]
    assert len(result.lines) == 1
    nothing = _write(tmp_path / "bad.txt", "00002 19970112 one 12.00\n")
    out = tmp_path / "out.jsonl"
    done = runner.invoke(app, ["import", str(nothing), "--out", str(out)])
    assert done.exit_code == 1 and "no row could be imported" in done.output and not out.exists()
    headless = runner.invoke(app, ["import", str(_write(tmp_path / "h.csv", "id,day,total\n1,2024-01-01,3\n"))])
    assert headless.exit_code == 2 and "header lacks customer_id, date, amount" in headless.output
    events = runner.invoke(app, ["import", str(_write(tmp_path / "e.jsonl", '{"event_id": "x"}\n'))])
    assert events.exit_code == 2 and "already JSON-lines events" in events.output


def test_ids_are_deterministic_and_survive_reordering_and_appending(tmp_path: Path) -> None:
    rows = ["c1,2024-01-01,10", "c2,2024-01-01,10", "c1,2024-01-01,10", "c1,2024-01-05,3"]
    a = _write(tmp_path / "a.csv", "customer_id,date,amount\n" + "\n".join(rows) + "\n")
    b = _write(tmp_path / "b.csv", "customer_id,date,amount\n" + "\n".join(reversed(rows)) + "\nc3,2024-02-01,1\n")
    first, again, other = import_purchases(a), import_purchases(a), import_purchases(b)
    assert first.lines == again.lines
    ids = [e["event_id"] for e in _events(first.lines)]
    assert len(set(ids)) == 4  # two identical rows are two purchases, with two ids
    assert set(ids) < {e["event_id"] for e in _events(other.lines)}
    spaced = import_purchases(a, ImportOptions(namespace="shop-2"))
    assert not set(ids) & {e["event_id"] for e in _events(spaced.lines)}


def test_output_is_sorted_by_time_then_input_line(tmp_path: Path) -> None:
    # grouped by customer, as exports usually are
    src = _write(tmp_path / "tx.csv", "customer_id,date,amount\na,2024-01-03,1\na,2024-01-01,2\nb,2024-01-02,3\nb,2024-01-01,4\nc,2024-01-01T12:00:00Z,5\n")
    events = _events(import_purchases(src).lines)
    assert [(e["customer_id"], e["props"]["amount"]) for e in events] == [("a", 2.0), ("b", 4.0), ("c", 5.0), ("b", 3.0), ("a", 1.0)]
    times = [e["ts"] for e in events]
    assert times == sorted(times)
    midnight = _events(import_purchases(src, ImportOptions(time_of_day=datetime(2000, 1, 1, 0, 0).time())).lines)
    assert midnight[0]["ts"] == "2024-01-01T00:00:00Z"


def test_imported_events_decode_and_replay(tmp_path: Path) -> None:
    from microseg.segments.rulefiles import load_rules
    from microseg.segments.step import Core

    lines = import_purchases(CDNOW_SAMPLE).lines[:2000]
    for line in lines:
        decode_event(line)
    sink = ListSink()
    stats, states = replay(lines, Core(load_rules(STARTER), None), sink, until=datetime(1997, 7, 1, tzinfo=timezone.utc).timestamp())
    assert stats.events == 2000 and stats.rejected == 0 and stats.duplicates == 0 and not sink.dead_letters
    assert stats.changes > 0
    assert len(states) == len({orjson.loads(line)["customer_id"] for line in lines})
    stats_again, _ = replay(lines + lines[:10], Core(load_rules(STARTER), None), ListSink())
    assert stats_again.duplicates == 10  # re-importing the same rows is idempotent downstream
