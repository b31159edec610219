"""A running worker as ops and analysts use it: clock ticks, explain, metrics, rules publishing, erasure."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from microseg.engine.worker.rules_topic import publish_rules
from microseg.engine.settings import Settings
from microseg.segments.view import iso

from tests.conftest import consume, send_events

pytestmark = [pytest.mark.broker]

TOKEN = "s3cret-ops-token-0123"


def _settings(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in env.items()})


def _request(port: int, path: str, *, method: str = "GET", token: str | None = TOKEN) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
            return response.status, orjson.loads(body) if body[:1] in (b"{", b"[") else body.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def _until(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError("condition not met in time")


def test_running_worker_ticks_explains_measures_publishes_and_erases(
    broker: str, workers: Any, unique_topics: dict[str, str], tmp_path: Path
) -> None:
    env = {**unique_topics, "MICROSEG_TICK_INTERVAL_S": "1", "MICROSEG_API_TOKEN": TOKEN}
    settings = _settings(env)
    worker = workers(env)
    worker.wait_assigned()
    now = time.time()
    cart_at = now - 3600 + 4
    order_at = now - 31 * 86_400 + 3  # cust-b's only order turns 31 days old at now + 3 s
    send_events(
        broker,
        settings.input_topic,
        [
            {"event_id": "a1", "customer_id": "cust-a", "type": "session_started", "ts": iso(cart_at - 60), "channel": "web"},
            {"event_id": "a2", "customer_id": "cust-a", "type": "cart_updated", "ts": iso(cart_at), "channel": "web",
             "props": {"product_id": "p1", "category": "shoes", "quantity": 2, "cart_value": 180.0}},
            {"event_id": "b1", "customer_id": "cust-b", "type": "purchase", "ts": iso(order_at), "channel": "app",
             "props": {"order_id": "o1", "amount": 42.0}},
            *[
                {"event_id": f"c{k}", "customer_id": "cust-c", "type": "purchase", "ts": iso(now - (120 - 3 * k) * 86_400),
                 "channel": "web", "props": {"order_id": f"oc{k}", "amount": 900.0}}
                for k in range(6)
            ],
            {"event_id": "c-now", "customer_id": "cust-c", "type": "session_started", "ts": iso(now - 5), "channel": "web"},
        ],
    )
    # the predictive DNA in the worker: P(alive) fell while cust-c was away (starter rule p_alive < 0.3 and clv_12m > 50)
    fading = consume(broker, settings.changes_topic, until=lambda got: any(c["segment"] == "likely_churner_valuable" and c["customer_id"] == "cust-c" for c in got))
    assert [c for c in fading if c["segment"] == "likely_churner_valuable"][0]["cause"] == "tick"
    assert _request(worker.port, "/customers/cust-c")[1]["dna"]["p_alive"] < 0.3
    # time alone: the cart turns abandoned one hour after the cart event, with nothing sent
    changes = consume(broker, settings.changes_topic, until=lambda got: any(c["segment"] == "cart_abandoner" for c in got), timeout=90)
    (abandoned,) = [c for c in changes if c["segment"] == "cart_abandoner"]
    assert abandoned["cause"] == "tick" and abandoned["change"] == "entered"
    assert abandoned["at"] == iso(cart_at + 3600)

    status, explained = _request(worker.port, "/customers/cust-a")
    assert status == 200
    assert "cart_abandoner" in explained["segments"]
    cart_day_over = int(cart_at // 86_400) < int((cart_at + 3600) // 86_400)  # the test ran in the hour after midnight UTC
    assert ("big_cart_abandoner" in explained["segments"]) is cart_day_over, "a cart of today (UTC) counts for it from the next midnight"
    assert explained["dna"]["open_cart_value"] is None, "an abandoned cart is no longer open"
    assert {"message": "cart_reminder", "reason": "consent"} in [{k: h[k] for k in ("message", "reason")} for h in explained["held_back"]]
    # time alone also takes customers out: rfm_new ends when the only order turns 31 days old
    def rfm_new(got: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        return [(c["change"], c["cause"], c["at"]) for c in got if c["segment"] == "rfm_new" and c["customer_id"] == "cust-b"]

    moves = rfm_new(consume(broker, settings.changes_topic, until=lambda got: len(rfm_new(got)) >= 2))
    assert moves == [("entered", "b1", iso(order_at)), ("exited", "tick", iso(order_at + 31 * 86_400))]
    assert any(w["id"] == "cart_abandoner" and w["when"].startswith("carts_abandoned_30d") for w in explained["why"])
    assert _request(worker.port, "/customers/cust-a", token=None)[0] == 401
    import os
    import subprocess
    import sys

    cli = subprocess.run(
        [sys.executable, "-m", "microseg", "explain", "cust-a", "--url", f"http://127.0.0.1:{worker.port}"],
        env={**os.environ, "MICROSEG_API_TOKEN": TOKEN},
        capture_output=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "cart_abandoner" in orjson.loads(cli.stdout)["segments"]
    assert _request(worker.port, "/customers/nobody")[0] == 404

    status, metrics = _request(worker.port, "/metrics", token=None)
    assert status == 200
    assert 'microseg_events_processed_total{type="cart_updated"} 1.0' in metrics
    assert 'microseg_segment_population{segment="cart_abandoner"} 1.0' in metrics
    assert 'microseg_segment_transitions_total{cause="tick",direction="entered",segment="cart_abandoner"} 1.0' in metrics
    assert "microseg_processing_seconds_bucket" in metrics and "microseg_consumer_lag" in metrics
    assert _request(worker.port, "/segments", token=None)[1]["segments"]["cart_abandoner"] == 1

    # a new rule set, published while the worker runs, re-evaluates everyone with cause rules:<version>
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "one.yaml").write_text("version: 1\nsegments:\n  - id: everyone\n    description: all\n    when: true\n")
    version = publish_rules(settings, broker, rules)
    changes = consume(
        broker, settings.changes_topic, until=lambda got: {c["customer_id"] for c in got if c["cause"] == f"rules:{version}" and c["segment"] == "everyone"} == {"cust-a", "cust-b", "cust-c"}
    )
    exits = {c["segment"] for c in changes if c["cause"] == f"rules:{version}" and c["change"] == "exited"}
    assert "cart_abandoner" in exits
    assert _until(lambda: _request(worker.port, "/health")[1]["rules_version"] == version)
    assert _request(worker.port, "/segments", token=None)[1]["segments"] == {"everyone": 3}, "populations follow a rules sweep"

    # a broken record on the rules topic is refused; the rules in force stay
    producer = KafkaProducer(bootstrap_servers=broker)
    producer.send(settings.rules_topic, key=b"rules", value=orjson.dumps({"version": "x", "files": {"bad.yaml": "segments: [ {id: 1"}}))
    producer.flush()
    producer.close()
    _until(lambda: "microseg_rule_errors_total 1.0" in _request(worker.port, "/metrics", token=None)[1])
    assert _request(worker.port, "/health")[1]["rules_version"] == version

    # GDPR erasure through the API: an unknown id is said to be unknown (nothing queued, nothing blocked)
    status, unknown = _request(worker.port, "/customers/nobody", method="DELETE")
    assert (status, unknown.pop("request_id")[:12]) == (404, "erasure-api-"), "answered at once, and audited"
    assert unknown == {"error": "customer 'nobody' is not known", "customer_id": "nobody", "status": "unknown"}
    assert _request(worker.port, "/customers/cust-b", method="DELETE", token=None)[0] == 401
    # a known one: exits emitted, state gone
    status, accepted = _request(worker.port, "/customers/cust-b", method="DELETE")
    assert status == 202
    erasure = accepted["erasure_event"]
    consume(broker, settings.changes_topic, until=lambda got: any(c["cause"] == erasure and c["segment"] == "everyone" and c["change"] == "exited" for c in got))
    assert _until(lambda: _request(worker.port, "/customers/cust-b")[0] == 404)
    # events after the erasure are dropped: the customer stays forgotten
    send_events(broker, settings.input_topic, [{"event_id": "b2", "customer_id": "cust-b", "type": "purchase", "ts": iso(time.time()), "channel": "app", "props": {"order_id": "o2", "amount": 5.0}}])
    _until(lambda: "microseg_events_after_erasure_total 1.0" in _request(worker.port, "/metrics", token=None)[1])
    assert _request(worker.port, "/customers/cust-b")[0] == 404
    assert _request(worker.port, "/customers/cust-b", method="DELETE")[0] == 410, "already erased"
    last = _changelog(broker, settings.changelog_topic)  # the mark is keyed by a hash: no value under the id
    assert last.get(b"cust-b", b"gone") is None, "a tombstone under the id"
    assert not any(b"cust-b" in key for key, value in last.items() if value is not None)


def _changelog(broker: str, topic: str) -> dict[bytes, bytes | None]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=broker, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None, consumer_timeout_ms=2000)
    try:
        return {message.key: message.value for message in consumer}
    finally:
        consumer.close()
