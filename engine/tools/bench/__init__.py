"""``microseg bench``: one worker's throughput and latency, measured end to end, next to its ceilings.

One run, side by side (definitions in docs/performance.md):

- ``produce_per_s``: how fast the load generator pre-loaded the input topic (aiokafka, pre-built batches);
- ``raw_consume_per_s``: a plain aiokafka consumer reading the same topic (the ceiling);
- ``events_per_s``: one real ``microseg worker`` subprocess (Kafka in, RocksDB + changelog, outputs
  to Kafka) from the moment it owns its recovered partitions (input pre-loaded) to the newest
  record it wrote to the changes, messages or changelog topic;
- ``p50_ms``/``p99_ms``: a paced producer at a fixed rate against the running worker, from each
  input record's produce timestamp to the timestamp of the segment change it caused;
- ``replay_events_per_s``: ``engine.tools.replay.replay`` over the same lines in-process (no Kafka);
- ``state_bytes_per_customer``: mean encoded state (``segments.state.encode``) after the replay;
- ``worker_peak_rss_mb``: the worker's VmHWM;
- ``peer_events_per_s`` (``--peer``): the same ``Core`` hosted in a minimal quix-streams app.

Targets of issue 6 are reported as met/missed in ``targets``; nothing here asserts them.

Modules: ``config`` (what a run is asked for, the targets), ``workload`` (the simulated input),
``topics`` (broker, topics, pre-load and read-back), ``worker_process`` (the worker subprocess),
``worker_phase`` (throughput and latency against it), ``latency`` (paced producer, percentiles),
``replay_phase``, ``peer_phase``, ``run`` (one run), ``scale`` and ``scale_report`` (the growth
series), ``report`` (the table), ``machine``, ``progress``.
"""

from __future__ import annotations

from microseg.engine.tools.bench.config import TARGETS, BenchConfig, check_targets
from microseg.engine.tools.bench.latency import percentile
from microseg.engine.tools.bench.machine import machine_info
from microseg.engine.tools.bench.report import print_table
from microseg.engine.tools.bench.run import run_bench
from microseg.engine.tools.bench.scale import clone_rules, run_scale
from microseg.engine.tools.bench.scale_report import plot_scale, scale_markdown
from microseg.engine.tools.bench.workload import make_lines, make_population_lines

__all__ = [
    "BenchConfig",
    "TARGETS",
    "check_targets",
    "run_bench",
    "run_scale",
    "make_lines",
    "make_population_lines",
    "clone_rules",
    "percentile",
    "print_table",
    "machine_info",
    "scale_markdown",
    "plot_scale",
]
