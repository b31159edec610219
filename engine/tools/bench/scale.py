"""``microseg bench --scale``: the growth series, throughput as customers and segments grow.

Segments grow by cloning the starter rules' segments with scaled thresholds (``clone_rules``).
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from microseg.engine.settings import Settings, load_settings
from microseg.engine.tools.bench.config import DEFAULT_EVENTS, BenchConfig
from microseg.engine.tools.bench.machine import machine_info
from microseg.engine.tools.bench.progress import PhaseProgress
from microseg.engine.tools.bench.replay_phase import replay_figures
from microseg.engine.tools.bench.scale_report import plot_scale, scale_markdown, scale_summary
from microseg.engine.tools.bench.topics import bench_broker, delete_topics
from microseg.engine.tools.bench.worker_phase import worker_phase
from microseg.engine.tools.bench.workload import make_lines, make_population_lines

__all__ = ["clone_rules", "run_scale"]


_NUMBER = re.compile(r"(?<![\w.'])(\d+(?:\.\d+)?)(?![\w.'])")


def clone_rules(source: Path, target: Path, segments: int) -> int:
    """Copy the rule files of ``source`` to ``target`` and add clones of its segments, with scaled
    numeric thresholds, until there are ``segments`` segments; returns the count."""
    import yaml

    from microseg.segments.rulefiles import load_rules

    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.yaml")):
        shutil.copy(path, target / path.name)
    base = load_rules(source)
    originals = [(s.id, s.when.source) for s in base.segments]
    clones: list[dict[str, str]] = []
    round_ = 1
    while len(originals) + len(clones) < segments:
        factor = 1 + 0.15 * round_
        for seg_id, when in originals:
            if len(originals) + len(clones) >= segments:
                break

            def scale(match: re.Match[str]) -> str:
                text = match.group(1)
                if "." in text:
                    return f"{float(text) * factor:.3g}"
                return str(max(int(text), round(int(text) * factor)))

            clones.append({"id": f"{seg_id}_x{round_}", "description": f"clone of {seg_id}, thresholds x{factor:.2f}", "when": _NUMBER.sub(scale, when)})
        round_ += 1
    if clones:
        (target / "zz_scale_clones.yaml").write_text(yaml.safe_dump({"version": 1, "segments": clones}, sort_keys=False))
    return len(load_rules(target).segments)


def run_scale(cfg: BenchConfig, out: Path, base: Settings | None = None, *, customers: tuple[int, ...] = (10_000, 100_000, 1_000_000),
              segments: tuple[int, ...] = (0, 250), events_per_customer: int = 2) -> dict[str, Any]:
    """The growth series; writes ``scale.md``, ``scale.json`` and ``scale.png`` to ``out``.

    Customers: ``events_per_customer`` events for each customer (``make_population_lines``: every
    customer present, the same event mix at every size). Segments: the starter rules (0 = as
    shipped) and clones up to 250, at ``cfg.customers`` and ``cfg.events``.
    """
    from microseg.engine.startup import packaged_rules_dir

    base = base or load_settings()
    out.mkdir(parents=True, exist_ok=True)
    source = cfg.rules_dir or packaged_rules_dir()
    rows: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="microseg-scale-"))
    progress = PhaseProgress(cfg.progress)
    try:
        points: list[tuple[str, int, int, Path | None]] = []
        for count in customers:
            points.append(("customers", count, events_per_customer * count, cfg.rules_dir))
        for count in segments:
            rules_dir = cfg.rules_dir
            if count:
                rules_dir = workdir / f"rules-{count}"
                clone_rules(source, rules_dir, count)
            points.append(("segments", cfg.customers, cfg.events or DEFAULT_EVENTS, rules_dir))
        with bench_broker(base) as (bootstrap, embedded):
            for series, count, events, rules_dir in points:
                from microseg.segments.rulefiles import load_rules

                n_segments = len(load_rules(rules_dir or source).segments)
                progress.note(f"{series}: {count:,} customers, {n_segments} segments, {events:,} events")
                if events / count >= 10:
                    lines, keys = make_lines(events, count, cfg.seed)
                    generator = "simulate"
                else:
                    lines, keys = make_population_lines(events, count, cfg.seed)
                    generator = "population"
                events = len(lines)
                point_cfg = replace(cfg, events=events, customers=count, rules_dir=rules_dir, raw=False, profile=None)
                settings_base = base.model_copy(update={"rules_dir": rules_dir}) if rules_dir else base
                point_dir = workdir / f"{series}-{count}-{n_segments}"
                point_dir.mkdir()
                figures, settings = worker_phase(point_cfg, settings_base, bootstrap, embedded, lines, keys, 0, point_dir, progress)
                replayed = replay_figures(lines, settings_base)
                delete_topics(settings, bootstrap)
                row = {
                    "series": series, "generator": generator, "customers": count, "customers_seen": replayed["customers_seen"], "segments": n_segments,
                    "events": events, "events_per_s": figures["events_per_s"], "replay_events_per_s": replayed["replay_events_per_s"],
                    "produce_per_s": figures["produce_per_s"], "state_bytes_per_customer": replayed["state_bytes_per_customer"],
                    "worker_peak_rss_mb": figures["worker_peak_rss_mb"],
                }
                rows.append(row)
                (out / "scale.json").write_text(json.dumps({"rows": rows}, indent=2))
                del lines, keys
    finally:
        progress.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    summary = scale_summary(rows)
    report = {"rows": rows, "targets": summary, "machine": machine_info(), "partitions": cfg.partitions}
    (out / "scale.json").write_text(json.dumps(report, indent=2))
    (out / "scale.md").write_text(scale_markdown(report))
    with contextlib.suppress(ImportError):
        plot_scale(rows, out / "scale.png")
    return report
