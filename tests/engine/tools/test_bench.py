"""``microseg bench``: a tiny run against the embedded broker prints one JSON object with every figure.

Targets (20k events/s, p99 < 100 ms, ...) are the benchmark's business, not this test's: here only
the shape and plausibility of the output are checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from microseg.engine.tools.bench import clone_rules, percentile

KEYS = (
    "events_per_s",
    "produce_per_s",
    "raw_consume_per_s",
    "replay_events_per_s",
    "p50_ms",
    "p99_ms",
    "state_bytes_per_customer",
    "worker_peak_rss_mb",
    "peer_events_per_s",
    "targets",
    "machine",
)


@pytest.mark.timeout(180)
def test_tiny_bench_prints_every_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROSEG_")}
    command = [sys.executable, "-m", "microseg", "bench", "--events", "3000", "--customers", "300", "--json",
               "--latency-rate", "500", "--latency-seconds", "3"]
    started = time.monotonic()
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=170, check=False)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert key in result, key
    for key in ("events_per_s", "produce_per_s", "raw_consume_per_s", "replay_events_per_s", "state_bytes_per_customer", "worker_peak_rss_mb"):
        assert isinstance(result[key], (int, float)) and result[key] > 0, (key, result[key])
    assert result["p50_ms"] is not None and result["p99_ms"] is not None
    assert 0 <= result["p50_ms"] <= result["p99_ms"]
    assert result["latency_samples"] > 0
    assert result["peer_events_per_s"] is None
    assert set(result["targets"]) >= {"events_per_s", "replay_events_per_s", "p99_ms", "state_bytes_per_customer"}
    assert all(isinstance(t["met"], bool) for t in result["targets"].values())
    assert result["start_clock"] == "worker log"
    assert result["machine"]["nproc"] >= 1
    assert seconds < 90, f"the tiny bench took {seconds:.0f} s"


def test_clone_rules_reaches_the_segment_count(tmp_path: Path) -> None:
    from microseg.engine.startup import packaged_rules_dir
    from microseg.segments.rulefiles import load_rules

    assert clone_rules(packaged_rules_dir(), tmp_path / "rules", 80) == 80
    ruleset = load_rules(tmp_path / "rules")
    clones = [s for s in ruleset.segments if "_x" in s.id]
    assert clones and any(c.when.source != ruleset.segments[0].when.source for c in clones)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([], 50) is None


CDNOW_SAMPLE = Path(__file__).parents[2] / "data" / "CDNOW_sample.txt"


def _cdnow_excerpt(path: Path, rows: int) -> Path:
    """The first ``rows`` rows of the CDNOW sample, in its own layout (grouped by customer)."""
    path.write_bytes(b"".join(CDNOW_SAMPLE.read_bytes().splitlines(keepends=True)[:rows]))
    return path


def test_bench_input_from_a_data_file(tmp_path: Path) -> None:
    from microseg.engine.tools.bench import BenchConfig
    from microseg.engine.tools.bench.progress import PhaseProgress
    from microseg.engine.tools.bench.run import bench_input

    data = _cdnow_excerpt(tmp_path / "cdnow.txt", 700)
    cfg, lines, keys, latency_lines, about = bench_input(BenchConfig(events=400, latency_rate=100, latency_seconds=2, data=data), PhaseProgress(False))
    assert cfg.events == 400 and len(lines) == len(keys) == 700 and latency_lines == 200
    times = [orjson.loads(line)["ts"] for line in lines]
    assert times == sorted(times)  # imported: sorted by time, not grouped by customer as in the file
    assert about["file"] == "cdnow.txt" and about["format"] == "cdnow" and about["events"] == 400
    assert about["customers"] == len(set(keys[:400])) and about["first_ts"] == "1997-01-01T12:00:00.000Z"
    assert about["file_lines"] == 700 and about["skipped_rows"] == 0 and about["span_days"] > 0
    cfg, _, _, latency_lines, about = bench_input(BenchConfig(events=None, data=data), PhaseProgress(False))
    assert cfg.events == 700 and latency_lines == 0 and "latency_note" in about


def test_bench_refuses_simulator_options_with_data(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from microseg.engine.tools.cli import app

    data = _cdnow_excerpt(tmp_path / "cdnow.txt", 10)
    done = CliRunner().invoke(app, ["bench", "--data", str(data), "--customers", "50", "--seed", "3"])
    assert done.exit_code == 2
    assert "--customers, --seed: only for the simulated input" in done.output


@pytest.mark.timeout(180)
def test_tiny_bench_on_a_data_file_says_what_it_ran_on(tmp_path: Path) -> None:
    data = _cdnow_excerpt(tmp_path / "cdnow.txt", 900)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROSEG_")}
    command = [sys.executable, "-m", "microseg", "bench", "--data", str(data), "--events", "600", "--json",
               "--latency-rate", "100", "--latency-seconds", "3"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, timeout=170, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert result["events"] == 600 and result["data"]["events"] == 600 and result["data"]["format"] == "cdnow"
    assert result["data"]["file"] == "cdnow.txt" and result["customers"] == result["data"]["customers"] == result["customers_seen"]
    assert result["events_per_s"] > 0 and result["replay_events_per_s"] > 0
    assert result["latency_events"] == 300
