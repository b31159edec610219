"""Audiences out with two workers: segment members from either worker equal the replay's, the
compacted memberships topic rebuilds the same members, customer requests are routed to the owner,
and the index survives a kill -9 and the failover of its partitions."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from microseg.engine.settings import Settings
from microseg.engine.startup import load_predictive_model, load_ruleset
from microseg.engine.tools.produce import produce_file
from microseg.engine.tools.replay import read_lines, replay
from microseg.engine.tools.sinks import ListSink

from tests.conftest import consume

pytestmark = [pytest.mark.broker]

READ = "read-token-for-audiences-0123456789"
ADMIN = "admin-token-for-audiences-0123456789"


def _settings(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in env.items() if "TOKEN" not in k})


def _get(worker: Any, path: str, token: str | None = READ) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"null")


def _members(worker: Any, segment: str, limit: int = 37) -> list[str]:
    found: list[str] = []
    cursor = ""
    while True:
        status, page = _get(worker, f"/segments/{segment}/members?limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, page
        found += [m["customer_id"] for m in page["members"]]
        if page["next_cursor"] is None:
            return found
        cursor = page["next_cursor"]


def _rebuilt(bootstrap: str, topic: str, expected_keys: int) -> dict[str, set[str]]:
    """A consumer of the compacted topic: the last value per key (Tansu does not compact)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None, consumer_timeout_ms=2000)
    last: dict[bytes, bytes | None] = {}
    try:
        for message in consumer:
            last[message.key] = message.value
    finally:
        consumer.close()
    members: dict[str, set[str]] = {}
    for key, value in last.items():
        if value is not None:
            customer, _, segment = key.decode().rpartition("|")
            assert orjson.loads(value)["customer_id"] == customer
            members.setdefault(segment, set()).add(customer)
    return members


def _wait_equal(read: Any, expected: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def test_members_from_any_worker_equal_replay_and_the_memberships_topic(
    broker: str, workers: Any, unique_topics: dict[str, str], sample_journeys: Path
) -> None:
    env = {**unique_topics, "MICROSEG_TICKS": "false", "MICROSEG_READ_TOKEN": READ, "MICROSEG_API_TOKEN": ADMIN}
    settings = _settings(env)
    ruleset = load_ruleset(settings)
    from microseg.segments.step import Core

    sink = ListSink()
    _, states = replay(read_lines(str(sample_journeys)), Core(ruleset, load_predictive_model(settings)), sink)
    expected: dict[str, set[str]] = {}
    for customer_id, state in states.items():
        for segment in state.segments:
            expected.setdefault(segment, set()).add(customer_id)
    assert len(expected) >= 3
    change_ids = {c["change_id"] for c in sink.change_records}

    one, two = workers(env), workers(env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        a, b = one.health(), two.health()
        if a and b and a["ready"] and b["ready"] and len(a["ready"]) + len(b["ready"]) == settings.partitions:
            break
        time.sleep(0.5)
    assert set(a["ready"]).isdisjoint(b["ready"]), (a, b)
    produce_file(settings, broker, sample_journeys)
    consume(broker, settings.changes_topic, until=lambda got: change_ids <= {c["change_id"] for c in got}, timeout=240)

    for worker in (one, two):
        for segment in expected:
            got = _wait_equal(lambda: sorted(_members(worker, segment)), sorted(expected[segment]))
            assert got == sorted(expected[segment]), segment
    segment = max(expected, key=lambda s: len(expected[s]))
    listed = _members(one, segment, limit=5)
    assert len(listed) == len(set(listed)) == len(expected[segment])  # paging never repeats anyone
    rebuilt = _wait_equal(lambda: _rebuilt(broker, settings.memberships_topic, 0), expected)
    assert rebuilt == expected

    # guarded: no token, or a token in the URL, is refused before anything is read
    assert _get(one, f"/segments/{segment}/members", token=None)[0] == 401
    assert _get(one, "/segments/no_such_segment/members")[0] == 404

    # a customer answers on either worker: the one that does not own it routes to the owner
    owned_by_two = set(two.health()["ready"])
    customer = next(c for c in sorted(states) if not states[c].erased and _partition(c, settings.partitions) in owned_by_two)
    status, found = _get(one, f"/customers/{customer}")
    assert status == 200 and found["customer_id"] == customer and found["partition"] in owned_by_two
    assert sorted(found["segments"]) == sorted(states[customer].segments)
    assert _get(one, f"/customers/{customer}", token=None)[0] == 401

    # microseg export segment: every member, from either worker, as CSV and JSONL
    import csv
    import io
    import os

    from typer.testing import CliRunner

    from microseg.engine.tools.cli import app

    saved = {k: os.environ.get(k) for k in ("MICROSEG_READ_TOKEN", "MICROSEG_WEB_PORT")}
    os.environ.update({"MICROSEG_READ_TOKEN": READ, "MICROSEG_WEB_PORT": str(two.port)})
    try:
        as_csv = CliRunner().invoke(app, ["export", "segment", segment, "--format", "csv"])
        as_jsonl = CliRunner().invoke(app, ["export", "segment", segment, "--format", "jsonl", "--url", f"http://127.0.0.1:{one.port}"])
        unknown = CliRunner().invoke(app, ["export", "segment", "no_such_segment"])
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert sorted(r["customer_id"] for r in rows) == sorted(expected[segment]) and all(r["since"] for r in rows)
    assert sorted(orjson.loads(line)["customer_id"] for line in as_jsonl.stdout.splitlines()) == sorted(expected[segment])
    assert unknown.exit_code == 1 and "404" in unknown.stderr

    # an erasure asked of the worker that does not own the customer: routed, and the customer
    # leaves every segment's members and the memberships topic (tombstones)
    request = urllib.request.Request(f"http://127.0.0.1:{one.port}/customers/{customer}", method="DELETE")
    request.add_header("Authorization", f"Bearer {ADMIN}")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202 and orjson.loads(response.read())["status"] == "accepted"
    for segment_id in list(expected):
        expected[segment_id].discard(customer)
    expected = {s: m for s, m in expected.items() if m}
    for worker in (one, two):
        for segment_id, members in expected.items():
            assert _wait_equal(lambda: sorted(_members(worker, segment_id)), sorted(members)) == sorted(members), segment_id
    assert _wait_equal(lambda: _rebuilt(broker, settings.memberships_topic, 0), expected) == expected

    # kill -9 one worker: the other recovers its partitions, with the index, from the changelog
    two.kill()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        health = one.health()
        if health and len(health["ready"]) == settings.partitions:
            break
        time.sleep(0.5)
    for segment in expected:
        assert sorted(_members(one, segment)) == sorted(expected[segment]), segment
    assert _get(one, f"/customers/{customer}")[0] == 404  # erased before the kill: stays erased


def _partition(customer_id: str, partitions: int) -> int:
    from aiokafka.partitioner import DefaultPartitioner

    return DefaultPartitioner()(customer_id.encode(), list(range(partitions)), [])
