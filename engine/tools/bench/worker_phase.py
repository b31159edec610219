"""The worker under load: pre-load the input, a raw consumer for the ceiling, one worker end to end,
then a paced latency run against the same worker."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson

from microseg.engine.settings import Settings
from microseg.engine.tools.bench.config import BenchConfig
from microseg.engine.tools.bench.latency import latencies_ms, paced_produce, percentile
from microseg.engine.tools.bench.progress import PhaseProgress
from microseg.engine.tools.bench.topics import bench_settings, preload, raw_consume, read_topics
from microseg.engine.tools.bench.worker_process import WorkerRun, start_profiler, stop_profiler
from microseg.engine.tools.bench.workload import event_ids

__all__ = ["worker_phase"]


def worker_phase(cfg: BenchConfig, base: Settings, bootstrap: str, embedded: bool, lines: list[bytes], keys: list[bytes],
                  latency_lines: int, workdir: Path, progress: PhaseProgress) -> tuple[dict[str, Any], Settings]:
    """Pre-load, raw consume, the worker end to end, then the latency phase; the worker stopped at the end.

    ``lines[:cfg.events]`` are pre-loaded, the next ``latency_lines`` are sent paced. Returns the
    figures (``produce_per_s``, ``raw_consume_per_s``, ``events_per_s``, ``p50_ms``/``p99_ms``,
    ``worker_peak_rss_mb`` ...) and the settings of the fresh topics; raises RuntimeError when the
    worker exits, is not ready or does not keep up within its timeouts.
    """
    from microseg.engine.kafka.broker import ensure_topics

    assert cfg.events is not None, "run_bench and run_scale resolve the number of events"
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = bench_settings(base, prefix, cfg.partitions)
    ensure_topics(bootstrap, settings)
    main_lines, main_keys = lines[: cfg.events], keys[: cfg.events]
    result: dict[str, Any] = {}

    progress.phase("pre-loading the input topic", cfg.events)
    seconds = asyncio.run(preload(settings, bootstrap, main_lines, main_keys, progress.update))
    result["produce_per_s"] = round(cfg.events / seconds)

    if cfg.raw:
        progress.phase("raw aiokafka consumer", None)
        result["raw_consume_per_s"] = round(cfg.events / asyncio.run(raw_consume(settings, bootstrap, cfg.events)))

    progress.phase("starting the worker", None)
    worker = WorkerRun(settings, bootstrap, embedded, cfg.rules_dir, workdir).start()
    profiler = None
    try:
        t_ready = worker.wait_ready(cfg.partitions)
        if cfg.profile is not None:
            profiler = start_profiler(worker.pid, cfg.profile)
        progress.phase("worker: pre-loaded input", cfg.events)
        worker.wait_counted(cfg.events, cfg.worker_timeout_s, progress.update)
        worker.wait_idle()
        stop_profiler(profiler)
        profiler = None
        topics = [settings.changes_topic, settings.messages_topic, settings.changelog_topic]
        written = asyncio.run(read_topics(settings, bootstrap, topics))
        t_last = max((ts for records in written.values() for ts, _ in records), default=None)
        if t_last is None:
            raise RuntimeError("the worker wrote nothing to its output and changelog topics")
        t_logged = worker.ready_logged_at()
        result["start_clock"] = "worker log" if t_logged is not None else "health poll"
        elapsed = t_last / 1000 - (t_logged if t_logged is not None else t_ready)
        result["events_per_s"] = round(cfg.events / elapsed)
        result["worker_seconds"] = round(elapsed, 3)
        result["changes_written"] = len(written[settings.changes_topic])
        result["changelog_records"] = len(written[settings.changelog_topic])

        if latency_lines:
            extra = lines[cfg.events : cfg.events + latency_lines]
            extra_keys = keys[cfg.events : cfg.events + latency_lines]
            ids = event_ids(extra)
            progress.phase(f"latency at {cfg.latency_rate:,.0f} events/s", len(extra))
            stamps = asyncio.run(paced_produce(settings, bootstrap, extra, extra_keys, cfg.latency_rate, progress.update))
            worker.wait_counted(cfg.events + len(extra), 120.0)
            worker.wait_idle()
            sent_at = {ids[i]: stamp for i, stamp in stamps.items()}
            changes = asyncio.run(read_topics(settings, bootstrap, [settings.changes_topic]))[settings.changes_topic]
            latencies = latencies_ms(changes, sent_at)
            result["p50_ms"] = percentile(latencies, 50)
            result["p99_ms"] = percentile(latencies, 99)
            identifies = {ids[i] for i, line in enumerate(extra) if b'"identify"' in line and orjson.loads(line).get("type") == "identify"}
            if identifies:  # from an identify's send to its merged customer's last segment change (issue 17)
                done: dict[str, int] = {}
                for ts, value in changes:
                    change = orjson.loads(value)
                    cause = change.get("cause")
                    if cause in identifies and change.get("customer_id") is not None and cause in sent_at:
                        done[cause] = max(done.get(cause, 0), max(ts - sent_at[cause], 0))
                result["identify_p50_ms"] = percentile(list(done.values()), 50)
                result["identify_p99_ms"] = percentile(list(done.values()), 99)
                result["identify_samples"] = len(done)
                result["identifies_sent"] = len(identifies)
            result["latency_samples"] = len(latencies)
            result["latency_events"] = len(extra)
        result["worker_peak_rss_mb"] = worker.peak_rss_mb()
    except BaseException:
        stop_profiler(profiler)
        raise
    finally:
        worker.stop()
    return result, settings
