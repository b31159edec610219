"""GDPR erasure in the worker: events after an erasure are dropped, the erased mark is stored under
a keyed hash of the id (never the id), ``DELETE`` tells an unknown id from a known one, and a
worker on a real broker needs the erasure secret."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from microseg.engine.settings import Settings, load_settings
from microseg.errors import ConfigError
from microseg.segments.state import ERASED_PREFIX, decode, encode, erasure_key, erasure_writes

from tests.engine.worker.test_runtime import Feed, assign_all, partition_of, run, runtime

SECRET = b"microseg-development-erasure-key:microseg"  # what Settings() gives without a secret (group microseg)

def _scenario() -> Any:
    """c1 buys, is erased, then comes back with two more events (one in the same batch as the erasure)."""
    rt = runtime()
    feed = Feed()
    first = feed.records([("c1", "purchase", "2026-03-01T10:00:00Z", {"order_id": "o1", "amount": 12}), ("c2", "purchase", "2026-03-01T10:00:00Z", {"order_id": "o2", "amount": 5})])
    erasure = feed.records([("c1", "erasure_requested", "2026-03-01T11:00:00Z", {}), ("c1", "session_started", "2026-03-01T11:30:00Z", {})])
    later = feed.records([("c1", "purchase", "2026-03-02T10:00:00Z", {"order_id": "o3", "amount": 40})])

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(first)
        await rt.handle(erasure)
        await rt.handle(later)

    run(go())
    return rt


def test_events_after_erasure_are_dropped_not_a_new_customer() -> None:
    rt = _scenario()
    changes = rt.sink.changes  # type: ignore[attr-defined]
    c1 = [(c["segment"], c["change"]) for c in changes if c["customer_id"] == "c1"]
    assert c1 == [("buyer", "entered"), ("buyer", "exited")], "exits on erasure, nothing after"
    assert rt.explain("c1") is None
    assert rt.erasure_status("c1") == ("erased", partition_of("c1"))
    assert rt.metrics.after_erasure._value.get() == 2  # type: ignore[attr-defined]
    assert rt.erasure_status("c2") == ("known", partition_of("c2"))
    assert rt.erasure_status("never-seen")[0] == "unknown"


def test_the_mark_is_stored_under_a_keyed_hash_never_the_id() -> None:
    rt = _scenario()
    stored = dict(rt.store.items(partition_of("c1")))
    assert "c1" not in stored
    assert not any(b"c1" in value for value in stored.values())
    mark_key = erasure_key(SECRET, "c1")
    assert mark_key in stored and decode(stored[mark_key]).erased
    assert [k for k in stored if k.startswith(ERASED_PREFIX)] == [mark_key]


def test_a_mark_stored_under_the_id_by_an_older_worker_moves_to_the_hash_on_recovery() -> None:
    from microseg.segments.dna import Dna
    from microseg.segments.state import CustomerState

    rt = runtime()
    partition = partition_of("c7")
    legacy = encode(CustomerState(Dna(), rules_version="old", evaluated_at=1.0, erased=True))
    rt.store.put_many(partition, {"c7": legacy})
    records = Feed().records([("c7", "purchase", "2026-03-02T10:00:00Z", {"order_id": "o", "amount": 1})])

    async def go() -> None:
        await assign_all(rt)
        await rt.handle(records)

    run(go())
    stored = dict(rt.store.items(partition))
    assert "c7" not in stored and stored[erasure_key(SECRET, "c7")] == legacy
    assert rt.sink.changes == []  # type: ignore[attr-defined]


def test_erasure_key_is_keyed_and_hides_the_id() -> None:
    one = erasure_key(b"0123456789abcdef", "c-000042")
    assert one == erasure_key(b"0123456789abcdef", "c-000042"), "found again from the id and the secret"
    assert one != erasure_key(b"another secret!!", "c-000042") != erasure_key(b"0123456789abcdef", "c-000043")
    assert one.startswith(ERASED_PREFIX) and "c-000042" not in one and len(one) == len(ERASED_PREFIX) + 32


def test_erasure_writes_delete_the_id_and_write_the_mark_elsewhere() -> None:
    from microseg.segments.dna import Dna
    from microseg.segments.state import CustomerState

    kept, gone = CustomerState(Dna()), CustomerState(Dna(), erased=True)
    encoded = {"a": encode(kept), "b": encode(gone)}
    key = lambda c: f"{ERASED_PREFIX}{c}!"  # noqa: E731
    assert erasure_writes(encoded, {"a": kept, "b": gone}, key) == {"a": encoded["a"], "b": None, f"{ERASED_PREFIX}b!": encoded["b"]}
    only_kept = {"a": encoded["a"]}
    assert erasure_writes(only_kept, {"a": kept}, key) is only_kept, "nothing copied when nobody was erased"


def test_the_erasure_secret_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MICROSEG_")]:
        monkeypatch.delenv(name)
    with pytest.raises(ConfigError, match="MICROSEG_ERASURE_SECRET: at least 16 characters"):
        load_settings(erasure_secret="short")
    secret = "0123456789abcdef-0123"
    monkeypatch.setenv("MICROSEG_ERASURE_SECRET", secret)
    settings = load_settings(broker="kafka://k:9092")
    assert settings.erasure_key_bytes() == secret.encode() and not settings.erasure_secret_needed
    assert secret not in repr(settings) and secret not in str(settings.model_dump())
    monkeypatch.delenv("MICROSEG_ERASURE_SECRET")
    assert Settings(broker="kafka://k:9092").erasure_secret_needed, "a real broker: state outlives the worker"
    assert not Settings().erasure_secret_needed, "the embedded broker: everything in memory"
    assert not Settings(broker="k:9092", fix_end_offsets=True).erasure_secret_needed, "another process's embedded broker"
    assert Settings().erasure_key_bytes() != Settings(group_id="other").erasure_key_bytes()


def test_a_worker_on_a_real_broker_refuses_to_start_without_the_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROSEG_")}
    env |= {"MICROSEG_BROKER": "kafka://127.0.0.1:9", "MICROSEG_DATA_DIR": str(tmp_path), "MICROSEG_WEB_PORT": "0"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-W", "ignore", "-m", "microseg", "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: MICROSEG_ERASURE_SECRET is required with a configured broker")
    assert time.monotonic() - started < 5
