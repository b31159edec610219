"""``microseg bench``: one run, phase after phase, into the JSON object it prints."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from microseg.engine.settings import Settings, load_settings
from microseg.engine.tools.bench.config import DEFAULT_EVENTS, BenchConfig, check_targets
from microseg.engine.tools.bench.dataset import describe, event_times, load_data
from microseg.engine.tools.bench.machine import machine_info
from microseg.engine.tools.bench.peer_phase import run_peer
from microseg.engine.tools.bench.progress import PhaseProgress
from microseg.engine.tools.bench.replay_phase import replay_figures
from microseg.engine.tools.bench.topics import bench_broker, delete_topics
from microseg.engine.tools.bench.worker_phase import worker_phase
from microseg.engine.tools.bench.workload import identity_mix, make_lines

__all__ = ["run_bench", "bench_input"]


def bench_input(cfg: BenchConfig, progress: PhaseProgress) -> tuple[BenchConfig, list[bytes], list[bytes], int, dict[str, Any]]:
    """The run's input: ``(cfg with events resolved, lines, keys, latency lines, data)``.

    Simulated (``cfg.data`` None): ``events`` + ``latency_rate × latency_seconds`` lines. From a
    file: its first ``events`` lines (all when None or larger), and at most ``rate × seconds`` of
    the lines after those for the latency phase (none left: no latency phase, ``latency_note``).
    ``data`` describes the ``events`` lines the throughput and replay phases run on.
    """
    wanted = int(cfg.latency_rate * cfg.latency_seconds) if cfg.latency_rate > 0 and cfg.latency_seconds > 0 else 0
    if cfg.data is None:
        events = cfg.events if cfg.events is not None else DEFAULT_EVENTS
        progress.phase("simulating events", None)
        lines, keys = make_lines(events + wanted, cfg.customers, cfg.seed)
        mix: dict[str, int] = {}
        if cfg.identities:  # the same mix in the pre-loaded lines and in the latency phase's (new visitors there)
            head_lines, head_keys, mix = identity_mix(lines[:events], keys[:events])
            tail_lines, tail_keys, tail_mix = identity_mix(lines[events:], keys[events:], visitor="w")
            lines, keys = head_lines + tail_lines, head_keys + tail_keys
            events = len(head_lines)
            wanted = len(tail_lines)
            mix = {"anonymous": mix["anonymous"], "identifies": mix["identifies"], "latency_anonymous": tail_mix["anonymous"], "latency_identifies": tail_mix["identifies"]}
        head = lines[:events]
        times = (event_times(head[:1])[0], event_times(head[-1:])[1])  # the simulator writes in event-time order
        about = describe(head, keys[:events], times, source="simulator", seed=cfg.seed, simulated_customers=cfg.customers)
        if cfg.identities:
            about["identity_mix"] = mix | {"lines": len(lines)}
        return dataclasses.replace(cfg, events=events), lines, keys, wanted, about
    progress.phase("reading the data file", None)
    lines, keys, about = load_data(cfg.data)
    events = len(lines) if cfg.events is None else min(cfg.events, len(lines))
    latency_lines = min(wanted, len(lines) - events)
    about = describe(lines[:events], keys[:events], event_times(lines[:events]), **about, file_lines=len(lines))
    if wanted and not latency_lines:
        about["latency_note"] = "no lines left after --events for the latency phase (pass --events N below the file's lines)"
    return dataclasses.replace(cfg, events=events), lines, keys, latency_lines, about


def run_bench(cfg: BenchConfig, base: Settings | None = None) -> dict[str, Any]:
    """One full run; returns the JSON object ``microseg bench --json`` prints."""
    base = base or load_settings()
    if cfg.rules_dir is not None:
        base = base.model_copy(update={"rules_dir": cfg.rules_dir})
    progress = PhaseProgress(cfg.progress)
    workdir = Path(tempfile.mkdtemp(prefix="microseg-bench-"))
    started = time.perf_counter()
    try:
        cfg, lines, keys, latency_lines, data = bench_input(cfg, progress)
        assert cfg.events is not None
        result: dict[str, Any] = {
            "events": cfg.events,
            "customers": cfg.customers if cfg.data is None else data["customers"],
            "data": data,
            "partitions": cfg.partitions,
            "rules": str(cfg.rules_dir) if cfg.rules_dir else "starter",
            "latency_rate": cfg.latency_rate,
            "latency_seconds": cfg.latency_seconds,
            "memberships_topic": base.memberships,
        }
        with bench_broker(base) as (bootstrap, embedded):
            result["broker"] = "embedded" if embedded else bootstrap
            figures, settings = worker_phase(cfg, base, bootstrap, embedded, lines, keys, latency_lines, workdir, progress)
            result |= figures
            if cfg.replay:
                progress.phase("replay (no Kafka)", None)
                result |= replay_figures(lines[: cfg.events], base)
            if cfg.peer:
                progress.phase("quix-streams peer", None)
                result |= run_peer(settings, bootstrap, cfg.events, cfg.rules_dir, workdir, cfg.worker_timeout_s)
            else:
                result.setdefault("peer_events_per_s", None)
            if not embedded:
                delete_topics(settings, bootstrap)
        for key in ("events_per_s", "produce_per_s", "raw_consume_per_s", "replay_events_per_s", "p50_ms", "p99_ms",
                    "state_bytes_per_customer", "worker_peak_rss_mb", "peer_events_per_s"):
            result.setdefault(key, None)
        progress.phase("done", None)
        result["phase_seconds"] = progress.seconds
        result["targets"] = check_targets(result)
        result["machine"] = machine_info()
        result["bench_seconds"] = round(time.perf_counter() - started, 1)
        return result
    finally:
        progress.stop()
        shutil.rmtree(workdir, ignore_errors=True)
