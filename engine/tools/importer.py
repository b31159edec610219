"""``microseg import``: purchase histories (a CSV export, or the CDNOW master file's own layout) as
CONTRACT §1 ``purchase`` events, one JSON line per row, in event-time order.

Inputs (``layout``; ``auto`` tells them apart by the first non-blank line):

- ``csv``: a header naming the columns, then one purchase per row. Required: ``customer_id``,
  ``date``, ``amount`` (other names with ``CsvColumns``); optional: ``order_id`` and ``quantity``
  (used when the header has them). Extra columns are ignored.
- ``cdnow``: whitespace-separated, no header (a first line with letters is skipped as one):
  ``customer_id YYYYMMDD quantity amount`` (the CDNOW master file) or ``customer_id sample_id
  YYYYMMDD quantity amount`` (the 1/10 sample of Fader & Hardie; the first id is used, so a
  sample customer has the same id as in the master file).
- ``events``: already microseg events (JSON lines); only ``microseg bench --data`` reads those.

Decisions (docs/performance.md, "Real data"):

- **Time of a date-only row**: 12:00:00Z of that date (``time_of_day``). Any fixed time of day keeps
  one UTC purchase day per date, so x (distinct purchase days − 1), t_x and the day-granular age T
  of BG/NBD are those of the dates; noon also keeps the file's date in every time zone from
  UTC−12:00 to UTC+11:59 (local-day rules see the date the file says), is the middle of the day
  the purchase happened in (±12 h at worst), and makes a replay ``--until`` the next midnight see
  the last date as 0 whole days old, as an RFM table with that date as the end of observation does.
  A row with an RFC 3339 timestamp keeps its instant (written in UTC); one without an offset is bad.
- **Event ids** are ``p-`` + 80 bits of BLAKE2b over the row's meaning (customer id, instant,
  amount, quantity, order id, ``namespace``) and its occurrence number among identical rows: the
  same input gives the same ids (re-importing is idempotent downstream: the engine drops a
  repeated event_id), a re-export in another row order too, and appended rows leave earlier ids
  alone. Two exports that may hold identical rows for different purchases need distinct namespaces.
- **Order ids**: the ``order_id`` column when there is one, else the event id (one order per row).
- **Quantity** (CDNOW's number of CDs) is checked (an integer >= 0) but written only with
  ``item_category``, as one item {product_id = category = item_category, quantity, price = amount
  / quantity}: the starter DNA reads quantities only per item and category (affinity), and an
  undeclared prop would send every event down the decoder's slow path.
- **Bad rows** are listed (``BadRow``: line, reason, the row's text) and skipped; the rest goes on.
- **Order**: sorted by (event time, input line), since replay and the worker take time in input
  order and real exports are usually grouped by customer.
"""

from __future__ import annotations

import csv
import hashlib
import math
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from datetime import time as time_of_day_t
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import typer

from microseg.errors import MicrosegError
from microseg.schemas.event_models import MAX_TS, MIN_TS

__all__ = [
    "ImportInputError",
    "BadRow",
    "CsvColumns",
    "ImportOptions",
    "Imported",
    "Layout",
    "detect_layout",
    "import_purchases",
    "write_lines",
    "import_command",
]

Layout = Literal["csv", "cdnow", "events"]
_MAX_ID = 128
_MAX_AMOUNT = 1e12
_SHOWN_BAD = 20


class ImportInputError(MicrosegError):
    """The input file or options of ``microseg import`` cannot be used at all (not one bad row: those are skipped)."""


@dataclass(frozen=True, slots=True)
class BadRow:
    """A skipped row: ``line`` is 1-based as an editor shows it, ``text`` the row as read (cut to 200 chars)."""

    line: int
    reason: str
    text: str


@dataclass(frozen=True)
class CsvColumns:
    """Header names (matched case-insensitively, spaces around them ignored); ``order_id`` and ``quantity`` are optional."""

    customer_id: str = "customer_id"
    date: str = "date"
    amount: str = "amount"
    order_id: str = "order_id"
    quantity: str = "quantity"


@dataclass(frozen=True)
class ImportOptions:
    """How rows become events. ``time_of_day`` (UTC) dates date-only rows; ``namespace`` goes into every
    event id; ``currency`` (ISO 4217) and ``channel`` are written on every event when given;
    ``item_category`` turns the quantity into one item of that category."""

    layout: Literal["auto", "csv", "cdnow"] = "auto"
    columns: CsvColumns = field(default_factory=CsvColumns)
    delimiter: str = ","
    time_of_day: time_of_day_t = time_of_day_t(12, 0, 0)
    namespace: str = ""
    currency: str | None = None
    channel: str | None = None
    item_category: str | None = None


@dataclass(frozen=True, eq=False)
class Imported:
    """The events (JSON lines without newline, sorted by time then input line), their customer ids
    (the Kafka keys, same order), the bad rows, and what the events span (epoch seconds)."""

    source: str
    layout: Layout
    lines: list[bytes]
    keys: list[bytes]
    bad: list[BadRow]
    rows: int
    customers: int
    first_t: float | None
    last_t: float | None


_Row = tuple[int, str, str, str, "str | None", "str | None", Any]
"""A row split into fields: line, customer id, date or timestamp text, amount text, quantity text,
order id, and the raw row (a line, or the CSV fields) for the report should the row be bad."""


def _row_text(raw: Any, delimiter: str = ",") -> str:
    return (delimiter.join(raw) if isinstance(raw, list) else " ".join(str(raw).split()))[:200]


def _open_text(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            yield from handle
    except OSError as exc:
        raise ImportInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ImportInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def detect_layout(path: Path, delimiter: str = ",") -> Layout:
    """``events`` if the first non-blank line is a JSON object, ``csv`` if it has the CSV ``delimiter``, else ``cdnow``."""
    for text in _open_text(path):
        stripped = text.strip()
        if stripped:
            return "events" if stripped.startswith("{") else "csv" if delimiter in stripped else "cdnow"
    raise ImportInputError(f"{path}: the file is empty")


def _csv_rows(path: Path, columns: CsvColumns, delimiter: str, bad: list[BadRow]) -> Iterator[_Row]:
    reader = csv.reader(_open_text(path), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        raise ImportInputError(f"{path}: the file is empty; expected a header naming {columns.customer_id},{columns.date},{columns.amount}")
    names = [h.strip().lower() for h in header]
    wanted = (columns.customer_id, columns.date, columns.amount)
    missing = [n for n in wanted if n.lower() not in names]
    if missing:
        raise ImportInputError(
            f"{path}:1: header lacks {', '.join(missing)} (found {', '.join(names) or 'nothing'}); name the columns "
            f"{','.join(wanted)} or pass --customer-column/--date-column/--amount-column"
        )
    ic, idate, iamount = (names.index(n.lower()) for n in wanted)
    iorder = names.index(columns.order_id.lower()) if columns.order_id.lower() in names else None
    iqty = names.index(columns.quantity.lower()) if columns.quantity.lower() in names else None
    width = max(i for i in (ic, idate, iamount, iorder, iqty) if i is not None) + 1
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < width:
            bad.append(BadRow(line, f"expected at least {width} columns, got {len(row)}", _row_text(row, delimiter)))
            continue
        yield (line, row[ic].strip(), row[idate].strip(), row[iamount].strip(),
               row[iqty].strip() if iqty is not None else None, row[iorder].strip() if iorder is not None else None, row)


def _cdnow_rows(path: Path, bad: list[BadRow]) -> Iterator[_Row]:
    first = True
    for line, raw in enumerate(_open_text(path), start=1):
        parts = raw.split()
        if not parts:
            continue
        if first and not any(part.isdigit() for part in parts):
            first = False
            continue  # a header, as in lifetimes' CDNOW_master.txt: customer_id date number_of_cds dollar_value
        first = False
        if len(parts) == 4:
            yield (line, parts[0], parts[1], parts[3], parts[2], None, raw)
        elif len(parts) == 5:
            yield (line, parts[0], parts[2], parts[4], parts[3], None, raw)
        else:
            bad.append(BadRow(line, f"expected 4 fields (customer_id YYYYMMDD quantity amount) or 5 (with a sample id), got {len(parts)}", _row_text(raw)))


def _instant(when: str, day_time: time_of_day_t, cache: dict[str, tuple[str, float]]) -> tuple[str, float]:
    """``(ts text in UTC, epoch seconds)`` of a date (at ``day_time``) or an RFC 3339 timestamp; ValueError says why not."""
    if len(when) in (8, 10) and when[:4].isdigit():
        try:
            day = date.fromisoformat(when)
        except ValueError:
            raise ValueError(f"unreadable date {when!r} (use YYYY-MM-DD, YYYYMMDD or an RFC 3339 timestamp)") from None
        moment = datetime.combine(day, day_time, tzinfo=timezone.utc)
    else:
        try:
            moment = datetime.fromisoformat(when.replace("z", "Z").replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"unreadable date {when[:40]!r} (use YYYY-MM-DD, YYYYMMDD or an RFC 3339 timestamp)") from None
        if moment.tzinfo is None:
            raise ValueError(f"timestamp {when[:40]!r} has no UTC offset; add one (e.g. Z or +01:00)")
    t = moment.timestamp()
    if not MIN_TS <= t < MAX_TS:
        raise ValueError(f"date {when[:40]!r} is outside 1990-01-01..2099-12-31, the times events may have")
    utc = moment.astimezone(timezone.utc)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ")
    cache[when] = (text, t)
    return text, t


def _amount(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"amount {text[:40]!r} is not a number (currency units, e.g. 29.33)") from None
    if not math.isfinite(value) or value < 0 or value > _MAX_AMOUNT:
        raise ValueError(f"amount {text[:40]!r} must be a number >= 0 and <= {_MAX_AMOUNT:g} (a refund is not a purchase)")
    return value


def _quantity(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"quantity {text[:40]!r} is not a whole number") from None
    if not 0 <= value <= 1_000_000:
        raise ValueError(f"quantity {value} must be 0..1000000")
    return value


def _check_id(value: str, what: str) -> None:
    if not 1 <= len(value) <= _MAX_ID:
        raise ValueError(f"{what} is empty" if not value else f"{what} is {len(value)} characters long; the limit is {_MAX_ID}")


def _by_time_then_line(item: tuple[float, int, bytes, bytes]) -> tuple[float, int]:
    return item[0], item[1]


def import_purchases(path: Path, options: ImportOptions | None = None) -> Imported:
    """Read ``path`` (CSV or CDNOW layout) into sorted purchase events; bad rows are listed and skipped.

    Raises ``ImportInputError`` when the file cannot be read at all (missing, not UTF-8, no usable
    header) or is a JSON-lines event file (nothing to import).
    """
    options = options or ImportOptions()
    layout: Layout = detect_layout(path, options.delimiter) if options.layout == "auto" else options.layout
    if layout == "events":
        raise ImportInputError(f"{path}: already JSON-lines events; replay or produce it as it is")
    bad: list[BadRow] = []  # the rows the reader could not split into fields
    rows: Iterable[_Row] = _csv_rows(path, options.columns, options.delimiter, bad) if layout == "csv" else _cdnow_rows(path, bad)
    unusable: list[BadRow] = []  # the rows whose fields are wrong
    cache: dict[str, tuple[str, float]] = {}
    seen: dict[bytes, int] = {}
    built: list[tuple[float, int, bytes, bytes]] = []
    namespace = options.namespace.encode() + b"\x1e"
    count = 0
    currency, channel, category = options.currency, options.channel, options.item_category
    day_time = options.time_of_day
    for line, customer_id, when, amount_text, quantity_text, order_id, raw in rows:
        count += 1
        try:
            if not 0 < len(customer_id) <= _MAX_ID:
                _check_id(customer_id, "customer_id")
            if order_id is not None:
                _check_id(order_id, "order_id")
            ts, t = cache.get(when) or _instant(when, day_time, cache)
            amount = _amount(amount_text)
            quantity = _quantity(quantity_text) if quantity_text else None
        except ValueError as exc:
            unusable.append(BadRow(line, str(exc), _row_text(raw, options.delimiter)))
            continue
        meaning = f"{customer_id}\x1f{ts}\x1f{amount!r}\x1f{quantity}\x1f{order_id or ''}".encode()
        occurrence = seen.get(meaning, 0)
        seen[meaning] = occurrence + 1
        event_id = "p-" + hashlib.blake2b(namespace + meaning + b"\x1f%d" % occurrence, digest_size=10).hexdigest()
        props: dict[str, Any] = {"order_id": order_id or event_id, "amount": amount}
        if currency is not None:
            props["currency"] = currency
        if category is not None and quantity:
            props["items"] = [{"product_id": category, "category": category, "quantity": quantity, "price": round(amount / quantity, 2)}]
        event: dict[str, Any] = {"event_id": event_id, "customer_id": customer_id, "type": "purchase", "ts": ts}
        if channel is not None:
            event["channel"] = channel
        event["props"] = props
        built.append((t, line, orjson.dumps(event), customer_id.encode()))
    built.sort(key=_by_time_then_line)
    every_bad = sorted(bad + unusable, key=lambda b: b.line)
    keys = [b[3] for b in built]
    return Imported(
        source=str(path), layout=layout, lines=[b[2] for b in built], keys=keys, bad=every_bad,
        rows=count + len(bad), customers=len(set(keys)),
        first_t=built[0][0] if built else None, last_t=built[-1][0] if built else None,
    )


def write_lines(lines: list[bytes], out: Path | None) -> None:
    """JSON lines to ``out`` (written next to it, then renamed: a reader never sees half a file) or stdout."""
    payload = b"\n".join(lines) + b"\n" if lines else b""
    if out is None:
        sys.stdout.buffer.write(payload)
        sys.stdout.flush()
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(payload)
    tmp.replace(out)


def _day(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, timezone.utc).date().isoformat()


def _parse_time_of_day(text: str) -> time_of_day_t:
    try:
        return time_of_day_t.fromisoformat(text)
    except ValueError:
        raise ImportInputError(f"--time-of-day {text!r} is not a time such as 12:00:00 (UTC)") from None


def import_command(
    source: Annotated[Path, typer.Argument(help="Purchase history: a CSV with a header, or the CDNOW layout (customer_id YYYYMMDD quantity amount).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", dir_okay=False, help="JSONL file to write (default: stdout).")] = None,
    layout: Annotated[str, typer.Option("--format", help="auto, csv or cdnow (auto: the CSV delimiter in the first line means csv).")] = "auto",
    customer_column: Annotated[str, typer.Option("--customer-column", help="CSV column of the customer id.")] = "customer_id",
    date_column: Annotated[str, typer.Option("--date-column", help="CSV column of the date (YYYY-MM-DD, YYYYMMDD or RFC 3339).")] = "date",
    amount_column: Annotated[str, typer.Option("--amount-column", help="CSV column of the amount (currency units).")] = "amount",
    order_column: Annotated[str, typer.Option("--order-column", help="CSV column of the order id, used if present.")] = "order_id",
    quantity_column: Annotated[str, typer.Option("--quantity-column", help="CSV column of the quantity, used if present.")] = "quantity",
    delimiter: Annotated[str, typer.Option("--delimiter", help="CSV field separator (one character; 'tab' for a tab).")] = ",",
    time_of_day: Annotated[str, typer.Option("--time-of-day", help="UTC time given to date-only rows.")] = "12:00:00",
    namespace: Annotated[str, typer.Option("--namespace", help="Mixed into every event id: give distinct exports distinct namespaces.")] = "",
    currency: Annotated[str | None, typer.Option("--currency", help="ISO 4217 code written on every purchase, e.g. USD.")] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="Channel written on every event, e.g. web.")] = None,
    item_category: Annotated[str | None, typer.Option("--item-category", help="Write the quantity as one item of this category.")] = None,
    rejects: Annotated[Path | None, typer.Option("--rejects", dir_okay=False, help="Write every skipped row here as JSONL (source file:line, reason, row).")] = None,
) -> None:
    """Purchase history (CSV or CDNOW) -> purchase events (JSONL), sorted by time; bad rows reported and skipped.

    Exit 0 when at least one row was imported (bad rows are reported on stderr as file:line: reason), 1 when none could be (nothing is written then), 2 when the file or options cannot be used.
    """
    started = time.perf_counter()
    sep = "\t" if delimiter.lower() in ("tab", "\\t") else delimiter
    try:
        if layout not in ("auto", "csv", "cdnow"):
            raise ImportInputError(f"--format {layout!r}: use auto, csv or cdnow")
        if len(sep) != 1:
            raise ImportInputError(f"--delimiter {delimiter!r} must be one character (or 'tab')")
        if currency is not None and len(currency) != 3:
            raise ImportInputError(f"--currency {currency!r} must be a 3-letter ISO 4217 code such as USD")
        for option, name in (("--channel", channel), ("--item-category", item_category)):
            if name is not None and not 1 <= len(name) <= 64:
                raise ImportInputError(f"{option} {name[:80]!r} must be 1..64 characters")
        options = ImportOptions(
            layout=layout,  # type: ignore[arg-type]
            columns=CsvColumns(customer_column, date_column, amount_column, order_column, quantity_column),
            delimiter=sep, time_of_day=_parse_time_of_day(time_of_day), namespace=namespace,
            currency=currency, channel=channel, item_category=item_category,
        )
        result = import_purchases(source, options)
    except ImportInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for row in result.bad[:_SHOWN_BAD]:
        typer.echo(f"{source}:{row.line}: {row.reason} (row skipped)", err=True)
    if len(result.bad) > _SHOWN_BAD:
        typer.echo(f"{source}: ... and {len(result.bad) - _SHOWN_BAD} more bad rows skipped" + ("" if rejects else " (--rejects FILE lists them all)"), err=True)
    if rejects is not None:
        write_lines([orjson.dumps({"source": f"{source}:{b.line}", "line": b.line, "reason": b.reason, "row": b.text}) for b in result.bad], rejects)
    if not result.lines:
        typer.echo(f"error: {source}: no row could be imported ({len(result.bad)} bad rows); nothing written", err=True)
        raise typer.Exit(1)
    write_lines(result.lines, out)
    typer.echo(
        f"imported {len(result.lines):,} purchases of {result.customers:,} customers, {_day(result.first_t)}..{_day(result.last_t)} "
        f"({result.layout}), {len(result.bad)} rows skipped -> {out or 'stdout'} in {time.perf_counter() - started:.2f} s",
        err=True,
    )

