"""``microseg rules preview|diff|history|rollback|test``: safe rule changes, before and after publishing.

- ``preview DIR --events FILE``: sizes, cells and moves of a rule set on a file, every customer
  evaluated **as of one instant** (``--as-of``, default the newest event of the file): events after
  it are left out and time runs on to it for everyone, as a worker's clock would.
- ``diff DIR``: against the published version (the rules topic's ``current``): segments added,
  removed and changed, with sizes before and after on the workers' live state (``POST /rules/sizes``,
  ``engine.worker.rules_preview``) or on ``--events FILE`` (both rule sets through the same pipeline,
  as of the same instant).
- ``history`` / ``rollback VERSION``: the versions the rules topic keeps (``engine.worker.rules_topic``).
- ``test DIR``: the ``*.test.yaml`` rule tests beside the rules (``engine.tools.rule_tests``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import orjson
import typer

__all__ = ["rules_preview", "rules_diff", "rules_history", "rules_rollback", "rules_test", "sizes_as_of", "newest_instant"]

BrokerOpt = Annotated[Optional[str], typer.Option("--broker", help="kafka://host:port[,host:port] (default: MICROSEG_BROKER).")]
AsOfOpt = Annotated[Optional[str], typer.Option("--as-of", help="Evaluate everyone as of this instant (RFC 3339; default: the newest event).")]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load_ruleset(directory: Path | None) -> Any:
    from microseg.engine.tools.cli import _load_ruleset as load

    return load(directory)


def _instant(text: str, option: str) -> float:
    from microseg.engine.tools.cli import _parse_instant

    return _parse_instant(text, option)


def _event_time(line: bytes) -> float | None:
    """The ``ts`` of an event line (epoch seconds), or None when it has none readable (the
    pipeline then dead-letters the line with its reason)."""
    from datetime import datetime

    try:
        ts = orjson.loads(line).get("ts")
        moment = datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except (orjson.JSONDecodeError, AttributeError, ValueError, TypeError):
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def newest_instant(events: Path) -> float | None:
    """The newest event time of a JSONL file (epoch seconds)."""
    from microseg.engine.tools.replay import read_lines

    newest: float | None = None
    for line in read_lines(str(events)):
        t = _event_time(line)
        if t is not None and (newest is None or t > newest):
            newest = t
    return newest


def _lines_until(events: Path, as_of: float, skipped: list[int]) -> Iterator[bytes]:
    from microseg.engine.tools.replay import read_lines

    for line in read_lines(str(events)):
        t = _event_time(line)
        if t is not None and t > as_of:
            skipped[0] += 1
            continue
        yield line


def sizes_as_of(core: Any, events: Path, as_of: float | None, sink: Any) -> tuple[Any, dict[str, Any], float, int]:
    """Run ``core`` over ``events`` through the record pipeline (``replay``) and let time run on to
    ``as_of`` for everyone (default: the newest event); events after ``as_of`` are left out.
    Returns (stats, final states, the instant, events left out)."""
    from microseg.engine.tools.replay import replay

    instant = as_of if as_of is not None else newest_instant(events)
    if instant is None:
        _fail(f"{events}: no event with a readable ts; nothing to evaluate")
    skipped = [0]
    from microseg.engine.tools.replay import read_lines

    lines = read_lines(str(events)) if as_of is None else _lines_until(events, instant, skipped)  # nothing is after the newest
    stats, states = replay(lines, core, sink, until=instant, source=str(events), now=math.inf)
    return stats, states, instant, skipped[0]


# -- preview ------------------------------------------------------------------------------


class CountingSink:
    """Counts what a preview would emit without keeping every record."""

    def __init__(self) -> None:
        from microseg.engine.tools.flaps import FlapCounter

        self.moves: Counter[tuple[str, str]] = Counter()
        self.causes: Counter[str] = Counter()
        self.message_counts: Counter[str] = Counter()
        self.held: Counter[tuple[str, str]] = Counter()
        """(message, reason) of every decision held back, holdouts included."""
        self.rejected = 0
        self.flaps = FlapCounter()

    def changes(self, records: Any) -> None:
        self.flaps.add(records)
        for record in records:
            self.moves[(record["segment"], record["change"])] += 1
            self.causes["tick" if record["cause"] == "tick" else "event"] += 1

    def messages(self, records: Any) -> None:
        for record in records:
            self.message_counts[record["message"]] += 1

    def suppressed(self, records: Any) -> None:
        for record in records:
            self.held[(record["message"], record["reason"])] += 1

    def holdouts(self, records: Any) -> None:
        """Counted with the suppressions (reasons ``holdout``, ``global_holdout``)."""

    def dead_letter(self, record: Any) -> None:
        self.rejected += 1


def message_table(ruleset: Any, sink: CountingSink) -> Any:
    """Per message: decisions sent and held back by reason (``segments.decide.REASONS``), as if
    every decision were made live at its own time."""
    from rich.table import Table

    from microseg.segments.decide import REASONS

    table = Table(title="Messages (decisions as if made live at their own time)")
    for column in ("message", "decided", *REASONS):
        table.add_column(column, justify="left" if column == "message" else "right")
    for message in ruleset.messages:
        table.add_row(message.id, f"{sink.message_counts[message.id]:,}", *(f"{sink.held[(message.id, r)]:,}" for r in REASONS))
    return table


def _cell_histogram(sizes: Counter[str]) -> list[tuple[str, int]]:
    bands = [("1", 1, 1), ("2", 2, 2), ("3-5", 3, 5), ("6-20", 6, 20), ("21-100", 21, 100), ("101+", 101, 10**12)]
    return [(name, sum(1 for n in sizes.values() if lo <= n <= hi)) for name, lo, hi in bands]


def _trait_table(core: Any, states: dict[str, Any], instant: str) -> Any:
    """Each trait's distribution over the customers as of the preview's instant: numbers as
    min / median / p95 / max, other values as the most common ones (to pick thresholds)."""
    from rich.table import Table

    table = Table(title=f"Traits (value per customer as of {instant})")
    for column in ("trait", "customers with a value", "min", "median", "p95", "max / most common"):
        table.add_column(column, justify="left" if column == "trait" else "right")
    live = [state for state in states.values() if not state.erased]
    for trait in core.ruleset.traits:
        values = [core.view(state.dna, state.evaluated_at)[trait.id] for state in live]
        present = [v for v in values if v is not None and v != 0]
        numbers = sorted(v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool))
        if numbers and len(numbers) == sum(1 for v in values if v is not None):
            def at(q: float) -> str:
                return f"{numbers[min(len(numbers) - 1, int(q * len(numbers)))]:g}"

            table.add_row(trait.id, str(len(present)), f"{numbers[0]:g}", at(0.5), at(0.95), f"{numbers[-1]:g}")
        else:
            common = Counter(str(v) for v in values if v is not None).most_common(3)
            table.add_row(trait.id, str(len(present)), "", "", "", ", ".join(f"{v} ({n})" for v, n in common) or "-")
    return table


def rules_preview(
    directory: Annotated[Path, typer.Argument(help="Directory of *.yaml rule files.")],
    events: Annotated[Path, typer.Option("--events", exists=True, dir_okay=False, help="Events to run the rules over (JSONL).")],
    as_of: AsOfOpt = None,
    until: Annotated[Optional[str], typer.Option("--until", hidden=True, help="Former name of --as-of.")] = None,
    model: Annotated[Optional[Path], typer.Option("--model")] = None,
    no_model: Annotated[bool, typer.Option("--no-model")] = False,
) -> None:
    """Segment sizes, micro-segment cell sizes and the moves the rules would give, everyone as of one instant."""
    from rich.console import Console
    from rich.table import Table

    from microseg.engine.tools.cli import _load_model
    from microseg.engine.tools.flaps import flap_table
    from microseg.segments.step import Core
    from microseg.segments.view import iso

    ruleset = _load_ruleset(directory)
    core = Core(ruleset, _load_model(model, no_model))
    sink = CountingSink()
    wanted = as_of or until
    stats, states, instant, skipped = sizes_as_of(core, events, _instant(wanted, "--as-of") if wanted else None, sink)
    population: Counter[str] = Counter()
    cells: Counter[str] = Counter()
    live = 0
    for state in states.values():
        if state.erased:
            continue
        live += 1
        population.update(state.segments)
        if state.code is not None:
            cells[state.code] += 1
    console = Console(width=120)
    after = f"; {skipped} events after it left out" if skipped else ""
    table = Table(title=f"Segments as of {iso(instant)} ({'--as-of' if wanted else 'the newest event'}): {stats.events} events, {live} customers{after}; rules {ruleset.version}")
    for column in ("segment", "customers", "share", "entered", "exited"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for segment in ruleset.segments:
        size = population[segment.id]
        share = f"{100 * size / live:.1f}%" if live else "-"
        table.add_row(segment.id, f"{size:,}", share, f"{sink.moves[(segment.id, 'entered')]:,}", f"{sink.moves[(segment.id, 'exited')]:,}")
    console.print(table)
    if cells:
        hist = Table(title=f"Micro-segments: {len(cells)} cells")
        hist.add_column("customers per cell")
        hist.add_column("cells", justify="right")
        for band, count in _cell_histogram(cells):
            hist.add_row(band, str(count))
        console.print(hist)
        biggest = ", ".join(f"{code} ({n})" for code, n in cells.most_common(5))
        console.print(f"largest cells: {biggest}")
    messages = ", ".join(f"{m} {n:,}" for m, n in sorted(sink.message_counts.items())) or "none"
    console.print(
        f"moves: {sum(n for (s, c), n in sink.moves.items() if s != 'micro'):,} segment changes "
        f"({sink.causes['tick']:,} by time alone), {sink.moves[('micro', 'moved')]:,} micro moves; "
        f"messages: {messages}; rejected lines: {stats.rejected:,}"
    )
    if ruleset.messages:
        console.print(message_table(ruleset, sink))
    if ruleset.traits:
        console.print(_trait_table(core, states, iso(instant)))
    if (flapping := flap_table(sink.flaps)) is not None:
        console.print(flapping)
    empty = [s.id for s in ruleset.segments if population[s.id] == 0 and sink.moves[(s.id, 'entered')] == 0]
    if empty:
        console.print(f"[yellow]never entered on this data:[/] {', '.join(empty)}")


# -- diff ---------------------------------------------------------------------------------


def _settings(broker: str | None) -> Any:
    from microseg.engine.tools.cli import _settings as settings_of

    return settings_of(broker=broker)


def _published(settings: Any) -> tuple[Any, Any]:
    """(the rules topic's log, the published RuleSet or None)."""
    from microseg.engine.worker.rules_topic import read_rules_log
    from microseg.errors import MicrosegError
    from microseg.segments.language.errors import RuleError
    from microseg.segments.rulefiles import compile_rule_texts

    if settings.broker is None:
        _fail("no broker configured: set MICROSEG_BROKER or --broker to the workers' broker")
    try:
        from microseg.engine.kafka.broker import check_reachable

        bootstrap = ",".join(settings.bootstrap_servers)
        check_reachable(bootstrap, settings)
        history = read_rules_log(settings, bootstrap)
    except MicrosegError as exc:
        _fail(str(exc))
    current = history.current
    if current is None or current not in history.versions:
        return history, None
    try:
        return history, compile_rule_texts(history.versions[current].files, base=f"published@{current}")
    except RuleError as exc:
        _fail(f"the published version {current} does not compile with this release: {exc}")
    return history, None


def segment_changes(old: Any, new: Any) -> list[tuple[str, str, str, str]]:
    """(segment, status, old rule, new rule) for every segment of either rule set; status is
    ``added``, ``removed``, ``changed`` (its ``when`` or description differ) or ``same``."""
    before = {s.id: s for s in old.segments} if old is not None else {}
    after = {s.id: s for s in new.segments}
    rows = []
    for segment_id in [*after, *(s for s in before if s not in after)]:
        was, now = before.get(segment_id), after.get(segment_id)
        if was is None:
            status = "added"
        elif now is None:
            status = "removed"
        elif (was.when.source, was.description) != (now.when.source, now.description):
            status = "changed"
        else:
            status = "same"
        rows.append((segment_id, status, was.when.source if was else "", now.when.source if now else ""))
    return rows


def _live_sizes(url: str | None, files: dict[str, str], as_of: float | None) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    from microseg.engine.tools.audiences import worker_base
    from microseg.engine.tools.cli import _settings as settings_of

    settings = settings_of()
    base = worker_base(url)
    request = urllib.request.Request(f"{base}/rules/sizes", data=orjson.dumps({"files": files, "as_of": as_of}), method="POST")
    request.add_header("Content-Type", "application/json")
    token = settings.read_token or settings.api_token
    if token is not None:
        request.add_header("Authorization", f"Bearer {token.get_secret_value()}")
    try:
        with urllib.request.urlopen(request, timeout=900) as response:
            return dict(orjson.loads(response.read()))
    except urllib.error.HTTPError as exc:
        _fail(f"{base}/rules/sizes: {exc.code} {exc.read().decode(errors='replace')[:500]}", 1)
    except (urllib.error.URLError, OSError) as exc:
        _fail(f"no worker answers at {base} ({getattr(exc, 'reason', exc)}); pass --url, or --events FILE to size on a file")
    return {}


def rules_diff(
    directory: Annotated[Path, typer.Argument(file_okay=False, exists=True, help="The candidate rules directory.")],
    events: Annotated[Optional[Path], typer.Option("--events", exists=True, dir_okay=False, help="Size both on this JSONL file instead of the workers' live state.")] = None,
    as_of: AsOfOpt = None,
    url: Annotated[Optional[str], typer.Option("--url", help="Any worker's base URL for live sizes (default http://MICROSEG_WEB_HOST:MICROSEG_WEB_PORT).")] = None,
    broker: BrokerOpt = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="With --events: the model to score with.")] = None,
    no_model: Annotated[bool, typer.Option("--no-model")] = False,
) -> None:
    """What publishing DIR would change: segments added, removed, changed, and their sizes before and after."""
    from rich.console import Console
    from rich.table import Table

    from microseg.engine.worker.rules_topic import rule_files
    from microseg.segments.view import iso

    candidate = _load_ruleset(directory)
    history, published = _published(_settings(broker))
    rows = segment_changes(published, candidate)
    instant_given = _instant(as_of, "--as-of") if as_of else None
    if events is not None:
        from microseg.engine.tools.cli import _load_model
        from microseg.segments.step import Core

        scorer = _load_model(model, no_model)
        sizes: dict[str, Counter[str]] = {}
        for name, ruleset in (("before", published), ("after", candidate)):
            if ruleset is None:
                sizes[name] = Counter()
                continue
            _, states, instant, _ = sizes_as_of(Core(ruleset, scorer), events, instant_given, CountingSink())
            sizes[name] = Counter(s for state in states.values() if not state.erased for s in state.segments)
        where = f"{events} as of {iso(instant)}"
    else:
        live = _live_sizes(url, rule_files(directory), instant_given)
        if published is not None and live.get("rules_version") != published.version:
            typer.echo(f"note: the workers run rules {live.get('rules_version')}, the topic's current version is {published.version}; 'before' is what the workers run", err=True)
        sizes = {"before": Counter(live["before"]), "after": Counter(live["after"])}
        where = f"live state of {live['customers']:,} customers as of {iso(live['as_of'])}"
    console = Console(width=140)
    title = f"rules {published.version if published else '(none published)'} -> {candidate.version}, sizes on {where}"
    table = Table(title=title)
    for column in ("segment", "change", "before", "after", "delta"):
        table.add_column(column, justify="left" if column in ("segment", "change") else "right")
    for segment_id, status, _, _ in rows:
        was, now = sizes["before"].get(segment_id, 0), sizes["after"].get(segment_id, 0)
        table.add_row(segment_id, status, f"{was:,}" if status != "added" else "-", f"{now:,}" if status != "removed" else "-", f"{now - was:+,}")
    console.print(table)
    for segment_id, status, old_when, new_when in rows:
        if status == "changed":
            console.print(f"[bold]{segment_id}[/]\n  - {old_when}\n  + {new_when}")
    counts = Counter(status for _, status, _, _ in rows)
    console.print(f"{counts['added']} added, {counts['removed']} removed, {counts['changed']} changed, {counts['same']} unchanged")


# -- history and rollback -----------------------------------------------------------------


def rules_history(broker: BrokerOpt = None, limit: Annotated[int, typer.Option("--limit", min=1, help="Most recent pointer moves shown.")] = 20) -> None:
    """Every rules version the topic keeps, which one is in force, and the publications and rollbacks."""
    from rich.console import Console
    from rich.table import Table

    from microseg.segments.view import iso

    history, _ = _published(_settings(broker))
    console = Console(width=140)
    if not history.versions:
        console.print("no rules published yet ('microseg rules publish DIR')")
        return
    table = Table(title=f"rules versions (in force: {history.current})")
    for column in ("version", "first published", "files", "in force"):
        table.add_column(column)
    for published in history.versions.values():
        table.add_row(published.version, iso(published.at) if published.at else "-", ", ".join(sorted(published.files)), "*" if published.version == history.current else "")
    console.print(table)
    moves = Table(title="publications and rollbacks (newest last)")
    for column in ("at", "action", "version", "from"):
        moves.add_column(column)
    for pointer in history.pointers[-limit:]:
        moves.add_row(iso(pointer.at) if pointer.at else "-", pointer.action, pointer.version, pointer.previous or "-")
    console.print(moves)
    for offset, reason in history.malformed:
        console.print(f"[yellow]record at offset {offset} is unreadable:[/] {reason}")


def rules_rollback(
    version: Annotated[str, typer.Argument(help="A version from 'microseg rules history' (or a unique prefix of 4+ characters).")],
    broker: BrokerOpt = None,
) -> None:
    """Put a previously published version back in force on every worker (re-evaluation with cause rules:<version>)."""
    from microseg.engine.worker.rules_topic import rollback_rules
    from microseg.errors import MicrosegError
    from microseg.segments.language.errors import RuleError

    settings = _settings(broker)
    if settings.broker is None:
        _fail("no broker configured: set MICROSEG_BROKER or --broker to the workers' broker")
    try:
        found, previous = rollback_rules(settings, ",".join(settings.bootstrap_servers), version)
    except RuleError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from None
    except MicrosegError as exc:
        _fail(str(exc))
    if found == previous:
        typer.echo(f"rules {found} were already in force; the pointer was written again")
    else:
        typer.echo(f"rolled back to rules {found} (was {previous or 'none'})")


# -- rule tests ---------------------------------------------------------------------------


def rules_test(
    directory: Annotated[Path, typer.Argument(file_okay=False, exists=True, help="Rules directory with *.test.yaml files beside the rules.")],
    model: Annotated[Optional[Path], typer.Option("--model")] = None,
    no_model: Annotated[bool, typer.Option("--no-model", help="Score with no model (default: the packaged one, as the worker).")] = False,
) -> None:
    """Run the rule tests (*.test.yaml) beside the rules: events in, expected memberships at instants out."""
    from microseg.engine.tools.cli import _load_model
    from microseg.engine.tools.rule_tests import run_rule_tests, test_files

    ruleset = _load_ruleset(directory)
    if not test_files(directory):
        typer.echo(f"no rule tests (*.test.yaml) in {directory}; see docs/rule-language.md, 'Rule tests'")
        return
    results = run_rule_tests(directory, ruleset, _load_model(model, no_model))
    cases = failed = checks = 0
    for result in results:
        for problem in result.problems:
            typer.echo(f"{problem}", err=True)
        for case in result.cases:
            cases += 1
            checks += case.checks
            if case.passed:
                typer.echo(f"PASS {case.name} ({case.where})")
            else:
                failed += 1
                typer.echo(f"FAIL {case.name} ({case.where})")
                for failure in case.failures:
                    typer.echo(f"  {failure}")
    problems = sum(len(r.problems) for r in results)
    summary = f"{cases - failed} of {cases} cases passed ({checks} checks) in {len(results)} files; rules {ruleset.version}"
    if problems:
        summary += f"; {problems} problems in the test files"
    typer.echo(summary, err=failed > 0 or problems > 0)
    if failed or problems:
        raise typer.Exit(1)
