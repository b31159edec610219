"""``microseg report uplift``: the uplift report (``engine.tools.uplift``) from files or from the topics.

Files: ``--decisions`` (``replay --out`` output, or dumps of ``next-best-messages`` and
``message-holdouts``) and ``--events`` (the input events). Topics (``--from-topics``): both
decision topics and the input topic, each read from its beginning to the end offset it had when
the read started, with a group-less consumer (nothing committed, the workers' group untouched).
Each message's ``converts_on`` and ``attribution`` come from the rule files (``--rules``); a
message they do not name uses ``--converts-on`` / ``--attribution``.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from microseg.errors import MicrosegError

from microseg.engine.tools.uplift import (
    DEFAULT_ATTRIBUTION_S,
    HOLDOUTS_TOPIC,
    MESSAGES_TOPIC,
    ConversionIndex,
    Exposure,
    UpliftInputError,
    exposures_of,
    plot,
    read_decision_lines,
    read_event_lines,
    table,
    uplift,
)

__all__ = ["uplift_command", "read_topics", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> int:
    """Seconds of a duration such as ``7d``, ``36h`` or ``90m``; ``UpliftInputError`` otherwise."""
    found = _DURATION.match(text)
    if found is None:
        raise UpliftInputError(f"--attribution {text!r} is not a duration such as 7d, 36h or 90m")
    return int(float(found.group(1)) * _UNIT_S[found.group(2)])


class _TopicFold:
    """Collects one topic's records for ``topic_purchases``' reader (same ``add`` signature)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.records: list[tuple[str | None, dict[str, Any]]] = []
        self.problems: list[str] = []

    def add(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            self.problems.append(f"{self.topic}[{partition}]@{offset}: not JSON")
            return
        if isinstance(record, dict):
            self.records.append((self.topic, record))


def read_topics(settings: Any, bootstrap: str) -> tuple[list[Exposure], ConversionIndex, list[str]]:
    """Exposures from both decision topics and conversions from the input topic (see the module)."""
    from microseg.engine.kafka.broker import BrokerError, check_reachable
    from microseg.engine.tools.topic_purchases import _read  # the shared to-the-end reader

    check_reachable(bootstrap, settings)
    if settings.fix_end_offsets:
        from microseg.engine.kafka.offsets import install_end_offsets_fix

        install_end_offsets_fix()
    folds = {topic: _TopicFold(topic) for topic in (settings.messages_topic, settings.holdouts_topic, settings.input_topic)}
    problems: list[str] = []
    for topic, fold in folds.items():
        try:
            asyncio.run(_read(settings, bootstrap, topic, fold, None))  # type: ignore[arg-type]
        except MicrosegError:
            raise
        except Exception as exc:  # noqa: BLE001 - a client error is one line, like every broker problem
            raise BrokerError(f"cannot read {topic} on {bootstrap}: {type(exc).__name__}: {exc}") from None
        problems += fold.problems
    decisions = [(MESSAGES_TOPIC, record) for _, record in folds[settings.messages_topic].records] + [
        (HOLDOUTS_TOPIC, record) for _, record in folds[settings.holdouts_topic].records
    ]  # the configured names may differ: each record is tagged with the role of its topic
    exposures = list(exposures_of(decisions, problems))
    index = ConversionIndex()
    for _, record in folds[settings.input_topic].records:
        index.add_record(record, problems, settings.input_topic)
    return exposures, index, problems


def _goals(rules: Path | None) -> dict[str, tuple[str, int]]:
    if rules is None:
        return {}
    from microseg.segments.language.errors import RuleError
    from microseg.segments.rulefiles import load_rules

    try:
        ruleset = load_rules(rules)
    except RuleError as exc:
        raise UpliftInputError(f"the rules in {rules} do not load: {'; '.join(str(p) for p in exc.problems[:3])}") from None
    return {
        m.id: (getattr(m, "converts_on", None) or "purchase", int(getattr(m, "attribution_s", None) or DEFAULT_ATTRIBUTION_S))
        for m in ruleset.messages
    }


def uplift_command(
    decisions: Annotated[
        list[Path] | None,
        typer.Option("--decisions", metavar="FILE", exists=True, dir_okay=False, help="decision records: 'replay --out' output, or dumps of next-best-messages and message-holdouts (repeatable)"),
    ] = None,
    events: Annotated[
        list[Path] | None, typer.Option("--events", metavar="FILE", exists=True, dir_okay=False, help="the input events, JSON lines (repeatable)")
    ] = None,
    from_topics: Annotated[
        bool, typer.Option("--from-topics", help="read next-best-messages, message-holdouts and the input topic from the broker instead")
    ] = False,
    broker: Annotated[str | None, typer.Option("--broker", help="with --from-topics: kafka://host:port (default: MICROSEG_BROKER)")] = None,
    rules: Annotated[
        Path | None, typer.Option("--rules", file_okay=False, help="rules directory: each message's converts_on and attribution")
    ] = None,
    converts_on: Annotated[str, typer.Option("--converts-on", help="conversion event type for messages the rules do not name")] = "purchase",
    attribution: Annotated[str, typer.Option("--attribution", help="attribution window for messages the rules do not name")] = "7d",
    png: Annotated[Path | None, typer.Option("--png", dir_okay=False, help="write the uplift plot (PNG) here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON lines instead of a table")] = False,
) -> None:
    """Conversion of treated customers vs their holdout, per message and variant, with a 95 % interval (Newcombe)."""
    problems: list[str] = []
    try:
        default_goal = (converts_on, parse_duration(attribution))
        goals = _goals(rules)
        if from_topics == bool(decisions or events):
            raise UpliftInputError("give --decisions FILE and --events FILE, or --from-topics")
        if from_topics:
            from microseg.engine.settings import load_settings

            from microseg.engine.tools.produce import configured_bootstrap

            settings = load_settings(broker=broker)
            # as rules publish and produce: the configured brokers, else a local worker's embedded one
            exposures, index, problems = read_topics(settings, configured_bootstrap(settings))
        else:
            if not decisions or not events:
                raise UpliftInputError("give both --decisions FILE (decision records) and --events FILE (input events)")
            exposures = read_decision_lines(decisions, problems)
            index = read_event_lines(events, problems)
        if not exposures:
            raise UpliftInputError("no decision records found: the report needs next-best-messages and message-holdouts records")
        rows = uplift(exposures, index, goals=goals, default_goal=default_goal)
    except MicrosegError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row.as_dict()).decode())
    else:
        typer.echo(table(rows))
    if not any(row.holdout for row in rows):
        typer.echo("note: no holdout decisions found; give the message-holdouts records too (holdout: in the rule file)", err=True)
    if problems:
        typer.echo(f"note: {len(problems)} records skipped, e.g. {problems[0]}", err=True)
    if png is not None:
        try:
            plot(rows, png)
        except ImportError:
            typer.echo("error: --png needs matplotlib: pip install 'microseg[plots]'", err=True)
            raise typer.Exit(2) from None
        print(f"plot: {png}", file=sys.stderr)
