"""`microseg fit`: read a purchase history, fit BG/NBD + Gamma-Gamma, write the model file (and plots).

Input is either a CSV with a header naming ``customer_id``, ``date`` and ``amount`` (other
columns are ignored), with ``--from-events`` a JSON-lines file of CONTRACT §1 events of which
only ``purchase`` events count, or with ``--from-topic`` the input topic itself
(:mod:`microseg.engine.tools.topic_purchases`). Bad rows are reported as ``file:line: reason`` and
skipped; they never stop the fit. The arithmetic lives in :mod:`microseg.segments.fitting`.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import orjson
import typer

from microseg.errors import MicrosegError
from microseg.segments.fitting import (
    MAX_AMOUNT,
    CustomerSummary,
    expected_purchases_array,
    expected_spend_array,
    fit_bgnbd,
    fit_gamma_gamma,
    p_alive_array,
    summarise,
)
from microseg.segments.predictive import UNIT_DAYS, FitInfo, PredictiveModel, model_warnings
from microseg.segments.view import iso

__all__ = [
    "FitInputError",
    "RowProblem",
    "TransactionLog",
    "TransactionBuilder",
    "purchase_fields",
    "read_transactions_csv",
    "read_purchase_events",
    "parse_day",
    "build_model",
    "write_model",
    "write_plots",
    "fit_command",
]

_REQUIRED = ("customer_id", "date", "amount")
_SHOWN_PROBLEMS = 20
_UNIT = "weeks"


class FitInputError(MicrosegError):
    """The input file or options of `microseg fit` cannot be used as given."""


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A skipped input row: ``line`` is 1-based, as an editor shows it; ``where`` names it
    instead when it is not a line of a file (a topic's partition and offset)."""

    line: int
    message: str
    where: str | None = None


@dataclass(frozen=True, eq=False)
class TransactionLog:
    """Valid purchase rows as arrays: ``customer`` codes index ``ids``, ``day`` is a proleptic ordinal."""

    ids: tuple[str, ...]
    customer: np.ndarray
    day: np.ndarray
    amount: np.ndarray
    problems: tuple[RowProblem, ...]
    source: str

    def __len__(self) -> int:
        return int(self.customer.shape[0])


class TransactionBuilder:
    """Purchase rows as they are read, then ``build`` them into a ``TransactionLog``."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.customer: list[int] = []
        self.day: list[int] = []
        self.amount: list[float] = []
        self.problems: list[RowProblem] = []

    def add(self, customer_id: str, day: int, amount: float) -> None:
        code = self.codes.get(customer_id)
        if code is None:
            code = self.codes[customer_id] = len(self.codes)
        self.customer.append(code)
        self.day.append(day)
        self.amount.append(amount)

    def build(self, source: str) -> TransactionLog:
        return TransactionLog(
            ids=tuple(self.codes),
            customer=np.asarray(self.customer, dtype=np.int64),
            day=np.asarray(self.day, dtype=np.int64),
            amount=np.asarray(self.amount, dtype=np.float64),
            problems=tuple(self.problems),
            source=source,
        )


def parse_day(text: str) -> int:
    """Day ordinal of ``YYYY-MM-DD``, ``YYYYMMDD`` or an ISO/RFC 3339 timestamp (its own local date)."""
    s = text.strip()
    try:
        return date.fromisoformat(s).toordinal()
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(s).date().toordinal()
    except ValueError:
        raise ValueError(f"unreadable date {text!r} (use YYYY-MM-DD or an RFC 3339 timestamp)") from None


def _parse_amount(text: object) -> float:
    if isinstance(text, bool):
        raise ValueError(f"amount must be a number, got {text!r}")
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"amount must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or value > MAX_AMOUNT:
        raise ValueError(f"amount must be a finite number >= 0 and <= {MAX_AMOUNT:g}, got {text!r}")
    return value


def _open_text(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            yield from fh
    except OSError as exc:
        raise FitInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise FitInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def read_transactions_csv(path: Path) -> TransactionLog:
    """Read ``customer_id,date,amount`` rows (header required, any column order, extra columns ignored)."""
    reader = csv.reader(_open_text(path))
    header = next(reader, None)
    if header is None:
        raise FitInputError(f"{path}: the file is empty; expected a header with {', '.join(_REQUIRED)}")
    names = [h.strip().lower() for h in header]
    missing = [n for n in _REQUIRED if n not in names]
    if missing:
        msg = f"{path}:1: header lacks {', '.join(missing)} (found {', '.join(names) or 'nothing'}); the first row must name the columns customer_id,date,amount"
        raise FitInputError(msg)
    ic, id_, ia = (names.index(n) for n in _REQUIRED)
    width = max(ic, id_, ia) + 1
    out = TransactionBuilder()
    day_cache: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < width:
            out.problems.append(RowProblem(line, f"expected at least {width} columns, got {len(row)}"))
            continue
        customer_id = row[ic].strip()
        if not customer_id:
            out.problems.append(RowProblem(line, "customer_id is empty"))
            continue
        raw_day = row[id_]
        try:
            day = day_cache.get(raw_day)
            if day is None:
                day = day_cache[raw_day] = parse_day(raw_day)
            amount = _parse_amount(row[ia])
        except ValueError as exc:
            out.problems.append(RowProblem(line, str(exc)))
            continue
        out.add(customer_id, day, amount)
    return out.build(str(path))


def purchase_fields(event: object) -> tuple[str, int, float] | None:
    """(customer_id, day ordinal of ``ts`` as written, in its own offset, amount) of a purchase
    event as parsed JSON; None for other types. Raises ``ValueError`` naming what is wrong."""
    if not isinstance(event, dict) or event.get("type") != "purchase":
        return None
    customer_id = event.get("customer_id")
    if not isinstance(customer_id, str) or not customer_id:
        raise ValueError("purchase without a customer_id")
    ts = event.get("ts")
    if not isinstance(ts, str):
        raise ValueError("purchase without a ts timestamp")
    try:
        day = datetime.fromisoformat(ts).date().toordinal()
    except ValueError:
        raise ValueError(f"unreadable ts {ts!r} (RFC 3339 expected)") from None
    props = event.get("props")
    if not isinstance(props, dict) or "amount" not in props:
        raise ValueError("purchase without props.amount")
    return customer_id, day, _parse_amount(props["amount"])


def read_purchase_events(path: Path) -> TransactionLog:
    """Transactions from the ``purchase`` events of a JSON-lines event file; other types are skipped, refunds ignored."""
    out = TransactionBuilder()
    seen: set[str] = set()
    for line, text in enumerate(_open_text(path), start=1):
        if not text.strip():
            continue
        try:
            event = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            out.problems.append(RowProblem(line, f"not JSON ({exc})"))
            continue
        try:
            fields = purchase_fields(event)
        except ValueError as exc:
            out.problems.append(RowProblem(line, str(exc)))
            continue
        if fields is None:
            continue
        event_id = event.get("event_id")
        if isinstance(event_id, str):
            if event_id in seen:
                continue
            seen.add(event_id)
        out.add(*fields)
    return out.build(str(path))


def _iso(day: int) -> str:
    return date.fromordinal(day).isoformat()


def build_model(
    log: TransactionLog, calibration_end: date | None = None, *, description: str | None = None, demo: bool = False
) -> tuple[PredictiveModel, CustomerSummary]:
    """Fit both models on the calibration part of ``log`` and describe the fit in the model file
    (``description``: what it was fitted on, in words; ``demo``: not fitted on real purchases)."""
    if len(log) == 0:
        raise FitInputError(f"{log.source}: no valid purchases to fit (see the skipped rows above)")
    end = calibration_end.toordinal() if calibration_end is not None else None
    summary = summarise(log.customer, log.day, log.amount, end, UNIT_DAYS[_UNIT])
    bg = fit_bgnbd(summary.x, summary.t_x, summary.T)
    gg = fit_gamma_gamma(summary.x, summary.m_x)
    repeat = summary.x > 0
    info = FitInfo(
        fitted_at=iso(time.time()),
        source=os.path.basename(log.source),
        customers=len(summary),
        repeat_customers=int(repeat.sum()),
        purchase_days=summary.purchase_days,
        calibration_start=_iso(summary.first_day),
        calibration_end=_iso(summary.calibration_end_day),
        bgnbd_log_likelihood=round(bg.log_likelihood, 6),
        gamma_gamma_log_likelihood=round(gg.log_likelihood, 6),
        mean_x=round(float(summary.x.mean()), 6),
        mean_T=round(float(summary.T.mean()), 6),
        mean_repeat_spend=round(float(summary.m_x[repeat].mean()), 6) if repeat.any() else None,
    )
    return PredictiveModel(bgnbd=bg.params, gamma_gamma=gg.params, unit=_UNIT, fit=info, demo=demo, description=description), summary


def write_model(model: PredictiveModel, out: Path) -> None:
    """Write atomically, so a worker reloading the path never reads half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(model.to_json(), encoding="utf-8")
    tmp.replace(out)


def _clv_12m(model: PredictiveModel, s: CustomerSummary) -> np.ndarray:
    horizon = 52.0 * 7.0 / model.unit_days
    purchases = expected_purchases_array(model.bgnbd, horizon, s.x, s.t_x, s.T)
    return purchases * expected_spend_array(model.gamma_gamma, s.x, s.m_x)


def write_plots(model: PredictiveModel, summary: CustomerSummary, directory: Path) -> list[Path]:
    """PNG figures for an analyst: holdout check (when there is a holdout), P(alive) matrix, CLV histogram."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FitInputError("--plots needs matplotlib: pip install 'microseg[plots]'") from None
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    unit = model.unit
    if summary.holdout_length > 0:
        buckets = np.minimum(summary.x, 7)
        predicted = expected_purchases_array(model.bgnbd, summary.holdout_length, summary.x, summary.t_x, summary.T)
        labels = [str(i) for i in range(7)] + ["7+"]
        counts = np.bincount(buckets, minlength=8)
        with np.errstate(invalid="ignore"):
            actual_mean = np.bincount(buckets, weights=summary.holdout, minlength=8) / counts
            model_mean = np.bincount(buckets, weights=predicted, minlength=8) / counts
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(labels, actual_mean, "o-", label="actual")
        ax.plot(labels, model_mean, "s--", label="BG/NBD conditional expectation")
        ax.set_xlabel("repeat purchases in calibration (x)")
        ax.set_ylabel(f"mean purchases in holdout ({summary.holdout_length:.1f} {unit})")
        ax.set_title("Calibration vs holdout purchases by frequency")
        ax.legend()
        written.append(_save(fig, directory / "calibration_vs_holdout.png", plt))
    max_x = int(max(1, min(np.quantile(summary.x, 0.99) if len(summary) else 1, 60)))
    max_T = float(summary.T.max()) if len(summary) else 1.0
    xs = np.arange(max_x + 1)
    recency = np.linspace(0.0, max_T, 60)
    grid_x, grid_t = np.meshgrid(xs, recency)
    matrix = p_alive_array(model.bgnbd, grid_x, grid_t, np.full_like(grid_t, max_T))
    fig, ax = plt.subplots(figsize=(7, 5))
    image = ax.imshow(matrix, origin="lower", aspect="auto", extent=(-0.5, max_x + 0.5, 0, max_T), vmin=0, vmax=1, cmap="RdYlGn")
    fig.colorbar(image, ax=ax, label="P(alive)")
    ax.set_xlabel("repeat purchases (x)")
    ax.set_ylabel(f"time of last purchase t_x ({unit}), customer age T = {max_T:.1f}")
    ax.set_title("P(alive) by frequency and recency")
    written.append(_save(fig, directory / "p_alive_matrix.png", plt))
    clv = _clv_12m(model, summary)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    upper = float(np.quantile(clv, 0.99)) if clv.size else 1.0
    ax.hist(np.clip(clv, 0, upper), bins=60)
    ax.set_xlabel("clv_12m (undiscounted, 52 weeks; top 1% clipped)")
    ax.set_ylabel("customers")
    ax.set_title(f"CLV distribution (median {np.median(clv):.2f}, mean {clv.mean():.2f})")
    written.append(_save(fig, directory / "clv_distribution.png", plt))
    return written


def _save(fig: object, path: Path, plt: object) -> Path:
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[attr-defined]
    return path


def _report_problems(problems: Iterable[RowProblem], source: str) -> None:
    problems = list(problems)
    for p in problems[:_SHOWN_PROBLEMS]:
        typer.echo(f"{p.where or f'{source}:{p.line}'}: {p.message} (row skipped)", err=True)
    if len(problems) > _SHOWN_PROBLEMS:
        typer.echo(f"{source}: ... and {len(problems) - _SHOWN_PROBLEMS} more bad rows skipped", err=True)


_SHORT_HISTORY_DAYS = 90
"""Fewer days of purchases than this in the topic: ``fit --from-topic`` warns that the history is short."""


def _read_topic(broker: str | None, rules: Path | None) -> TransactionLog:
    """The input topic's purchases (``engine.tools.topic_purchases``), with what was read and skipped said on stderr."""
    from microseg.engine.settings import load_settings
    from microseg.engine.tools.topic_purchases import read_topic_purchases
    from microseg.segments.rulefiles import load_rules

    from microseg.engine.tools.produce import configured_bootstrap

    settings = load_settings(broker=broker)
    bootstrap = configured_bootstrap(settings)  # the configured brokers, else a local worker's embedded one (ConfigError)
    directory = rules or settings.rules_dir
    catalog = load_rules(directory).catalog if directory is not None else None
    found = read_topic_purchases(settings, bootstrap, catalog=catalog)
    ends = ", ".join(f"{p}:{o}" for p, o in sorted(found.ends.items()))
    typer.echo(
        f"read {found.records} records of {settings.input_topic} (partition:end offset {ends}): {found.purchases} purchases, "
        f"{found.skipped} records skipped, {found.duplicates} duplicate purchases, {found.erased_customers} erased customers left out",
        err=True,
    )
    if found.reasons:
        from microseg.engine.tools.summaries import counts_text

        typer.echo(f"skipped records by reason: {counts_text(found.reasons)}", err=True)
    return found.log


def fit_command(
    transactions: Annotated[
        Path | None, typer.Option("--transactions", help="CSV with a header: customer_id,date,amount (extra columns ignored)")
    ] = None,
    from_events: Annotated[
        Path | None, typer.Option("--from-events", help="JSON-lines events; the purchase events become the transactions")
    ] = None,
    from_topic: Annotated[
        bool, typer.Option("--from-topic", help="the purchases in the input topic (MICROSEG_INPUT_TOPIC), read from its beginning")
    ] = False,
    broker: Annotated[str | None, typer.Option("--broker", help="with --from-topic: kafka://host:port (default: MICROSEG_BROKER)")] = None,
    rules: Annotated[
        Path | None, typer.Option("--rules", file_okay=False, help="with --from-topic: validate records with this rule set's event catalog (default: MICROSEG_RULES_DIR, else the built-in types)")
    ] = None,
    description: Annotated[str | None, typer.Option("--description", help="what the model is fitted on, in words (shown by workers and replay)")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="mark the model as a demo model, not fitted on real purchases (users are warned)")] = False,
    out: Annotated[Path, typer.Option("--out", help="model file to write (JSON)")] = Path("model.json"),
    calibration_end: Annotated[
        str | None, typer.Option("--calibration-end", help="last calibration day YYYY-MM-DD (inclusive); later purchases are the holdout")
    ] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="directory for PNG diagnostics")] = None,
) -> None:
    """Fit the churn/CLV model (BG/NBD + Gamma-Gamma, weeks) on a purchase history."""
    started = time.perf_counter()
    try:
        if (transactions is not None) + (from_events is not None) + from_topic != 1:
            raise FitInputError("give exactly one of --transactions FILE.csv, --from-events FILE.jsonl or --from-topic")
        end: date | None = None
        if calibration_end is not None:
            try:
                end = date.fromisoformat(calibration_end)
            except ValueError:
                raise FitInputError(f"--calibration-end {calibration_end!r} is not a date; use YYYY-MM-DD") from None
        if transactions is not None:
            log = read_transactions_csv(transactions)
        elif from_events is not None:
            log = read_purchase_events(from_events)
        else:
            log = _read_topic(broker, rules)
        _report_problems(log.problems, log.source)
        model, summary = build_model(log, end, description=description, demo=demo)
        write_model(model, out)
        figures = write_plots(model, summary, plots) if plots is not None else []
    except MicrosegError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    bg, gg, info = model.bgnbd, model.gamma_gamma, model.fit
    assert info is not None
    typer.echo(
        f"fitted {info.customers} customers ({info.repeat_customers} repeat buyers, {info.purchase_days} purchase days, "
        f"{len(log.problems)} rows skipped), calibration {info.calibration_start}..{info.calibration_end}, unit {model.unit}"
    )
    if from_topic and summary.last_day - summary.first_day < _SHORT_HISTORY_DAYS:
        typer.echo(
            f"warning: the topic holds {summary.last_day - summary.first_day + 1} days of purchases (its retention is 7 days unless raised): "
            "too short to tell who has stopped buying; fit on a longer history (--from-events / --transactions) or raise the topic's retention.ms",
            err=True,
        )
    typer.echo(f"BG/NBD      r={bg.r:.5g} alpha={bg.alpha:.5g} a={bg.a:.5g} b={bg.b:.5g}  log-likelihood {info.bgnbd_log_likelihood:.2f}")
    typer.echo(f"Gamma-Gamma p={gg.p:.5g} q={gg.q:.5g} v={gg.v:.5g}  log-likelihood {info.gamma_gamma_log_likelihood:.2f}")
    for finding in model_warnings(model):
        typer.echo(f"warning: {finding}", err=True)
    if plots is not None and summary.holdout_length <= 0:
        typer.echo("no holdout period: pass --calibration-end before the last purchase date to get calibration_vs_holdout.png")
    for fig in figures:
        typer.echo(f"wrote {fig}")
    typer.echo(f"wrote {out} (model {model.version}) in {time.perf_counter() - started:.2f} s")
    sys.stdout.flush()
