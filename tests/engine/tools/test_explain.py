"""``microseg explain``: indented on a terminal, one line when piped or with --compact, readable errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from typer.testing import CliRunner

from microseg.engine.tools.cli import app
from microseg.engine.tools.explain import ExplainError, fetch_explain, render_explain

runner = CliRunner()
ANSWER = {"customer_id": "c 1/x", "segments": ["vip"], "why": [{"id": "vip", "in": True, "when": "spend_total >= 500", "now": True}], "dna": {"spend_total": 620.0}}


class _Worker(BaseHTTPRequestHandler):
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        _Worker.paths.append(self.path)
        if self.path == "/customers/c%201%2Fx":
            body, status = orjson.dumps(ANSWER), 200
        else:
            body, status = orjson.dumps({"error": "customer 'nobody' is not known"}), 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def worker_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Worker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_pretty_is_indented_and_compact_is_one_line() -> None:
    pretty = render_explain(ANSWER, pretty=True)
    assert pretty.splitlines()[:2] == ["{", '  "customer_id": "c 1/x",'] and len(pretty.splitlines()) > 10
    compact = render_explain(ANSWER, pretty=False)
    assert "\n" not in compact and orjson.loads(compact) == orjson.loads(pretty) == ANSWER


def test_the_id_is_quoted_into_the_path_and_errors_are_readable(worker_url: str) -> None:
    assert fetch_explain(worker_url, "c 1/x", None) == ANSWER
    assert _Worker.paths[-1] == "/customers/c%201%2Fx"
    with pytest.raises(ExplainError) as refused:
        fetch_explain(worker_url, "nobody", None)
    assert str(refused.value) == "404: customer 'nobody' is not known" and refused.value.code == 1
    with pytest.raises(ExplainError) as nobody:
        fetch_explain("http://127.0.0.1:9", "c", None, timeout=2)
    assert "no worker answers at http://127.0.0.1:9" in str(nobody.value) and nobody.value.code == 2


def test_the_command_is_compact_when_piped_and_pretty_on_request(worker_url: str) -> None:
    piped = runner.invoke(app, ["explain", "c 1/x", "--url", worker_url])  # CliRunner's stdout is no terminal
    assert piped.exit_code == 0, piped.output
    assert piped.stdout.count("\n") == 1 and orjson.loads(piped.stdout) == ANSWER
    pretty = runner.invoke(app, ["explain", "c 1/x", "--url", worker_url, "--pretty"])
    assert pretty.exit_code == 0 and pretty.stdout.startswith('{\n  "customer_id"')
    unknown = runner.invoke(app, ["explain", "nobody", "--url", worker_url])
    assert unknown.exit_code == 1 and "error: 404: customer 'nobody' is not known" in unknown.output


def test_anonymous_asks_for_the_visitor(worker_url: str) -> None:
    """--anonymous: the id is an anonymous_id, explained by GET /visitors/{id} (CONTRACT §8)."""
    asked = runner.invoke(app, ["explain", "anon 7", "--anonymous", "--url", worker_url])
    assert _Worker.paths[-1] == "/visitors/anon%207"
    assert asked.exit_code == 1 and "404" in asked.output  # the stub knows no visitor
