"""``microseg export segment ID``: a segment's current members, from the running workers, as CSV or JSONL.

Reads ``GET /segments/{id}/members`` page by page from one worker (any: it gathers the partitions
other workers own from them, ``engine.worker.routing``) with the read token, and writes one row per
member: ``customer_id``, ``anonymous_id`` (an anonymous visitor's: ``customer_id`` is then
empty/null, CONTRACT §8), ``since`` (the entry instant, RFC 3339; empty for memberships older than
the member index), ``cause`` (the event id, ``tick``, ``rules:<version>``…) and ``rules_version``.
Members are as of each partition's last flushed batch; a page answered 503 (a rebalance) is asked
again, up to ``RETRIES`` times a second apart, then the export stops with exit code 1 (an ``--out``
file is removed) rather than leave a partial list.
"""

from __future__ import annotations

import csv
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any, Optional

import orjson
import typer

from microseg.errors import MicrosegError

__all__ = ["export_app", "fetch_members", "worker_base", "worker_request"]

FIELDS = ("customer_id", "anonymous_id", "since", "cause", "rules_version")

export_app = typer.Typer(no_args_is_help=True, help="Export audiences from the running workers.")


class ExportError(MicrosegError):
    """A worker did not answer, or refused, while members were being read."""


def worker_base(url: str | None) -> str:
    """The worker URL to ask: ``url``, else ``http://MICROSEG_WEB_HOST:MICROSEG_WEB_PORT``."""
    from microseg.engine.settings import load_settings

    if url:
        return url.rstrip("/")
    settings = load_settings()
    return f"http://{settings.web_host}:{settings.web_port}"


RETRIES = 5
"""503 answers (a partition being recovered, an owner not answering during a rebalance) retried,
one second apart, before giving up: the cursor stays valid across a rebalance."""


def worker_request(base: str, path: str, *, timeout: float = 60.0, retries: int = RETRIES) -> Any:
    """GET ``path`` from a worker with the least token that reads (read, else API); JSON back."""
    import time

    from microseg.engine.settings import load_settings

    settings = load_settings()
    request = urllib.request.Request(f"{base}{path}")
    token = settings.read_token or settings.api_token
    if token is not None:
        request.add_header("Authorization", f"Bearer {token.get_secret_value()}")
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")[:300]
            if exc.code == 503 and attempt < retries:
                time.sleep(1.0)
                continue
            hint = ""
            if exc.code in (401, 403):
                sent = "no token was sent" if token is None else "the token sent was refused"
                hint = f" ({sent}: set MICROSEG_READ_TOKEN, or MICROSEG_API_TOKEN, to the workers' token)"
            raise ExportError(f"{base}{path.split('?')[0]}: {exc.code} {body}{hint}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ExportError(f"no worker answers at {base} ({getattr(exc, 'reason', exc)}); start one with 'microseg worker' or pass --url") from None
    raise AssertionError("unreachable")


def fetch_members(base: str, segment: str, *, page: int = 5_000) -> Iterator[dict[str, Any]]:
    """Every member of ``segment``, page after page, from the worker at ``base``."""
    cursor: str | None = None
    quoted = urllib.parse.quote(segment, safe="")
    while True:
        query = {"limit": page, **({"cursor": cursor} if cursor else {})}
        body = worker_request(base, f"/segments/{quoted}/members?{urllib.parse.urlencode(query)}")
        yield from body["members"]
        cursor = body.get("next_cursor")
        if not cursor:
            return


def write_members(members: Iterator[dict[str, Any]], out: IO[str], fmt: str) -> int:
    count = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for member in members:
            writer.writerow({k: ("" if member.get(k) is None else member.get(k)) for k in FIELDS})
            count += 1
    else:
        for member in members:
            out.write(orjson.dumps({k: member.get(k) for k in FIELDS}).decode() + "\n")
            count += 1
    return count


@export_app.command("segment")
def export_segment(
    segment: Annotated[str, typer.Argument(help="The segment id, e.g. rfm_lost.")],
    fmt: Annotated[str, typer.Option("--format", help="csv (with a header) or jsonl.")] = "csv",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", dir_okay=False, help="Write here instead of stdout.")] = None,
    url: Annotated[Optional[str], typer.Option("--url", help="Any worker's base URL (default http://MICROSEG_WEB_HOST:MICROSEG_WEB_PORT).")] = None,
) -> None:
    """A segment's current members from every worker (MICROSEG_READ_TOKEN is enough)."""
    if fmt not in ("csv", "jsonl"):
        typer.echo(f"error: --format {fmt!r}: csv or jsonl", err=True)
        raise typer.Exit(2)
    import shutil
    import tempfile

    base = worker_base(url)
    # Nothing is written before the whole list is read: stdout gets it from a spooled copy at the end.
    handle: IO[str] = (
        open(out, "w", encoding="utf-8", newline="") if out is not None  # noqa: SIM115
        else tempfile.SpooledTemporaryFile(max_size=16 << 20, mode="w+", encoding="utf-8", newline="")  # type: ignore[assignment]
    )
    try:
        count = write_members(fetch_members(base, segment), handle, fmt)
        if out is None:
            handle.seek(0)
            shutil.copyfileobj(handle, sys.stdout)
    except MicrosegError as exc:
        if out is not None:  # no partial list left behind as if it were the audience
            handle.close()
            out.unlink(missing_ok=True)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        if not handle.closed:
            handle.close()
    from microseg.engine.tools.summaries import counted

    typer.echo(f"{counted(count, 'member')} of {segment} from {base}", err=True)
