"""``microseg rules preview|diff|history|rollback|test``: safe rule changes, before and after publishing.

- ``preview DIR --events FILE`` (``engine.tools.preview``): sizes, cells and moves of a rule set on
  a file, every customer evaluated as of one instant (``--as-of``, default the newest event).
- ``diff DIR``: against the published version (the rules topic's ``current``): segments added,
  removed and changed, with sizes before and after on the workers' live state (``POST /rules/sizes``,
  ``engine.worker.rules_preview``) or on ``--events FILE`` (both rule sets through the same pipeline,
  as of the same instant).
- ``history`` / ``rollback VERSION``: the versions the rules topic keeps (``engine.worker.rules_topic``).
- ``test DIR``: the ``*.test.yaml`` rule tests beside the rules (``engine.tools.rule_tests``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Optional

import orjson
import typer

from microseg.engine.tools.preview import AsOfOpt, CountingSink, _fail, _instant, _load_ruleset, rules_preview, sizes_as_of

__all__ = ["rules_preview", "rules_diff", "rules_history", "rules_rollback", "rules_test", "segment_changes"]

BrokerOpt = Annotated[Optional[str], typer.Option("--broker", help="kafka://host:port[,host:port] (default: MICROSEG_BROKER, else the embedded broker of a 'microseg worker' running with the same MICROSEG_DATA_DIR).")]


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

    try:
        from microseg.engine.kafka.broker import check_reachable
        from microseg.engine.tools.produce import configured_bootstrap

        bootstrap = configured_bootstrap(settings)  # as rules publish and produce: else the local worker's embedded broker
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
    against: Annotated[Optional[Path], typer.Option("--against", file_okay=False, exists=True, help="Compare with this rules directory instead of the published version (with --events: no broker needed).")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="With --events: the model to score with.")] = None,
    no_model: Annotated[bool, typer.Option("--no-model")] = False,
) -> None:
    """What publishing DIR would change: segments added, removed, changed, and their sizes before and after."""
    from rich.console import Console
    from rich.table import Table

    from microseg.engine.worker.rules_topic import rule_files
    from microseg.segments.view import iso

    candidate = _load_ruleset(directory)
    if against is not None:
        if events is None:
            _fail("--against compares two directories on --events FILE (live sizes are for the published version)")
        published = _load_ruleset(against)
    else:
        _, published = _published(_settings(broker))
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
        from microseg.engine.tools.summaries import counted

        where = f"live state of {counted(live['customers'], 'customer')} as of {iso(live['as_of'])}"
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

    from microseg.engine.tools.produce import configured_bootstrap

    settings = _settings(broker)
    try:
        found, previous = rollback_rules(settings, configured_bootstrap(settings), version)
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
    from microseg.engine.tools.summaries import counted

    summary = f"{cases - failed} of {counted(cases, 'case')} passed ({counted(checks, 'check')}) in {counted(len(results), 'file')}; rules {ruleset.version}"
    if problems:
        summary += f"; {counted(problems, 'problem')} in the test files"
    typer.echo(summary, err=failed > 0 or problems > 0)
    if failed or problems:
        raise typer.Exit(1)
