"""``microseg explain``: one customer's DNA, segments, DNA code and why, from a running worker.

A worker answers ``GET /customers/{id}`` with one JSON object of about 5 KB. On a terminal it is
printed indented (2 spaces, keys in the worker's order) for a person to read; piped or redirected
it stays one compact line for ``jq`` and scripts. ``--pretty`` / ``--compact`` choose explicitly.
``--anonymous``: the id is an anonymous visitor's ``anonymous_id`` (``GET /visitors/{id}``, CONTRACT §8).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Annotated, Any, Optional

import orjson
import typer

from microseg.errors import ConfigError

__all__ = ["explain_command", "fetch_explain", "render_explain", "ExplainError"]


class ExplainError(Exception):
    """The worker could not be asked, or refused: ``message`` says why, ``code`` is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def fetch_explain(base: str, customer_id: str, token: str | None, timeout: float = 10.0, *, anonymous: bool = False) -> Any:
    """The worker's explain answer for ``customer_id`` (an ``anonymous_id`` with ``anonymous``;
    decoded JSON); ``ExplainError`` with exit code 1 when the worker answers with an error (unknown
    customer, token refused), 2 when none answers."""
    url = f"{base.rstrip('/')}/{'visitors' if anonymous else 'customers'}/{urllib.parse.quote(customer_id, safe='')}"
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            reason = orjson.loads(body).get("error") or body.decode(errors="replace")
        except (orjson.JSONDecodeError, AttributeError):
            reason = body.decode(errors="replace").strip()
        raise ExplainError(f"{exc.code}: {reason}", 1) from None
    except urllib.error.URLError as exc:
        raise ExplainError(f"no worker answers at {base} ({exc.reason}); start one with 'microseg worker' or pass --url", 2) from None
    except orjson.JSONDecodeError:
        raise ExplainError(f"{base} answered with something that is not JSON: is it a microseg worker?", 2) from None


def render_explain(found: Any, pretty: bool) -> str:
    """Indented JSON for a person, or one compact line for a program."""
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(found, option=option).decode()


def explain_command(
    customer_id: Annotated[str, typer.Argument(help="The customer to explain (an anonymous_id with --anonymous).")],
    anonymous: Annotated[bool, typer.Option("--anonymous", help="The id is an anonymous visitor's anonymous_id (not identified yet).")] = False,
    url: Annotated[Optional[str], typer.Option("--url", help="Worker base URL (default http://MICROSEG_WEB_HOST:MICROSEG_WEB_PORT).")] = None,
    pretty: Annotated[
        Optional[bool], typer.Option("--pretty/--compact", help="Indented JSON, or one line. Default: indented on a terminal, one line when piped.")
    ] = None,
) -> None:
    """DNA, segments, DNA code and why, as of now, from a running worker."""
    from microseg.engine.settings import load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    base = url or f"http://{settings.web_host}:{settings.web_port}"
    secret = settings.read_token or settings.api_token  # the least power that can read
    try:
        found = fetch_explain(base, customer_id, secret.get_secret_value() if secret is not None else None, anonymous=anonymous)
    except ExplainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from None
    typer.echo(render_explain(found, sys.stdout.isatty() if pretty is None else pretty))
