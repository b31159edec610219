"""``microseg export segment`` when a worker refuses: nothing on stdout before the whole list is
read, and a 401 says which variable to set."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from typer.testing import CliRunner

from microseg.engine.tools.cli import app


class _Worker(BaseHTTPRequestHandler):
    """Page 1 (no cursor) with two members and a cursor; any later page: 401 unless ``authorized``."""

    authorized = False

    def do_GET(self) -> None:  # noqa: N802
        if "cursor=" not in self.path:
            body = {"members": [{"customer_id": "c1", "since": None, "cause": "e1", "rules_version": "v"}, {"customer_id": "c2"}], "next_cursor": "p2"}
            status = 200
        elif self.authorized:
            body, status = {"members": [{"customer_id": "c3"}], "next_cursor": None}, 200
        else:
            body, status = {"error": "a read or API token is required"}, 401
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def worker() -> Iterator[tuple[str, type[_Worker]]]:
    handler = type("Handler", (_Worker,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_a_refused_page_leaves_stdout_empty_and_names_the_token_variable(worker: tuple[str, type[_Worker]], monkeypatch: pytest.MonkeyPatch) -> None:
    url, handler = worker
    monkeypatch.delenv("MICROSEG_READ_TOKEN", raising=False)
    monkeypatch.delenv("MICROSEG_API_TOKEN", raising=False)
    refused = CliRunner().invoke(app, ["export", "segment", "rfm_lost", "--url", url])
    assert refused.exit_code == 1
    assert refused.stdout == ""  # not even the CSV header or page 1
    assert "401" in refused.stderr and "no token was sent: set MICROSEG_READ_TOKEN" in refused.stderr
    handler.authorized = True
    done = CliRunner().invoke(app, ["export", "segment", "rfm_lost", "--url", url])
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines() == ["customer_id,anonymous_id,since,cause,rules_version", "c1,,,e1,v", "c2,,,,", "c3,,,,"]
