"""Publishing rule sets to running workers through a one-partition, compacted topic.

``rules publish`` sends the rule files' contents (not paths) with their version; every worker
reads the topic from the start and applies only the newest record of what it finds (so a
restarting worker does not re-run the history of versions), compiles it and swaps it in. A record
that does not compile is refused with its problems logged and counted; the worker keeps the rules
it had.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson

from microseg.segments.language.errors import RuleError
from microseg.segments.rulefiles import compile_rule_texts, load_rules

from microseg.engine.kafka.clients import sync_producer
from microseg.engine.settings import Settings

__all__ = ["publish_rules", "apply_published", "rule_files"]

log = logging.getLogger(__name__)
_KEY = b"rules"


def rule_files(directory: Path) -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(directory.iterdir()) if path.suffix in (".yaml", ".yml")}


def publish_rules(settings: Settings, bootstrap: str, directory: Path) -> str:
    """Validate, then publish; returns the version. Raises ``RuleError`` on invalid files and
    ``BrokerError`` (one line, within seconds) when no bootstrap server answers."""
    from microseg.engine.kafka.broker import check_reachable

    ruleset = load_rules(directory)
    check_reachable(bootstrap, settings)
    payload = orjson.dumps({"version": ruleset.version, "files": rule_files(directory)})
    producer = sync_producer(settings, bootstrap, acks="all")
    try:
        producer.send(settings.rules_topic, key=_KEY, value=payload).get(timeout=30)
    finally:
        producer.close(timeout=10)
    return ruleset.version


async def apply_published(value: bytes, runtime: Any) -> None:
    """Compile a published record and swap it in; a bad one is refused and counted."""
    try:
        payload = orjson.loads(value)
        ruleset = compile_rule_texts(payload["files"], base="published")
    except RuleError as exc:
        runtime.metrics.rule_errors.inc()
        for problem in exc.problems:
            log.error("published rules refused: %s", problem)
        return
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        runtime.metrics.rule_errors.inc()
        log.error("published rules record is malformed (%s); keeping rules %s", exc, runtime.ruleset.version)
        return
    swept = await runtime.apply_rules(ruleset)
    log.info("rules %s in force (%d customers re-evaluated)", ruleset.version, swept)
