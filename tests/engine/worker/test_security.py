"""Issue 15 on a real worker and the embedded broker: personal data is never served or erased
without a token, a token never reaches the logs, and every erasure leaves an audit record that
names nobody. docs/security.md says what is guarded and why."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from microseg.engine.settings import Settings
from microseg.engine.worker import auth
from microseg.segments.state import ERASED_PREFIX, erasure_key
from microseg.segments.view import iso

from tests.conftest import send_events

pytestmark = [pytest.mark.broker]

API = "api-6f1c0e8a-the-admin-token"
READ = "read-2b7d94c1-the-reader-token"
SECRET = "erasure-secret-for-the-security-test"


def _request(port: int, path: str, *, method: str = "GET", token: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _until(check: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def _raw_records(broker: str, topic: str, *, until: Any, timeout: float = 90.0) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) bytes of every record of ``topic``, read from the start until ``until(records)``."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None, consumer_timeout_ms=1000)
    records: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            records += [(m.key, m.value) for m in consumer]
            if until(records):
                return records
        raise AssertionError(f"{topic}: condition not met after {timeout}s with {len(records)} records")
    finally:
        consumer.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.7.20"])
def test_a_worker_bound_beyond_loopback_without_a_token_does_not_start(host: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROSEG_")}
    # A broker nobody answers on: were the check missing, the worker would fail later, differently.
    env |= {"MICROSEG_WEB_HOST": host, "MICROSEG_DATA_DIR": str(tmp_path), "MICROSEG_BROKER": "127.0.0.1:1", "MICROSEG_FIX_END_OFFSETS": "true"}
    done = subprocess.run([sys.executable, "-m", "microseg", "worker"], env=env, capture_output=True, timeout=120)
    lines = [line for line in done.stderr.decode().splitlines() if line.strip() and "RuntimeWarning" not in line and "_native.build()" not in line]
    assert done.returncode == 2, done.stderr.decode()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: MICROSEG_WEB_HOST={host} is not a loopback address") and "set MICROSEG_API_TOKEN" in lines[0]
    assert done.stdout == b""


def test_on_loopback_without_a_token_it_starts_and_says_once_that_customers_are_unguarded(broker: str, workers: Any, unique_topics: dict[str, str]) -> None:
    worker = workers({**unique_topics, "MICROSEG_WEB_HOST": "127.0.0.1"})
    worker.wait_assigned()
    assert _request(worker.port, "/customers/someone")[0] != 401, "unguarded: answered, not refused"
    _until(lambda: _request(worker.port, "/customers/someone")[0] == 404)  # 409 until its partition is recovered
    log = worker.log_path.read_text()
    assert log.count("the customer endpoints on 127.0.0.1:") == 1 and log.count("unguarded") == 1, log[-2000:]


def test_customer_endpoints_need_the_right_token_in_the_header_and_erasures_are_audited(
    broker: str, workers: Any, unique_topics: dict[str, str]
) -> None:
    env = {
        **unique_topics,
        "MICROSEG_WEB_HOST": "0.0.0.0",  # beyond loopback: accepted because tokens are set
        "MICROSEG_API_TOKEN": API,
        "MICROSEG_READ_TOKEN": READ,
        "MICROSEG_ERASURE_SECRET": SECRET,
        "MICROSEG_DEBUG": "1",  # as much logging as the worker can do
    }
    settings = Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in env.items() if k != "MICROSEG_DEBUG"})
    worker = workers(env)
    worker.wait_assigned()
    port = worker.port
    now = time.time()
    known, by_event, ghost, nobody = "cust-sec-alpha", "cust-sec-bravo", "cust-sec-ghost", "cust-sec-nobody"
    send_events(
        broker,
        settings.input_topic,
        [
            {"event_id": "s1", "customer_id": known, "type": "purchase", "ts": iso(now - 60), "channel": "web", "props": {"order_id": "o1", "amount": 40.0}},
            {"event_id": "s2", "customer_id": by_event, "type": "session_started", "ts": iso(now - 50), "channel": "app"},
        ],
    )
    _until(lambda: all(_request(port, f"/customers/{c}", token=API)[0] == 200 for c in (known, by_event)))

    # -- the guard on every customer endpoint -------------------------------------------
    endpoints = [("GET", f"/customers/{known}"), ("GET", "/customers/not-a-customer"), ("DELETE", f"/customers/{known}"), ("DELETE", "/customers/not-a-customer")]
    attempts = {
        "missing": {},
        "wrong": {"token": "not-the-token-at-all-0000"},
        "bearer-less": {"raw": API},
        "query only": {"query": f"?token={API}"},
        "query beside a good header": {"query": f"?access_token={API}", "token": API},
        "query under another name": {"query": f"?cursor={API}", "token": API},
    }
    bodies: dict[tuple[str, str], set[bytes]] = {}
    for method, path in endpoints:
        for name, how in attempts.items():
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}{how.get('query', '')}", method=method)
            if "token" in how:
                request.add_header("Authorization", f"Bearer {how['token']}")
            if "raw" in how:
                request.add_header("Authorization", how["raw"])
            try:
                urllib.request.urlopen(request, timeout=10)
                raise AssertionError(f"{method} {path} ({name}) was served")
            except urllib.error.HTTPError as exc:
                status, body, headers = exc.code, exc.read(), exc.headers
            assert status == 401, (method, path, name, status, body)
            assert headers["WWW-Authenticate"].startswith('Bearer realm="microseg"'), (method, path, name)
            assert b"cust-sec" not in body and b"not-a-customer" not in body and API.encode() not in body
            bodies.setdefault((method, name), set()).add(body)
    assert all(len(seen) == 1 for seen in bodies.values()), "the same body whether the customer exists or not"
    assert bodies[("GET", "missing")] == {auth.MISSING.body} and bodies[("DELETE", "query only")] == {auth.IN_QUERY.body}

    # the read token reads, and may not erase
    status, body, _ = _request(port, f"/customers/{known}", token=READ)
    assert status == 200 and orjson.loads(body)["customer_id"] == known
    status, body, headers = _request(port, f"/customers/{known}", method="DELETE", token=READ)
    assert (status, body) == (403, auth.FORBIDDEN.body) and 'error="insufficient_scope"' in headers["WWW-Authenticate"]
    assert _request(port, f"/customers/{known}", token=READ)[0] == 200, "still there"

    # what stays public holds no customer
    for path in ("/metrics", "/health", "/segments"):
        status, body, _ = _request(port, path)
        assert status == 200 and b"cust-sec" not in body, path
    assert _request(port, "/health/ready")[0] in (200, 503)
    for path in ("/table/", "/router/", "/assignment/", "/graph/", "/performance/"):
        assert _request(port, path)[0] == 404, f"Faust's own {path} is served"

    # -- erasures: through the API, through the event, and the ones answered at once ---
    status, body, _ = _request(port, f"/customers/{known}", method="DELETE", token=API)
    assert status == 202
    api_request = orjson.loads(body)["request_id"]
    assert api_request == orjson.loads(body)["erasure_event"] and known not in api_request
    send_events(
        broker,
        settings.input_topic,
        [
            {"event_id": "gdpr-ticket-77", "customer_id": by_event, "type": "erasure_requested", "ts": iso(time.time())},
            {"event_id": "gdpr-ticket-78", "customer_id": ghost, "type": "erasure_requested", "ts": iso(time.time())},
        ],
    )
    _until(lambda: _request(port, f"/customers/{known}", token=API)[0] == 404)
    status, body, _ = _request(port, f"/customers/{known}", method="DELETE", token=API)
    assert status == 410
    again_request = orjson.loads(body)["request_id"]
    status, body, _ = _request(port, f"/customers/{nobody}", method="DELETE", token=API)
    assert status == 404
    nobody_request = orjson.loads(body)["request_id"]

    def hmac_of(customer_id: str) -> str:
        return erasure_key(SECRET.encode(), customer_id).removeprefix(ERASED_PREFIX)

    expected = {
        (hmac_of(known), api_request, "api", "erased"),
        (hmac_of(known), again_request, "api", "already_erased"),
        (hmac_of(by_event), "gdpr-ticket-77", "event", "erased"),
        (hmac_of(ghost), "gdpr-ticket-78", "event", "unknown"),
        (hmac_of(nobody), nobody_request, "api", "unknown"),
    }

    def summary(records: list[tuple[bytes | None, bytes | None]]) -> set[tuple[str, str, str, str]]:
        values = [orjson.loads(v) for _, v in records if v]
        return {(r["customer_hmac"], r["request_id"], r["via"], r["outcome"]) for r in values}

    audit = _raw_records(broker, settings.erasure_audit_topic, until=lambda got: expected <= summary(got))
    assert summary(audit) == expected, "one record per request, nothing else"
    for key, value in audit:
        raw = (key or b"") + (value or b"")
        for customer_id in (known, by_event, ghost, nobody):
            assert customer_id.encode() not in raw, f"the raw id {customer_id} is in an audit record"
        record = orjson.loads(value or b"{}")
        assert key == record["audit_id"].encode() and record["worker"] and record["rules_version"]
    erased_record = next(orjson.loads(v or b"") for _, v in audit if orjson.loads(v or b"")["request_id"] == api_request)
    assert erased_record["exits"] >= 1 and erased_record["source"]["topic"] == settings.input_topic

    # the HMAC is the one docs/operations.md tells operators to compute
    openssl = subprocess.run(["openssl", "dgst", "-sha256", "-hmac", SECRET, "-r"], input=known.encode(), capture_output=True, check=True)
    assert openssl.stdout.decode()[:32] == hmac_of(known)

    # the changelog: a tombstone under the id, the mark under its HMAC
    changelog = dict(_raw_records(broker, settings.changelog_topic, until=lambda got: any(k == known.encode() and v is None for k, v in got)))
    assert changelog[known.encode()] is None
    assert changelog[(ERASED_PREFIX + hmac_of(known)).encode()] is not None

    # refusals and erasures are counted
    metrics = _request(port, "/metrics")[1].decode()
    for reason, count in {"missing": 8, "wrong": 4, "in_query": 12, "forbidden": 1}.items():
        assert f'microseg_api_refused_total{{reason="{reason}"}} {count}.0' in metrics, reason
    assert 'microseg_erasures_total{outcome="erased",via="api"} 1.0' in metrics

    # -- no token in the logs, though requests carried them in headers and query strings ----
    worker.stop()
    log = worker.log_path.read_bytes()
    assert log, "the worker logged nothing at all?"
    for secret in (API, READ, SECRET):
        assert secret.encode() not in log, f"{secret[:8]}... is in the worker's log"
    assert b"token=" not in log and b"access_token" not in log
