"""Population snapshots (bounded, persisted, counter resets), metric readings (quantiles from
buckets as histogram_quantile) and the session signatures, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import SecretStr

from microseg.engine.console import readings
from microseg.engine.console.history import History
from microseg.engine.console.session import Sessions


def _take(history: History, t: float, population: int, entered: int, exited: int, version: str = "v1") -> None:
    history.take(t, {"buyer": population}, {("buyer", "entered"): entered, ("buyer", "exited"): exited}, events=t, rules_version=version)


def test_the_ring_keeps_the_newest_snapshots_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "console" / "snapshots.json"
    history = History(3, path)
    for hour in range(5):
        _take(history, hour * 3600.0, population=hour * 10, entered=hour * 12, exited=hour * 2)
    assert [t for t, _ in history.population("buyer")] == [7200.0, 10800.0, 14400.0]
    again = History(3, path)
    assert again.population("buyer") == [(7200.0, 20), (10800.0, 30), (14400.0, 40)]
    assert again.population("nobody") == [(7200.0, 0), (10800.0, 0), (14400.0, 0)]
    moves = again.moves("buyer")
    assert [(m.entries, m.exits, m.seconds) for m in moves] == [(12, 2, 3600.0), (12, 2, 3600.0)]


def test_a_counter_reset_counts_from_zero_and_versions_are_listed_once(tmp_path: Path) -> None:
    history = History(10)
    _take(history, 0.0, 5, entered=100, exited=95)
    _take(history, 3600.0, 7, entered=104, exited=97, version="v2")
    _take(history, 7200.0, 9, entered=3, exited=1, version="v2")  # the worker restarted: counters from 0
    assert [(m.entries, m.exits) for m in history.moves("buyer")] == [(4, 2), (3, 1)]
    assert history.rules_versions() == [(0.0, "v1"), (3600.0, "v2")]


def test_an_unreadable_snapshot_file_starts_a_new_history(tmp_path: Path) -> None:
    path = tmp_path / "snapshots.json"
    path.write_text("{not json")
    history = History(5, path)
    assert history.snapshots() == []
    _take(history, 1.0, 1, 1, 0)
    assert len(History(5, path).snapshots()) == 1
    path.write_text('[{"t": 1}, {"t": 2, "populations": {"a": 1}, "entries": {}, "exits": {}, "events": 3, "rules_version": "v"}]')
    assert [s.t for s in History(5, path).snapshots()] == [2.0]  # the bad row is skipped, the rest kept


def test_quantiles_interpolate_inside_the_bucket_and_say_when_capped() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("h_seconds", "h", buckets=(1.0, 2.0, 4.0), registry=registry)
    assert readings.quantiles(histogram).values[0.5] is None
    for value in [0.5] * 50 + [1.5] * 40 + [3.0] * 9 + [10.0]:
        histogram.observe(value)
    found = readings.quantiles(histogram, (0.25, 0.5, 0.9, 0.95, 0.999))
    assert found.count == 100
    assert found.values[0.25] == pytest.approx(0.5)  # 25th of 50 in [0, 1]
    assert found.values[0.5] == pytest.approx(1.0)
    assert found.values[0.9] == pytest.approx(2.0)
    assert found.values[0.95] == pytest.approx(2.0 + 2.0 * 5 / 9)
    assert found.values[0.999] == 4.0 and found.capped == frozenset({0.999})


def test_counter_totals_by_label() -> None:
    registry = CollectorRegistry()
    counter = Counter("moves_total", "m", ["segment", "direction", "cause"], registry=registry)
    counter.labels("a", "entered", "event").inc(3)
    counter.labels("a", "entered", "tick").inc(2)
    counter.labels("a", "exited", "tick").inc(1)
    assert readings.by_labels(counter, "segment", "direction") == {("a", "entered"): 5.0, ("a", "exited"): 1.0}
    assert readings.total(counter) == 6.0


def test_sessions_are_signed_expire_and_bind_their_csrf_token() -> None:
    now = [1_000_000.0]
    sessions = Sessions(SecretStr("api-token-for-the-session-test"), SecretStr("read-token-for-the-session-test"), clock=lambda: now[0])
    session, cookie = sessions.issue("read")
    assert sessions.read(cookie) == session and not session.admin
    other, _ = sessions.issue("read")
    assert sessions.csrf_ok(session, sessions.csrf(session)) and not sessions.csrf_ok(session, sessions.csrf(other))
    assert not sessions.csrf_ok(session, None) and not sessions.csrf_ok(None, sessions.csrf(session))
    rotated = Sessions(SecretStr("a-new-api-token-after-rotation"), SecretStr("read-token-for-the-session-test"))
    assert rotated.read(cookie) is None  # rotating a token ends every session
    assert sessions.read(cookie + "x") is None and sessions.read("a.b.c") is None and sessions.read("") is None
    now[0] += 8 * 3600 + 1
    assert sessions.read(cookie) is None
    login = sessions.login_nonce()
    assert sessions.login_ok(login, sessions.login_csrf(login)) and not sessions.login_ok(login, "x")
    now[0] += 16 * 60
    assert not sessions.login_ok(login, sessions.login_csrf(login))
