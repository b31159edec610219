"""``microseg rules test DIR``: analyst-written rule tests kept beside the rules, in ``*.test.yaml`` files.

A test file lists cases; each case sends its events through the same record pipeline as every
host (``segments.testing.Journey``: ``segments.pipeline.Pipeline`` on memory) and checks
memberships at instants::

    cases:
      - name: a first order makes a new customer, lost after six months
        events:
          - {customer: c1, type: purchase, ts: "2026-01-10T12:00:00Z", props: {order_id: o1, amount: 40}}
        expect:
          - {at: "2026-01-10T12:00:00Z", customer: c1, in: [rfm_new]}
          - {at: "2026-08-01T00:00:00Z", customer: c1, in: [rfm_lost], not_in: [rfm_new]}

An expectation at ``at`` is checked after every event of the case with ``ts`` at or before ``at``
has been sent (in file order) and time has run on to ``at`` for every customer of the case; ``in``
names segments the customer must be in, ``not_in`` segments it must not be in, ``only`` the exact
set (``[]``: in none). An event the rule set's event catalog refuses (unknown type, props
missing or of the wrong kind: what a host would dead-letter) is a problem at its place, with the
reason, and its case does not run. Test files are not rule files: they are left out of the rules' version hash
and of what ``rules publish`` ships. Every problem and failure is reported as ``file:line:col``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import orjson
import yaml

from microseg.schemas.event_catalog import DEFAULT_CATALOG
from microseg.schemas.event_models import InvalidEvent
from microseg.segments.language import Problem
from microseg.segments.rulefiles.directory import TEST_FILE_SUFFIXES
from microseg.segments.rulefiles.marked_yaml import YamlProblem, compose, plain_scalar, position
from microseg.segments.rulefiles.positions import TextLines
from microseg.segments.ruleset import RuleSet
from microseg.segments.testing import Journey

__all__ = ["CaseResult", "FileResult", "test_files", "run_test_file", "run_rule_tests"]


@dataclass
class CaseResult:
    name: str
    where: str
    checks: int = 0
    failures: list[Problem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class FileResult:
    path: Path
    cases: list[CaseResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    """The file could not be read as rule tests (each problem with its place)."""


def test_files(directory: Path) -> list[Path]:
    """The rule tests of a rules directory: ``*.test.yaml``/``*.test.yml``, sorted."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(TEST_FILE_SUFFIXES) and not p.name.startswith("."))


class _Bad(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.where = position(node.start_mark)
        self.message = message


class _Refused(Exception):
    """Events of a case the rule set's event catalog refuses (a host would dead-letter them): each
    one is a problem at its place, and the case does not run."""

    def __init__(self, bad: list[_Bad]) -> None:
        super().__init__("; ".join(b.message for b in bad))
        self.bad = bad


def _refusal(ruleset: RuleSet, raw: bytes, ts: float, e: dict[str, yaml.Node], node: yaml.Node) -> _Bad | None:
    """Why the rule set's event catalog refuses this event (``None``: it is accepted), placed at
    its ``type`` for an unknown type (with the closest known type), at its ``props`` for a props
    problem, else at the event. ``ts`` (epoch seconds) is the reference instant: the test's clock."""
    catalog = ruleset.catalog or DEFAULT_CATALOG
    try:
        catalog.decode(raw, reference_t=ts)
    except InvalidEvent as exc:
        reason = str(exc)
    else:
        return None
    kind = str(_plain(e["type"]))
    if reason.startswith("unknown event type"):
        known = catalog.types
        close = get_close_matches(kind, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; expected one of: {', '.join(known)}"
        return _Bad(e["type"], f"event refused: unknown event type {kind!r}{hint}")
    where = e["props"] if "props" in e and reason.startswith("props") else node
    return _Bad(where, f"{kind} event refused: {reason}")


def _plain(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return plain_scalar(node.value) if node.style is None else node.value
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item) for item in node.value]
    return {str(_plain(k)): _plain(v) for k, v in node.value}


def _fields(node: yaml.Node, what: str, allowed: set[str], required: set[str]) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise _Bad(node, f"{what} is a mapping ({', '.join(sorted(required | allowed))})")
    found: dict[str, yaml.Node] = {}
    for key, value in node.value:
        name = str(_plain(key))
        if name not in allowed | required:
            raise _Bad(key, f"unknown field {name!r} in {what}; expected one of {', '.join(sorted(allowed | required))}")
        found[name] = value
    missing = sorted(required - set(found))
    if missing:
        raise _Bad(node, f"{what} needs {', '.join(missing)}")
    return found


def _list(node: yaml.Node, what: str) -> list[yaml.Node]:
    if not isinstance(node, yaml.SequenceNode):
        raise _Bad(node, f"{what} is a list")
    return list(node.value)


def _instant(node: yaml.Node) -> tuple[str, float]:
    from datetime import datetime

    text = str(_plain(node))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _Bad(node, f"{text!r} is not an RFC 3339 instant with its offset, such as 2026-01-10T12:00:00Z")
    return text, moment.timestamp()


def _segment_names(node: yaml.Node, ruleset: RuleSet, what: str) -> list[str]:
    names = []
    for item in _list(node, what):
        name = str(_plain(item))
        if name not in ruleset.segment_ids:
            raise _Bad(item, f"no segment {name!r} in these rules")
        names.append(name)
    return names


@dataclass
class _Event:
    ts: float
    raw: bytes


@dataclass
class _Expect:
    at_text: str
    at: float
    customer: str
    inside: list[str]
    outside: list[str]
    only: list[str] | None
    where: tuple[int, int]


def _case(node: yaml.Node, ruleset: RuleSet, file_name: str, number: int) -> tuple[str, list[_Event], list[_Expect]]:
    f = _fields(node, "a case", {"name"}, {"events", "expect"})
    name = str(_plain(f["name"])) if "name" in f else f"case {number}"
    events: list[_Event] = []
    refused: list[_Bad] = []
    for index, item in enumerate(_list(f["events"], "events"), start=1):
        e = _fields(item, "an event", {"event_id", "channel", "props", "anonymous_id"}, {"customer", "type", "ts"})
        _, ts = _instant(e["ts"])
        props = _plain(e["props"]) if "props" in e else {}
        if not isinstance(props, dict):
            raise _Bad(e["props"], "props is a mapping")
        record: dict[str, Any] = {
            "event_id": str(_plain(e["event_id"])) if "event_id" in e else f"test:{file_name}:{number}:{index}",
            "customer_id": str(_plain(e["customer"])),
            "type": str(_plain(e["type"])),
            "ts": str(_plain(e["ts"])),
            "props": props,
        }
        for optional in ("channel", "anonymous_id"):
            if optional in e:
                record[optional] = str(_plain(e[optional]))
        raw = orjson.dumps(record)
        bad = _refusal(ruleset, raw, ts, e, item)
        if bad is not None:
            refused.append(bad)
        events.append(_Event(ts, raw))
    expects: list[_Expect] = []
    for item in _list(f["expect"], "expect"):
        x = _fields(item, "an expectation", {"in", "not_in", "only"}, {"at", "customer"})
        at_text, at = _instant(x["at"])
        expects.append(
            _Expect(
                at_text, at, str(_plain(x["customer"])),
                _segment_names(x["in"], ruleset, "in") if "in" in x else [],
                _segment_names(x["not_in"], ruleset, "not_in") if "not_in" in x else [],
                _segment_names(x["only"], ruleset, "only") if "only" in x else None,
                position(item.start_mark),
            )
        )
    if refused:
        raise _Refused(refused)
    return name, events, expects


def run_test_file(path: Path, ruleset: RuleSet, model: Any = None) -> FileResult:
    """Every case of one test file against ``ruleset``; never raises for what the file holds."""
    result = FileResult(path)
    text = path.read_text(encoding="utf-8")
    shown = str(path)
    try:
        root = compose(text, TextLines.of(text))
        cases = _list(_fields(root, "a rule test file", set(), {"cases"})["cases"], "cases")
    except YamlProblem as exc:
        result.problems.append(Problem(shown, *exc.where, exc.message))
        return result
    except _Bad as exc:
        result.problems.append(Problem(shown, *exc.where, exc.message))
        return result
    for number, node in enumerate(cases, start=1):
        line, col = position(node.start_mark)
        try:
            name, events, expects = _case(node, ruleset, path.name, number)
        except _Bad as exc:
            result.problems.append(Problem(shown, *exc.where, exc.message))
            continue
        except _Refused as exc:
            result.problems += [Problem(shown, *bad.where, bad.message) for bad in exc.bad]
            continue
        case = CaseResult(name, f"{shown}:{line}:{col}")
        _run_case(case, events, expects, ruleset, model, shown)
        result.cases.append(case)
    return result


def _run_case(case: CaseResult, events: list[_Event], expects: list[_Expect], ruleset: RuleSet, model: Any, shown: str) -> None:
    journey = Journey(ruleset, model)
    pending = list(events)
    for expect in sorted(expects, key=lambda x: x.at):
        while pending and pending[0].ts <= expect.at:
            journey.send_raw(pending.pop(0).raw)
        journey.until(expect.at_text)
        case.checks += 1
        have = set(journey.segments(expect.customer))
        wrong: list[str] = []
        missing = [s for s in expect.inside if s not in have]
        extra = [s for s in expect.outside if s in have]
        if missing:
            wrong.append(f"not in {', '.join(missing)}")
        if extra:
            wrong.append(f"in {', '.join(extra)} (not_in)")
        if expect.only is not None and set(expect.only) != have:
            wrong.append(f"not in exactly [{', '.join(sorted(expect.only))}]")
        if wrong:
            why = " and ".join(wrong)
            dead = [d.get("reason", "") for d in journey.dead_letters]
            note = f" (events refused: {'; '.join(dead[:3])})" if dead else ""
            message = f"{case.name}: at {expect.at_text} customer {expect.customer!r} is {why}; its segments: [{', '.join(sorted(have))}]{note}"
            case.failures.append(Problem(shown, *expect.where, message))


def run_rule_tests(directory: Path, ruleset: RuleSet, model: Any = None) -> list[FileResult]:
    """Every ``*.test.yaml`` of ``directory`` against ``ruleset`` (the directory's own rules)."""
    return [run_test_file(path, ruleset, model) for path in test_files(directory)]
