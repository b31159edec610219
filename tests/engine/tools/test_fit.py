"""`microseg fit`: CSV and event input, bad rows, model file, plots, and the 100k-customer timing."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from microseg.engine.tools.fit import fit_command, parse_day, read_purchase_events, read_transactions_csv
from microseg.segments.fitting import simulate_transactions
from microseg.segments.predictive import BgNbdParams, GammaGammaParams, load_model

CDNOW = Path(__file__).parents[2] / "data" / "CDNOW_sample.txt"
app = typer.Typer()
app.command()(fit_command)
runner = CliRunner()


def write_synthetic_csv(path: Path, customers: int, seed: int = 0, days: int = 730) -> int:
    """A BG/NBD-distributed purchase history as ``customer_id,date,amount`` (plus an ignored column)."""
    bg = BgNbdParams(0.5, 6.0, 0.7, 3.0)
    gg = GammaGammaParams(6.25, 3.74, 15.44)
    customer, day, amount = simulate_transactions(bg, gg, customers, days, np.random.default_rng(seed))
    start = date(2024, 1, 1)
    day_text = np.array([(start + timedelta(days=i)).isoformat() for i in range(days + 1)])
    lines = np.char.add(np.char.add(np.char.add("c", customer.astype(str)), ","), day_text[day])
    lines = np.char.add(np.char.add(np.char.add(lines, ","), np.char.mod("%.2f", amount)), ",web")
    path.write_text("customer_id,date,amount,channel\n" + "\n".join(lines.tolist()) + "\n")
    return int(customer.shape[0])


def _cdnow_csv(path: Path) -> Path:
    rows = ["customer_id,date,amount"]
    for line in CDNOW.read_text().splitlines():
        if line.strip():
            _, cid, day, _, amount = line.split()
            rows.append(f"{cid},{day},{amount}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_parse_day_formats() -> None:
    assert parse_day("1997-01-01") == parse_day("19970101") == date(1997, 1, 1).toordinal()
    assert parse_day("2024-03-01T23:30:00+02:00") == date(2024, 3, 1).toordinal()
    assert parse_day("2024-03-01T23:30:00Z") == date(2024, 3, 1).toordinal()
    with pytest.raises(ValueError, match="unreadable date"):
        parse_day("01/03/2024")


def test_cdnow_command_writes_paper_model_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "model.json"
    plots = tmp_path / "plots"
    result = runner.invoke(
        app,
        ["--transactions", str(_cdnow_csv(tmp_path / "cdnow.csv")), "--out", str(out), "--calibration-end", "1997-09-30", "--plots", str(plots)],
    )
    assert result.exit_code == 0, result.output
    model = load_model(out)
    assert round(model.bgnbd.r, 3) == 0.243 and round(model.bgnbd.a, 3) == 0.793
    assert round(model.gamma_gamma.p, 2) == 6.25
    assert model.fit is not None and model.fit.customers == 2357
    assert model.fit.calibration_end == "1997-09-30"
    assert model.fit.bgnbd_log_likelihood == pytest.approx(-9582.43, abs=0.01)
    raw = json.loads(out.read_text())
    assert raw["format"] == "microseg.predictive" and raw["version"] == 1 and raw["unit"] == "weeks"
    for name in ("calibration_vs_holdout.png", "p_alive_matrix.png", "clv_distribution.png"):
        assert (plots / name).read_bytes()[:4] == b"\x89PNG"


def test_bad_rows_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    src = tmp_path / "tx.csv"
    write_synthetic_csv(src, 300, seed=3)
    lines = src.read_text().splitlines()
    lines[2] = "c1,not-a-date,3.00,web"
    lines[4] = "c2,2024-01-05,-1,web"
    lines[6] = "c3"
    lines[8] = ",2024-01-05,1,web"
    src.write_text("\n".join(lines) + "\n")
    log = read_transactions_csv(src)
    assert [p.line for p in log.problems] == [3, 5, 7, 9]
    assert "unreadable date" in log.problems[0].message
    assert ">= 0" in log.problems[1].message
    result = runner.invoke(app, ["--transactions", str(src), "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert f"{src}:3: unreadable date" in result.output
    assert "4 rows skipped" in result.output


def test_header_is_required(tmp_path: Path) -> None:
    src = tmp_path / "tx.csv"
    src.write_text("c1,2024-01-01,3.0\n")
    result = runner.invoke(app, ["--transactions", str(src), "--out", str(tmp_path / "m.json")])
    assert result.exit_code == 1
    assert "header lacks customer_id, date, amount" in result.output


def test_columns_in_any_order(tmp_path: Path) -> None:
    src = tmp_path / "tx.csv"
    src.write_text("amount,store,Date,customer_id\n5,x,2024-01-01,a\n7,y,2024-01-01,a\n2,z,2024-01-09,a\n")
    log = read_transactions_csv(src)
    assert log.ids == ("a",)
    assert list(log.amount) == [5.0, 7.0, 2.0]
    assert list(log.day) == [date(2024, 1, 1).toordinal()] * 2 + [date(2024, 1, 9).toordinal()]


def test_options_are_checked(tmp_path: Path) -> None:
    src = tmp_path / "tx.csv"
    write_synthetic_csv(src, 50)
    neither = runner.invoke(app, ["--out", str(tmp_path / "m.json")])
    assert neither.exit_code == 1 and "exactly one of" in neither.output
    bad_date = runner.invoke(app, ["--transactions", str(src), "--calibration-end", "soon", "--out", str(tmp_path / "m.json")])
    assert bad_date.exit_code == 1 and "YYYY-MM-DD" in bad_date.output
    missing = runner.invoke(app, ["--transactions", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "m.json")])
    assert missing.exit_code == 1 and "cannot read" in missing.output


def _event(i: int, customer: str, ts: str, kind: str = "purchase", **props: object) -> str:
    return json.dumps({"event_id": f"e{i}", "customer_id": customer, "type": kind, "ts": ts, "props": props})


def test_from_events(tmp_path: Path) -> None:
    src = tmp_path / "events.jsonl"
    write_synthetic_csv(tmp_path / "tx.csv", 400, seed=5)
    lines = []
    for i, row in enumerate((tmp_path / "tx.csv").read_text().splitlines()[1:]):
        cid, day, amount, _ = row.split(",")
        lines.append(_event(i, cid, f"{day}T12:00:00+00:00", order_id=f"o{i}", amount=float(amount)))
    lines.insert(3, _event(10**6, "c1", "2024-01-02T10:00:00Z", kind="page_view", page="/"))
    lines.insert(5, "{broken")
    lines.insert(7, _event(10**6 + 1, "c1", "yesterday", amount=1.0))
    lines.insert(9, lines[0])
    lines.insert(11, _event(10**6 + 2, "c1", "2024-01-02T10:00:00Z", kind="refund", order_id="o1", amount=3.0))
    src.write_text("\n".join(lines) + "\n")
    log = read_purchase_events(src)
    assert [p.line for p in log.problems] == [6, 8]
    assert len(log) == len(lines) - 5
    out = tmp_path / "m.json"
    result = runner.invoke(app, ["--from-events", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_model(out).fit is not None


@pytest.mark.slow
def test_fit_100k_customers_under_30s(tmp_path: Path) -> None:
    src = tmp_path / "tx100k.csv"
    rows = write_synthetic_csv(src, 100_000, seed=1)
    started = time.perf_counter()
    result = runner.invoke(app, ["--transactions", str(src), "--out", str(tmp_path / "m.json")])
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    print(f"\nmicroseg fit: 100,000 customers, {rows} rows in {elapsed:.2f} s")
    assert elapsed < 30.0


def test_degenerate_fit_is_written_with_a_warning(tmp_path: Path) -> None:
    """A population whose dropout probability is the same for everyone fits a and b in the
    millions: `microseg fit` says so (the model still scores finite values), and so does the loader."""
    from microseg.segments.predictive import ModelWarning, score

    bg = BgNbdParams(0.5, 5.0, 1e9, 3e9)
    gg = GammaGammaParams(6.0, 4.0, 15.0)
    customer, day, amount = simulate_transactions(bg, gg, 5000, 400, np.random.default_rng(5))
    start = date(2024, 1, 1)
    rows = [f"c{c},{(start + timedelta(days=int(d))).isoformat()},{a:.2f}" for c, d, a in zip(customer, day, amount)]
    src = tmp_path / "tx.csv"
    src.write_text("customer_id,date,amount\n" + "\n".join(rows) + "\n")
    out = tmp_path / "m.json"
    result = runner.invoke(app, ["--transactions", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: BG/NBD a + b = " in result.output and "same dropout probability" in result.output
    with pytest.warns(ModelWarning, match="same dropout probability"):
        model = load_model(out)
    s = score(model, 0, 0.0, 1.0, None)
    assert np.isfinite(s.expected_purchases_90d) and np.isfinite(s.clv_12m)


def test_amounts_beyond_the_event_limit_are_bad_rows(tmp_path: Path) -> None:
    src = tmp_path / "tx.csv"
    src.write_text("customer_id,date,amount\nc1,2024-01-01,1e13\nc1,2024-01-02,1.5\n")
    log = read_transactions_csv(src)
    assert [p.line for p in log.problems] == [2] and "<= 1e+12" in log.problems[0].message
