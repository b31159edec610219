"""The rules topic keeps every version: keyed versions, the ``current`` pointer, rollbacks, and
topics written before versions had keys (no broker: records fed to the worker's reader)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from microseg.engine.worker.rules_topic import CURRENT_KEY, LEGACY_KEY, PublishedRules, RulesLog
from microseg.segments.rulefiles import compile_rule_texts

A = {"a.yaml": "version: 1\nsegments:\n  - {id: buyer, when: purchases_total >= 1}\n"}
B = {"a.yaml": "version: 1\nsegments:\n  - {id: buyer, when: purchases_total >= 2}\n"}
BAD = {"a.yaml": "version: 1\nsegments: [ {id: 1"}


def _version(files: dict[str, str]) -> str:
    return compile_rule_texts(files).version


class _Counter:
    def __init__(self) -> None:
        self.count = 0

    def inc(self, n: int = 1) -> None:
        self.count += n


class FakeRuntime:
    def __init__(self) -> None:
        self.applied: list[str] = []
        self.metrics = type("M", (), {"rule_errors": _Counter()})()
        self.ruleset = compile_rule_texts(A)

    async def apply_rules(self, ruleset: Any) -> int:
        self.applied.append(ruleset.version)
        self.ruleset = ruleset
        return 0


def _rec(key: bytes, value: dict[str, Any], offset: int) -> tuple[bytes, bytes, int, int]:
    return key, orjson.dumps(value), 1_700_000_000_000 + offset, offset


def _publish(files: dict[str, str], offset: int, action: str = "publish") -> list[tuple[bytes, bytes, int, int]]:
    v = _version(files)
    return [_rec(b"version:" + v.encode(), {"version": v, "files": files, "t": 1.0 + offset}, offset),
            _rec(CURRENT_KEY, {"version": v, "action": action, "t": 2.0 + offset}, offset + 1)]


def test_the_log_keeps_every_version_and_the_pointer_history() -> None:
    log = RulesLog()
    for key, value, ts, offset in [*_publish(A, 0), *_publish(B, 2), _rec(CURRENT_KEY, {"version": _version(A), "action": "rollback", "from": _version(B)}, 4)]:
        log.add(key, value, ts, offset)
    assert list(log.versions) == [_version(A), _version(B)]
    assert [p.action for p in log.pointers] == ["publish", "publish", "rollback"]
    assert log.current == _version(A)
    assert log.resolve(_version(B)[:5]) == _version(B) and log.resolve("zz") is None


def test_old_format_records_are_versions_and_pointers() -> None:
    log = RulesLog()
    log.add(LEGACY_KEY, orjson.dumps({"version": "v1", "files": A}), 1000, 0)
    log.add(LEGACY_KEY, orjson.dumps({"version": "v2", "files": B}), 2000, 1)
    assert list(log.versions) == ["v1", "v2"] and log.current == "v2"
    assert log.pointers[1].previous == "v1" and log.pointers[1].at == 2.0
    log.add(LEGACY_KEY, b"{not json", 3000, 2)
    assert log.malformed and log.current == "v2"


def test_the_worker_applies_the_newest_pointer_once_and_follows_a_rollback() -> None:
    runtime = FakeRuntime()
    reader = PublishedRules()
    asyncio.run(reader.apply([*_publish(A, 0), *_publish(B, 2)], runtime))
    assert runtime.applied == [_version(B)]  # only the newest pointer of what was read
    asyncio.run(reader.apply([_rec(CURRENT_KEY, {"version": _version(A), "action": "rollback"}, 4)], runtime))
    assert runtime.applied == [_version(B), _version(A)]
    asyncio.run(reader.apply([_rec(b"version:" + _version(B).encode(), {"version": _version(B), "files": B}, 5)], runtime))
    assert runtime.applied == [_version(B), _version(A)]  # a version record alone changes nothing


def test_a_version_that_does_not_compile_or_is_missing_is_refused_and_counted() -> None:
    runtime = FakeRuntime()
    reader = PublishedRules()
    asyncio.run(reader.apply([_rec(b"version:bad", {"version": "bad", "files": BAD}, 0), _rec(CURRENT_KEY, {"version": "bad"}, 1)], runtime))
    assert runtime.applied == [] and runtime.metrics.rule_errors.count == 1
    asyncio.run(reader.apply([_rec(CURRENT_KEY, {"version": "never-published"}, 2)], runtime))
    assert runtime.applied == [] and runtime.metrics.rule_errors.count == 2
    asyncio.run(reader.apply([(LEGACY_KEY, orjson.dumps({"version": "x", "files": B}), 0, 3)], runtime))
    assert runtime.applied == [_version(B)]  # an old-format record still works
