"""Identity across partitions on the live worker (embedded broker, RocksDB): the same records as
``microseg replay`` with identifies, and a kill -9 between the visitor's half (hand-over sent) and
the customer's merge loses nothing and duplicates nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from microseg.engine.settings import Settings
from microseg.engine.tools.produce import produce_lines
from microseg.engine.tools.replay import replay
from microseg.engine.tools.sinks import ListSink
from microseg.engine.worker.resolution import KILL_AFTER_HANDOFF
from microseg.segments.identity import MemoryAliases
from microseg.segments.step import Core
from microseg.segments.testing import load_rules_text

from tests.conftest import consume
from tests.segments.test_identity import RULES, _line

pytestmark = [pytest.mark.broker]

N = 8
SOLO = "anon-solo"
"""A visitor who never identifies: a segment member as an anonymous profile (CONTRACT §8)."""


def _phases() -> list[list[bytes]]:
    """Browsing and purchases; the identifies; then alias-only events, a repeated and a contested
    identify, and an erasure followed by the erased customer's visitor browsing again and a
    visitor who never identifies (``SOLO``)."""
    browse = [_line(f"v{i}-{k}", "page_view", f"2026-03-01T10:0{k}:00Z", anonymous=f"anon-{i}", page="/p") for i in range(N) for k in range(3)]
    buys = [_line(f"p{i}", "purchase", f"2026-03-02T09:00:00Z", customer=f"cust-{i}", order_id=f"o{i}", amount=10) for i in range(N)]
    identifies = [_line(f"id{i}", "identify", "2026-03-02T10:00:00Z", customer=f"cust-{i}", anonymous=f"anon-{i}") for i in range(N)]
    later = [_line(f"w{i}-{k}", "page_view", f"2026-03-03T10:0{k}:00Z", anonymous=f"anon-{i}", page="/q") for i in range(N) for k in range(2)]
    later += [
        _line("id-again", "identify", "2026-03-03T11:00:00Z", customer="cust-1", anonymous="anon-1"),
        _line("id-contested", "identify", "2026-03-03T11:00:00Z", customer="cust-0", anonymous="anon-3"),
    ]
    erase = [_line("erase-2", "erasure_requested", "2026-03-04T10:00:00Z", customer="cust-2")]
    after = [_line(f"x{k}", "page_view", f"2026-03-05T10:0{k}:00Z", anonymous="anon-2", page="/r") for k in range(3)]
    after += [_line(f"solo-{k}", "page_view", f"2026-03-05T11:0{k}:00Z", anonymous=SOLO, page="/s") for k in range(2)]  # never identified
    return [browse + buys, identifies, later, erase, after]


def _replayed(phases: list[list[bytes]]) -> tuple[ListSink, dict[str, Any], MemoryAliases]:
    sink = ListSink()
    aliases = MemoryAliases()
    _, states = replay([line for phase in phases for line in phase], Core(load_rules_text(RULES)), sink, aliases=aliases)
    return sink, states, aliases


def _ids(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["change_id"]: r for r in records}


def _env(unique_topics: dict[str, str], tmp_path: Path) -> tuple[dict[str, str], Settings]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yaml").write_text(RULES)
    env = {**unique_topics, "MICROSEG_TICKS": "false", "MICROSEG_RULES_DIR": str(rules), "MICROSEG_PARTITIONS": "4"}
    return env, Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in env.items()})


def _run_phases(broker: str, settings: Settings, phases: list[list[bytes]], expected: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Each phase produced once the worker has emitted every change replay gives up to it."""
    got: list[dict[str, Any]] = []
    for phase, wanted in zip(phases, expected):
        produce_lines(settings, broker, phase)
        got = consume(broker, settings.changes_topic, until=lambda records, w=wanted: set(w) <= set(_ids(records)), timeout=120)
    return got


def _expected_by_phase(phases: list[list[bytes]]) -> list[dict[str, str]]:
    return [{c["change_id"]: c["cause"] for c in _replayed(phases[: i + 1])[0].change_records} for i in range(len(phases))]


def test_cross_partition_identities_are_spread() -> None:
    """The data exercise hand-overs: most visitors and their customers are on different partitions."""
    partitioner = DefaultPartitioner()
    moved = sum(partitioner(f"anon-{i}".encode(), [0, 1, 2, 3], []) != partitioner(f"cust-{i}".encode(), [0, 1, 2, 3], []) for i in range(N))
    assert moved >= 4


def test_worker_equals_replay_with_identifies(broker: str, workers: Any, unique_topics: dict[str, str], tmp_path: Path) -> None:
    env, settings = _env(unique_topics, tmp_path)
    phases = _phases()
    replayed, states, aliases = _replayed(phases)
    worker = workers(env)
    worker.wait_assigned()
    changes = _run_phases(broker, settings, phases, _expected_by_phase(phases))
    assert _ids(changes) == _ids(replayed.change_records)
    letters = consume(broker, settings.dlq_topic, until=lambda got: len(got) >= 1)
    assert [r["reason"] for r in letters] == [r["reason"] for r in replayed.dead_letters]
    assert "already linked to another customer" in letters[0]["reason"]
    for i in range(N):
        if i == 2:
            continue
        found = worker.get(f"/customers/cust-{i}")
        state = states[f"cust-{i}"]
        assert found["segments"] == list(state.segments)
        assert found["aliases"] == [f"anon-{i}"] == list(aliases.aliases_of(f"cust-{i}"))
        assert found["dna"]["page_views_30d"] == 5  # three before the identify, merged; two after, by alias


def test_kill_9_between_the_hand_over_and_the_merge(broker: str, workers: Any, unique_topics: dict[str, str], tmp_path: Path) -> None:
    env, settings = _env(unique_topics, tmp_path)
    phases = _phases()
    replayed, states, _ = _replayed(phases)
    expected = _expected_by_phase(phases)
    data = tmp_path / "data"
    first = workers(env, data)
    first.wait_assigned()
    produce_lines(settings, broker, phases[0])
    consume(broker, settings.changes_topic, until=lambda records: set(expected[0]) <= set(_ids(records)), timeout=120)
    first.stop()
    dying = workers({**env, KILL_AFTER_HANDOFF: "1"}, data)
    dying.wait_assigned()
    produce_lines(settings, broker, phases[1])
    assert dying.process is not None
    dying.process.wait(120)
    assert dying.process.returncode == -9  # killed itself once a hand-over was out, before state and offsets
    survivor = workers(env, data)
    survivor.wait_assigned()
    changes = _run_phases(broker, settings, phases[1:], expected[1:])
    by_id: dict[str, dict[str, Any]] = {}
    for record in changes:  # re-emitted records (at least once) carry the same id and the same content
        assert by_id.setdefault(record["change_id"], record) == record
    assert by_id == _ids(replayed.change_records)  # nothing lost, nothing extra
    for i in range(N):
        if i == 2:
            continue
        found = survivor.get(f"/customers/cust-{i}")
        assert found["dna"]["page_views_30d"] == 5 and found["dna"]["purchases_total"] == 1  # merged once, not twice
        assert found["segments"] == list(states[f"cust-{i}"].segments)


def test_two_workers_hand_over_between_processes(broker: str, workers: Any, unique_topics: dict[str, str], tmp_path: Path) -> None:
    """The identity topic is co-partitioned with the input across workers: with two workers sharing
    the partitions, hand-overs go from one process to the other and the records are replay's."""
    env, settings = _env(unique_topics, tmp_path)
    phases = _phases()
    replayed, states, _ = _replayed(phases)
    first, second = workers(env), workers(env)
    first.wait_assigned()
    second.wait_assigned()
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # both hold partitions: the group has settled
        a, b = first.health(), second.health()
        if a and b and a["partitions"] and b["partitions"] and len(a["partitions"]) + len(b["partitions"]) == 4:
            break
        time.sleep(0.5)
    changes = _run_phases(broker, settings, phases, _expected_by_phase(phases))
    assert _ids(changes) == _ids(replayed.change_records)
    for i in range(N):
        if i == 2:
            continue
        found = first.get(f"/customers/cust-{i}")  # routed to the owner when it is the other worker
        assert found["aliases"] == [f"anon-{i}"] and found["dna"]["page_views_30d"] == 5
        assert found["segments"] == list(states[f"cust-{i}"].segments)
    _assert_visitor_is_public(broker, settings, [first, second], replayed)


def _memberships(bootstrap: str, topic: str) -> dict[bytes, Any]:
    """The memberships topic's last value per key (None: a tombstone)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None, consumer_timeout_ms=2000)
    last: dict[bytes, Any] = {}
    try:
        for message in consumer:
            last[message.key] = None if message.value is None else orjson.loads(message.value)
    finally:
        consumer.close()
    return last


def _assert_visitor_is_public(broker: str, settings: Settings, workers_: list[Any], replayed: ListSink) -> None:
    """The never-identified visitor, from any worker: a member as ``customer_id: null`` +
    ``anonymous_id`` with its entry's since and cause, explained by ``/visitors/{id}`` (routed to
    its owner), exported without control characters, keyed printably on segment-memberships, and
    erased by ``DELETE /visitors/{id}``."""
    import io
    import urllib.error
    import urllib.request

    from microseg.engine.tools.audiences import fetch_members, write_members

    entry = next(c for c in replayed.change_records if c.get("anonymous_id") == SOLO and c["segment"] == "browser" and c["change"] == "entered")
    for worker in workers_:
        members = worker.get("/segments/browser/members?limit=3")  # small pages: the cursor passes the visitor's key
        listed = list(members["members"])
        while members["next_cursor"]:
            members = worker.get(f"/segments/browser/members?limit=3&cursor={members['next_cursor']}")
            listed += members["members"]
        solo = [m for m in listed if m["anonymous_id"] == SOLO]
        assert solo == [{"customer_id": None, "anonymous_id": SOLO, "since": entry["at"], "cause": entry["cause"], "rules_version": entry["rules_version"]}]
        assert len(listed) == len({(m["customer_id"], m["anonymous_id"]) for m in listed})
        found = worker.get(f"/visitors/{SOLO}")
        assert found["customer_id"] is None and found["anonymous_id"] == SOLO and found["segments"] == ["browser"]
        assert found["dna"]["page_views_30d"] == 2 and found["aliases"] == []
        out = io.StringIO()
        write_members(fetch_members(f"http://127.0.0.1:{worker.port}", "browser", page=4), out, "csv")
        assert "\x01" not in out.getvalue() and f",{SOLO},{entry['at']},{entry['cause']}," in out.getvalue()
    try:
        workers_[0].get("/customers/%01" + SOLO)
        raise AssertionError("a visitor's internal profile key answered as a customer id")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    last = _memberships(broker, settings.memberships_topic)
    assert all(b"\x01" not in key for key in last)
    assert last[f"{SOLO}|anonymous:browser".encode()]["anonymous_id"] == SOLO
    assert last[f"{SOLO}|anonymous:browser".encode()]["customer_id"] is None
    assert last[b"anon-0|anonymous:browser"] is None  # identified: left as a visitor (tombstone)


    # erased through the API, asked of either worker (routed to the owner): gone from the members,
    # a tombstone on segment-memberships, unknown to explain
    request = urllib.request.Request(f"http://127.0.0.1:{workers_[0].port}/visitors/{SOLO}", method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = orjson.loads(response.read())
        assert response.status == 202 and answer["customer_id"] is None and answer["anonymous_id"] == SOLO and answer["status"] == "accepted"
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        last = _memberships(broker, settings.memberships_topic)
        if last[f"{SOLO}|anonymous:browser".encode()] is None:
            break
        time.sleep(0.5)
    assert last[f"{SOLO}|anonymous:browser".encode()] is None
    for worker in workers_:
        assert SOLO not in [m["anonymous_id"] for m in worker.get("/segments/browser/members?limit=1000")["members"]]
        try:
            worker.get(f"/visitors/{SOLO}")
            raise AssertionError("an erased visitor is still explained")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
