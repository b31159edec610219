"""The ``microseg`` command line: thin wrappers that parse options and call the engine or the core."""

from __future__ import annotations

import math

import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from microseg.engine.startup import packaged_rules_dir
from microseg.engine.tools.fit import fit_command
from microseg.engine.tools.audiences import export_app
from microseg.engine.tools.explain import explain_command
from microseg.engine.tools.importer import import_command
from microseg.engine.tools.version import print_version
from microseg.engine.tools.rules_cli import rules_diff, rules_history, rules_preview, rules_rollback, rules_test
from microseg.engine.tools.simulator import simulate_command
from microseg.engine.tools.summaries import counted
from microseg.engine.tools.uplift_command import uplift_command

app = typer.Typer(no_args_is_help=True, add_completion=False, help="microseg: behavioral-DNA micro-segmentation")
rules_app = typer.Typer(no_args_is_help=True, help="Check, test, preview, diff, publish and roll back rule files.")
app.add_typer(rules_app, name="rules")
report_app = typer.Typer(no_args_is_help=True, help="Reports over the engine's outputs.")
app.add_typer(report_app, name="report")


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None) -> None:
    """microseg's own warnings (a degenerate model, ...) as one ``warning: ...`` line on stderr,
    like the CLI's other warnings; any other warning as Python shows it."""
    if category.__module__.startswith("microseg"):
        typer.echo(f"warning: {message}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=print_version, help="Print the version and exit.")] = False,
) -> None:
    """microseg command line."""
    warnings.showwarning = _show_warning


app.command("simulate")(simulate_command)
app.command("fit")(fit_command)
app.command("import")(import_command)
app.command("explain")(explain_command)
app.add_typer(export_app, name="export")
rules_app.command("preview")(rules_preview)
rules_app.command("diff")(rules_diff)
rules_app.command("history")(rules_history)
rules_app.command("rollback")(rules_rollback)
rules_app.command("test")(rules_test)
report_app.command("uplift")(uplift_command)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load_ruleset(directory: Path | None) -> Any:
    from microseg.segments.language.errors import RuleError
    from microseg.segments.rulefiles import load_rules

    try:
        return load_rules(directory or packaged_rules_dir())
    except RuleError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from None


def _load_model(model: Path | None, no_model: bool, how_to_fit: str | None = None) -> Any:
    """The model to score with (None with --no-model); a demo model is said so on stderr."""
    from microseg.engine.model_in_use import FIT_FOR_FILES, load_model_in_use
    from microseg.errors import MicrosegError

    try:
        in_use = load_model_in_use(model, none=no_model)
    except MicrosegError as exc:
        _fail(str(exc))
    if (warning := in_use.demo_warning(how_to_fit or FIT_FOR_FILES)) is not None:
        typer.echo(f"warning: {warning}", err=True)
    return in_use.model


def _parse_instant(text: str, option: str) -> float:
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"{option} {text!r} is not an RFC 3339 time such as 2026-03-01T00:00:00Z")
    if moment.tzinfo is None:
        _fail(f"{option} {text!r} needs a UTC offset, e.g. 2026-03-01T00:00:00Z")
    return moment.timestamp()


def _progress(path: Path) -> tuple[Any, Any]:
    """A byte-based progress bar on a terminal; nothing when piped."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TransferSpeedColumn(), TimeRemainingColumn(), transient=True)
    task = bar.add_task(path.name, total=path.stat().st_size)
    return bar, lambda n: bar.advance(task, n)


def _load_posteriors(source: str | None) -> Any:
    """``replay --posteriors``: the snapshot history (empty without the option)."""
    from microseg.engine.tools.posterior_history import load_history
    from microseg.errors import MicrosegError
    from microseg.segments.bandit import PosteriorHistory

    if source is None:
        return PosteriorHistory()
    try:
        return load_history(source, _settings() if source == "topic" else None)
    except MicrosegError as exc:
        _fail(str(exc))


@app.command("replay")
def replay_command(
    events: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Input events, one JSON object per line.")],
    rules: Annotated[Optional[Path], typer.Option("--rules", file_okay=False, help="Rules directory (default: the starter rules).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write segment changes and decisions here as JSONL.")] = None,
    dlq: Annotated[Optional[Path], typer.Option("--dlq", help="Write rejected lines with their reasons here.")] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="Let time run on to this RFC 3339 instant after the input.")] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="Predictive model file (default: the packaged one).")] = None,
    no_model: Annotated[bool, typer.Option("--no-model", help="Leave the predictive fields null.")] = False,
    json_summary: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    now: Annotated[Optional[str], typer.Option("--now", help="Processing clock for the future-time check and for decisions: no send before it, older than a message's valid_for is 'stale' (default: the wall clock).")] = None,
    as_live: Annotated[bool, typer.Option("--as-live", help="Decide as if live: each decision at its own time and no future-time check (past campaigns, report uplift); 'stale' then counts only what would be stale live too, decisions held back (consent, cooldown, a deferred cap) whose valid_for ran out before they could go.")] = False,
    posteriors: Annotated[
        Optional[str],
        typer.Option("--posteriors", help="Posterior snapshots of message variants: a file of snapshot records, or 'topic' (the workers' posteriors topic); default none (every variant from the prior)."),
    ] = None,
) -> None:
    """Run the segmentation core over a file, offline and deterministically."""
    import orjson

    from microseg.engine.tools.replay import read_lines, replay
    from microseg.engine.tools.sinks import JsonlSink
    from microseg.engine.worker.posteriors import attach
    from microseg.segments.step import Core
    from microseg.segments.state import encode

    from microseg.engine.startup import tune_gc

    until_t = _parse_instant(until, "--until") if until else None  # the arguments first, before any model warning
    now_t = math.inf if as_live else _parse_instant(now, "--now") if now else None
    ruleset = _load_ruleset(rules)
    core = Core(ruleset, _load_model(model, no_model))
    history = _load_posteriors(posteriors)
    attach(core, history)  # decisions read the snapshot in force at their time, as in the worker
    tune_gc()
    out_handle = open(out, "wb") if out else None  # noqa: SIM115
    dlq_handle = open(dlq, "wb") if dlq else None  # noqa: SIM115
    bar, advance = _progress(events)
    started = time.perf_counter()
    try:
        if bar is not None:
            bar.start()
        stats, states = replay(
            read_lines(str(events)),
            core,
            JsonlSink(out_handle, dlq_handle),
            until=until_t,
            source=str(events),
            on_line=advance,
            now=now_t,
        )
    finally:
        if bar is not None:
            bar.stop()
        for handle in (out_handle, dlq_handle):
            if handle is not None:
                handle.close()
    seconds = time.perf_counter() - started
    sizes = sorted(len(encode(s)) for s in states.values())
    summary = {
        **stats.as_dict(),
        "customers": len(states),
        "seconds": round(seconds, 3),
        "events_per_s": round(stats.lines / seconds) if seconds > 0 else None,
        "state_bytes_mean": round(sum(sizes) / len(sizes)) if sizes else 0,
        "state_bytes_p50": sizes[len(sizes) // 2] if sizes else 0,
        "state_bytes_max": sizes[-1] if sizes else 0,
        "rules_version": ruleset.version,
        "model": core.model.version if core.model is not None else "none",
        "posteriors": len(history),
    }
    if json_summary:
        typer.echo(orjson.dumps(summary).decode())
        return
    from microseg.engine.tools.summaries import replay_summary_lines

    for line in replay_summary_lines(summary):
        typer.echo(line, err=True)


@rules_app.command("check")
def rules_check(directory: Annotated[Path, typer.Argument(help="Directory of *.yaml rule files.")]) -> None:
    """Validate rule files: exit 1 with one file:line:col: message line per problem."""
    from microseg.segments.language.errors import render_problem
    from microseg.segments.rulefiles import check_rules

    problems = check_rules(directory)
    on_terminal = sys.stdout.isatty()
    for problem in problems:
        typer.echo(render_problem(problem) if on_terminal else str(problem))
    if problems:
        typer.echo(f"{len(problems)} problem(s)", err=True)
        raise typer.Exit(1)
    ruleset = _load_ruleset(directory)
    typer.echo(
        f"ok: {counted(len(ruleset.segments), 'segment')}, {counted(len(ruleset.dimensions), 'dimension')}, "
        f"{counted(len(ruleset.messages), 'message')}; version {ruleset.version}"
    )


@app.command("schema")
def schema_command(
    out: Annotated[Optional[Path], typer.Option("--out", file_okay=False, help="Write the JSON Schema files here.")] = None,
    rules: Annotated[
        Optional[Path], typer.Option("--rules", file_okay=False, help="A rules directory: its custom event types and traits are included (needs --out).")
    ] = None,
) -> None:
    """Export JSON Schema for every input and output record, and for a customer's DNA."""
    from microseg.schemas.export import SCHEMA_DIR, write_schemas
    from microseg.segments.builtin_fields import BUILTINS

    registry, catalog = BUILTINS, None
    if rules is not None:
        if out is None:
            _fail("--rules needs --out DIR (the packaged schemas describe the built-in events and DNA fields only)")
        ruleset = _load_ruleset(rules)
        registry, catalog = ruleset.registry or BUILTINS, ruleset.catalog
    for path in write_schemas(out or SCHEMA_DIR, dna=registry.json_schema(), catalog=catalog):
        typer.echo(str(path))


def _bootstrap(settings: Any) -> str:
    """The workers' broker for commands that send to it (``engine.tools.produce.configured_bootstrap``)."""
    from microseg.engine.tools.produce import configured_bootstrap
    from microseg.errors import ConfigError

    try:
        return configured_bootstrap(settings)
    except ConfigError as exc:
        _fail(str(exc))
        raise


def _settings(**overrides: Any) -> Any:
    from microseg.engine.settings import load_settings
    from microseg.errors import ConfigError

    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        _fail(str(exc))


BrokerOpt = Annotated[Optional[str], typer.Option("--broker", help="kafka://host:port[,host:port] (default: MICROSEG_BROKER, else an embedded broker).")]
TargetBrokerOpt = Annotated[
    Optional[str],
    typer.Option(
        "--broker",
        help="The workers' broker, kafka://host:port[,host:port] (default: MICROSEG_BROKER, else the embedded broker of a 'microseg worker' running with the same MICROSEG_DATA_DIR).",
    ),
]
DataDirOpt = Annotated[Optional[Path], typer.Option("--data-dir", help="Where DNA state lives (MICROSEG_DATA_DIR).")]
PartitionsOpt = Annotated[Optional[int], typer.Option("--partitions", help="Input partitions (MICROSEG_PARTITIONS).")]


@app.command("worker")
def worker_command(
    broker: BrokerOpt = None,
    data_dir: DataDirOpt = None,
    rules: Annotated[Optional[Path], typer.Option("--rules", file_okay=False, help="Rules directory (MICROSEG_RULES_DIR).")] = None,
    partitions: PartitionsOpt = None,
    web_port: Annotated[Optional[int], typer.Option("--web-port", help="HTTP port for /metrics, /health, /customers (MICROSEG_WEB_PORT).")] = None,
    web_host: Annotated[Optional[str], typer.Option("--web-host", help="HTTP bind address (MICROSEG_WEB_HOST).")] = None,
    ticks: Annotated[Optional[bool], typer.Option("--ticks/--no-ticks", help="Let the wall clock fire time-based changes.")] = None,
) -> None:
    """The streaming worker; with no broker configured it starts the embedded one."""
    from microseg.engine.worker.main import run_worker

    from microseg.errors import MicrosegError

    settings = _settings(broker=broker, data_dir=data_dir, rules_dir=rules, partitions=partitions, web_port=web_port, web_host=web_host, ticks=ticks)
    try:
        code = run_worker(settings)
    except MicrosegError as exc:
        _fail(str(exc))
    if code:
        raise typer.Exit(code)


@app.command("demo")
def demo_command(
    customers: Annotated[int, typer.Option("--customers", "-n", min=1, help="Simulated customers.")] = 300,
    rate: Annotated[float, typer.Option("--rate", min=0.1, help="Events per second once the history is sent.")] = 200.0,
    duration: Annotated[Optional[float], typer.Option("--duration", min=0, help="Stop after this many seconds (default: until Ctrl-C).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Simulator seed.")] = 7,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", file_okay=False, help="Keep the worker's state and log here (default: a temporary directory, removed at exit).")] = None,
    broker: BrokerOpt = None,
    plain: Annotated[bool, typer.Option("--plain", help="Plain lines even on a terminal (automatic when piped).")] = False,
) -> None:
    """Embedded broker + worker + simulated customers: live segment moves and messages; Ctrl-C stops it all (exit 0)."""
    from microseg.engine.tools.demo import DemoOptions, run_demo

    settings = _settings(broker=broker)
    raise typer.Exit(run_demo(settings, DemoOptions(customers=customers, rate=rate, duration=duration, seed=seed, data_dir=data_dir, plain=plain)))


@app.command("produce")
def produce_command(
    events: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Events, one JSON object per line.")],
    broker: TargetBrokerOpt = None,
    rate: Annotated[float, typer.Option("--rate", help="Events per second (0 = as fast as possible).")] = 0.0,
) -> None:
    """Send events to the input topic, keyed by customer_id."""
    from microseg.engine.tools.produce import produce_file

    settings = _settings(broker=broker)
    bootstrap = _bootstrap(settings)
    from microseg.errors import MicrosegError

    bar, advance = _progress(events)
    if bar is not None:
        bar.start()
    try:
        summary = produce_file(settings, bootstrap, events, rate=rate, on_line=advance)
    except MicrosegError as exc:
        if bar is not None:
            bar.stop()
            bar = None
        _fail(str(exc))
    finally:
        if bar is not None:
            bar.stop()
    typer.echo(
        f"sent {summary.sent} events in {summary.seconds:.2f}s ({summary.per_second:,.0f}/s); "
        f"{summary.skipped} lines without a customer_id sent unkeyed (the worker dead-letters them)",
        err=True,
    )


@rules_app.command("publish")
def rules_publish(
    directory: Annotated[Path, typer.Argument(file_okay=False, exists=True, help="Directory of *.yaml rule files.")],
    broker: TargetBrokerOpt = None,
) -> None:
    """Validate rule files and publish them as a new rules version to every running worker."""
    from microseg.engine.worker.rules_topic import publish_rules

    ruleset = _load_ruleset(directory)
    settings = _settings(broker=broker)
    bootstrap = _bootstrap(settings)
    from microseg.errors import MicrosegError

    try:
        version = publish_rules(settings, bootstrap, directory)
    except MicrosegError as exc:
        _fail(str(exc))
    assert version == ruleset.version
    typer.echo(f"published rules {version}: {counted(len(ruleset.segments), 'segment')}, {counted(len(ruleset.messages), 'message')}")


model_app = typer.Typer(no_args_is_help=True, help="Show and publish predictive models.")
app.add_typer(model_app, name="model")


@model_app.command("publish")
def model_publish(
    path: Annotated[Path, typer.Argument(dir_okay=False, exists=True, help="Model file written by 'microseg fit'.")],
    broker: TargetBrokerOpt = None,
) -> None:
    """Validate a model file and publish it to every running worker (re-evaluation with cause model:<version>)."""
    from microseg.engine.model_in_use import FIT_FOR_WORKER, ModelInUse
    from microseg.engine.worker.models_topic import publish_model
    from microseg.errors import MicrosegError

    settings = _settings(broker=broker)
    bootstrap = _bootstrap(settings)
    try:
        model = publish_model(settings, bootstrap, path)
    except MicrosegError as exc:
        _fail(str(exc))
    in_use = ModelInUse(model, f"file {path}")
    if (warning := in_use.demo_warning(FIT_FOR_WORKER)) is not None:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"published {in_use.line()} to {settings.models_topic}")


@model_app.command("show")
def model_show(
    path: Annotated[Optional[Path], typer.Argument(dir_okay=False, help="A model file (default: the packaged model).")] = None,
    url: Annotated[Optional[str], typer.Option("--url", help="Ask a running worker instead, e.g. http://127.0.0.1:6066.")] = None,
) -> None:
    """Which model a file holds, or a running worker scores with: version, origin, what and when it was fitted."""
    import json
    import urllib.error
    import urllib.request

    from microseg.engine.model_in_use import load_model_in_use
    from microseg.errors import MicrosegError

    if url is not None:
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=10) as response:
                described = json.loads(response.read()).get("model")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            _fail(f"no worker answers at {url} ({exc})")
        typer.echo(json.dumps(described, indent=2))
        return
    try:
        in_use = load_model_in_use(path)
    except MicrosegError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(in_use.describe(), indent=2))


@app.command("bench")
def bench_command(
    events: Annotated[Optional[int], typer.Option("--events", min=1, help="Input events pre-loaded for the throughput run (default 200000; with --data: the whole file).")] = None,
    customers: Annotated[Optional[int], typer.Option("--customers", min=1, help="Simulated customers (default 20000; not with --data).")] = None,
    rules: Annotated[Optional[Path], typer.Option("--rules", file_okay=False, help="Rules directory (default: the starter rules).")] = None,
    partitions: Annotated[int, typer.Option("--partitions", min=1, help="Partitions of the bench topics.")] = 4,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    peer: Annotated[bool, typer.Option("--peer", help="Also run the same core hosted in quix-streams (extra [bench]).")] = False,
    scale: Annotated[bool, typer.Option("--scale", help="Run the growth series (customers 10k-1M, segments to 250) into --out.")] = False,
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="Where --scale writes scale.md, scale.json, scale.png.")] = Path("bench-out"),
    latency_rate: Annotated[float, typer.Option("--latency-rate", min=0, help="Offered load of the latency phase (events/s; 0 = skip).")] = 5_000.0,
    latency_seconds: Annotated[float, typer.Option("--latency-seconds", min=0, help="Length of the latency phase.")] = 10.0,
    profile: Annotated[Optional[Path], typer.Option("--profile", dir_okay=False, help="py-spy the worker during the throughput run (collapsed stacks).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Simulator seed (default 7; not with --data).")] = None,
    data: Annotated[
        Optional[Path],
        typer.Option("--data", exists=True, dir_okay=False, help="Run on this file instead of simulated events: JSONL events, or a CSV/CDNOW purchase history (imported as 'microseg import' does)."),
    ] = None,
    identities: Annotated[bool, typer.Option("--identities", help="Identity mix: 20% of the simulated events anonymous, 5% identifies (issue 17).")] = False,
) -> None:
    """Measure one worker end to end (and its ceilings) on the configured or an embedded broker."""
    import orjson

    from microseg.engine.tools.bench import BenchConfig, print_table, run_bench, run_scale
    from microseg.errors import MicrosegError

    if data is not None:
        simulated_only = [name for name, given in (("--customers", customers), ("--seed", seed), ("--scale", scale or None)) if given is not None]
        if simulated_only:
            _fail(f"{', '.join(simulated_only)}: only for the simulated input; with --data the file is the input (leave them out)")
    cfg = BenchConfig(events=events, customers=customers or 20_000, rules_dir=rules,
                      partitions=partitions, latency_rate=latency_rate, latency_seconds=latency_seconds, peer=peer,
                      seed=7 if seed is None else seed, profile=profile, progress=not json_out, data=data, identities=identities)
    settings = _settings()
    if scale:
        report = run_scale(cfg, out, settings)
        typer.echo(orjson.dumps(report).decode() if json_out else (out / "scale.md").read_text())
        return
    try:
        result = run_bench(cfg, settings)
    except MicrosegError as exc:
        _fail(str(exc))
    if json_out:
        typer.echo(orjson.dumps(result).decode())
    else:
        print_table(result)


def main() -> None:
    app()
