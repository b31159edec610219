"""``microseg bench``: one run, phase after phase, into the JSON object it prints."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from microseg.engine.settings import Settings, load_settings
from microseg.engine.tools.bench.config import BenchConfig, check_targets
from microseg.engine.tools.bench.machine import machine_info
from microseg.engine.tools.bench.peer_phase import run_peer
from microseg.engine.tools.bench.progress import PhaseProgress
from microseg.engine.tools.bench.replay_phase import replay_figures
from microseg.engine.tools.bench.topics import bench_broker, delete_topics
from microseg.engine.tools.bench.worker_phase import worker_phase
from microseg.engine.tools.bench.workload import make_lines

__all__ = ["run_bench"]


def run_bench(cfg: BenchConfig, base: Settings | None = None) -> dict[str, Any]:
    """One full run; returns the JSON object ``microseg bench --json`` prints."""
    base = base or load_settings()
    if cfg.rules_dir is not None:
        base = base.model_copy(update={"rules_dir": cfg.rules_dir})
    progress = PhaseProgress(cfg.progress)
    workdir = Path(tempfile.mkdtemp(prefix="microseg-bench-"))
    started = time.perf_counter()
    try:
        latency_lines = int(cfg.latency_rate * cfg.latency_seconds) if cfg.latency_rate > 0 and cfg.latency_seconds > 0 else 0
        progress.phase("simulating events", None)
        lines, keys = make_lines(cfg.events + latency_lines, cfg.customers, cfg.seed)
        result: dict[str, Any] = {
            "events": cfg.events,
            "customers": cfg.customers,
            "partitions": cfg.partitions,
            "rules": str(cfg.rules_dir) if cfg.rules_dir else "starter",
            "latency_rate": cfg.latency_rate,
            "latency_seconds": cfg.latency_seconds,
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
