"""Publishing rule sets to running workers through a one-partition, compacted topic that keeps every version.

Two kinds of record, so that compaction (the last value per key) keeps the whole history:

- key ``version:<version>``: the rule files' contents (not paths) with the version and when it was
  published — one key per version, so no version ever replaces another;
- key ``current``: the pointer ``{"version", "action": "publish"|"rollback", "from", "at"}`` —
  its newest value is the rule set in force; its older values (until compacted) are the history
  of publications and rollbacks.

``rules publish`` sends the version record, then the pointer; ``rules rollback V`` sends V's record
again (the same key and value: harmless) and a pointer to it. Every worker reads the topic from the
start, remembers each version's files and applies only the version the newest pointer names (so a
restarting worker does not re-run the history), compiles it and swaps it in. A version that does
not compile is refused with its problems logged and counted; the worker keeps the rules it had.

Topics written before versions had keys hold records under the key ``rules`` (``{"version",
"files"}``): each is read as that version's record and a pointer to it, so old topics keep working
and their versions appear in the history.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from microseg.segments.language.errors import RuleError
from microseg.segments.rulefiles import compile_rule_texts, load_rules
from microseg.segments.rulefiles.directory import is_rule_file
from microseg.segments.ruleset import RuleSet
from microseg.segments.view import iso

from microseg.engine.kafka.clients import state_reader, sync_producer
from microseg.engine.settings import Settings

__all__ = [
    "publish_rules", "rollback_rules", "apply_published", "rule_files", "RulesLog", "Published", "Pointer",
    "PublishedRules", "read_rules_log", "LEGACY_KEY", "CURRENT_KEY",
]

log = logging.getLogger(__name__)
LEGACY_KEY = b"rules"
CURRENT_KEY = b"current"
_VERSION_PREFIX = b"version:"


def rule_files(directory: Path) -> dict[str, str]:
    """The rule files of ``directory`` by name (``*.test.yaml`` rule tests excluded, as from the version)."""
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(directory.iterdir()) if is_rule_file(path)}


@dataclass(frozen=True)
class Published:
    """One version on the topic: its files and when it was first published (epoch seconds)."""

    version: str
    files: dict[str, str]
    at: float
    offset: int


@dataclass(frozen=True)
class Pointer:
    """One move of ``current``: to ``version`` by ``action`` (``publish`` or ``rollback``) at ``at``."""

    version: str
    action: str
    at: float
    previous: str | None
    offset: int


@dataclass
class RulesLog:
    """What a rules topic holds, read in offset order: every version and every pointer move."""

    versions: dict[str, Published] = field(default_factory=dict)
    pointers: list[Pointer] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)

    @property
    def current(self) -> str | None:
        return self.pointers[-1].version if self.pointers else None

    def add(self, key: bytes | None, value: bytes | None, timestamp_ms: int | None, offset: int) -> None:
        """One record of the topic (a tombstone or an unknown key is ignored)."""
        if value is None:
            return
        at = (timestamp_ms or 0) / 1000
        try:
            payload = orjson.loads(value)
            if key == CURRENT_KEY:
                self.pointers.append(Pointer(str(payload["version"]), str(payload.get("action", "publish")), float(payload.get("t", at)), payload.get("from"), offset))
            elif key == LEGACY_KEY or (key or b"").startswith(_VERSION_PREFIX):
                version = str(payload["version"])
                files = {str(k): str(v) for k, v in dict(payload["files"]).items()}
                if version not in self.versions:
                    self.versions[version] = Published(version, files, float(payload.get("t", at)), offset)
                if key == LEGACY_KEY:  # before keyed versions: every record was also the pointer
                    previous = self.current
                    self.pointers.append(Pointer(version, "publish", at, previous, offset))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            self.malformed.append((offset, f"{exc.__class__.__name__}: {exc}"))

    def resolve(self, version: str) -> str | None:
        """A version given in full or by a unique prefix (at least 4 characters)."""
        if version in self.versions:
            return version
        found = [v for v in self.versions if len(version) >= 4 and v.startswith(version)]
        return found[0] if len(found) == 1 else None


def _produce(settings: Settings, bootstrap: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = sync_producer(settings, bootstrap, acks="all")
    try:
        futures = [producer.send(settings.rules_topic, key=key, value=value, partition=0) for key, value in records]
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close(timeout=10)


def _version_record(version: str, files: dict[str, str], now: float) -> tuple[bytes, bytes]:
    return _VERSION_PREFIX + version.encode(), orjson.dumps({"version": version, "files": files, "t": now, "published_at": iso(now)})


def _pointer_record(version: str, action: str, previous: str | None, now: float) -> tuple[bytes, bytes]:
    return CURRENT_KEY, orjson.dumps({"version": version, "action": action, "from": previous, "t": now, "at": iso(now)})


def publish_rules(settings: Settings, bootstrap: str, directory: Path) -> str:
    """Validate, then publish (the version's record, then the pointer); returns the version. Raises
    ``RuleError`` on invalid files and ``BrokerError`` (one line, within seconds) when no bootstrap
    server answers."""
    from microseg.engine.kafka.broker import check_reachable

    ruleset = load_rules(directory)
    check_reachable(bootstrap, settings)
    try:
        previous = read_rules_log(settings, bootstrap).current
    except Exception as exc:  # noqa: BLE001 - a topic not created yet (no worker ran): nothing was published
        log.debug("rules topic %s not readable before publishing (%s)", settings.rules_topic, exc)
        previous = None
    now = time.time()
    _produce(settings, bootstrap, [_version_record(ruleset.version, rule_files(directory), now), _pointer_record(ruleset.version, "publish", previous, now)])
    return ruleset.version


def rollback_rules(settings: Settings, bootstrap: str, version: str) -> tuple[str, str | None]:
    """Make a version published before the one in force again; returns (version, the one it replaces).
    Raises ``RuleError`` when the version is unknown or does not compile with this release."""
    from microseg.engine.kafka.broker import check_reachable
    from microseg.segments.language import Problem

    check_reachable(bootstrap, settings)
    history = read_rules_log(settings, bootstrap)
    found = history.resolve(version)
    if found is None:
        known = ", ".join(list(history.versions)[-5:]) or "none"
        raise RuleError([Problem(settings.rules_topic, 0, 0, f"no version {version!r} on the rules topic (newest: {known}); see 'microseg rules history'")])
    compile_rule_texts(history.versions[found].files, base=f"{settings.rules_topic}@{found}")
    now = time.time()
    _produce(settings, bootstrap, [_version_record(found, history.versions[found].files, now), _pointer_record(found, "rollback", history.current, now)])
    return found, history.current


def read_rules_log(settings: Settings, bootstrap: str, *, timeout: float = 30.0) -> RulesLog:
    """The whole rules topic, read from the start to its end (a group-less consumer)."""
    return asyncio.run(_read(settings, bootstrap, timeout))


async def _read(settings: Settings, bootstrap: str, timeout: float) -> RulesLog:
    from aiokafka import TopicPartition

    from microseg.engine.kafka.offsets import true_end_offsets

    history = RulesLog()
    tp = TopicPartition(settings.rules_topic, 0)
    consumer = state_reader(bootstrap, settings.aiokafka_kwargs(), client_id="microseg-rules-history")
    await consumer.start()
    try:
        end = (await true_end_offsets(consumer, [tp]))[tp]
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        position = 0
        deadline = time.monotonic() + timeout
        while position < end and time.monotonic() < deadline:
            for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                if record.offset < end:
                    history.add(record.key, record.value, record.timestamp, record.offset)
                position = max(position, record.offset + 1)
    finally:
        await consumer.stop()
    return history


class PublishedRules:
    """The worker's side: reads the topic's records in order and applies the version in force."""

    def __init__(self) -> None:
        self.log = RulesLog()
        self.applied: str | None = None

    async def apply(self, records: Iterable[tuple[bytes | None, bytes | None, int | None, int]], runtime: Any) -> None:
        """Records (key, value, timestamp ms, offset) read since the last call; the newest pointer wins."""
        malformed = len(self.log.malformed)
        for key, value, timestamp_ms, offset in records:
            self.log.add(key, value, timestamp_ms, offset)
        for offset, reason in self.log.malformed[malformed:]:
            runtime.metrics.rule_errors.inc()
            log.error("published rules record at offset %d is malformed (%s); keeping rules %s", offset, reason, runtime.ruleset.version)
        target = self.log.current
        if target is None or target == self.applied:
            return
        self.applied = target
        published = self.log.versions.get(target)
        if published is None:
            runtime.metrics.rule_errors.inc()
            log.error("the rules pointer names version %s, which the rules topic does not hold; keeping rules %s", target, runtime.ruleset.version)
            return
        await _apply_files(published.files, runtime)


async def _apply_files(files: dict[str, str], runtime: Any) -> None:
    try:
        ruleset: RuleSet = compile_rule_texts(files, base="published")
    except RuleError as exc:
        runtime.metrics.rule_errors.inc()
        for problem in exc.problems:
            log.error("published rules refused: %s", problem)
        return
    swept = await runtime.apply_rules(ruleset)
    log.info("rules %s in force (%d customers re-evaluated)", ruleset.version, swept)


async def apply_published(value: bytes, runtime: Any) -> None:
    """Compile one record in the layout before keyed versions (``{"version", "files"}``) and swap it in."""
    try:
        payload = orjson.loads(value)
        files = payload["files"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        runtime.metrics.rule_errors.inc()
        log.error("published rules record is malformed (%s); keeping rules %s", exc, runtime.ruleset.version)
        return
    await _apply_files(files, runtime)
