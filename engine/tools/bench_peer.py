"""The peer of ``microseg bench --peer``: the same core hosted in a minimal quix-streams application.

Identical work per event to the worker: the same record pipeline (``segments.pipeline``: decode,
dedupe, ``Core.on_event``, encode) over the customer's state (``segments.state`` bytes, kept raw
in quix's RocksDB state, changelog on), the new state written back, and every segment change and
message produced to one output topic. quix hands over one record at a time, so each is a batch of one. Run as ``python -m microseg.engine.tools.bench_peer``; prints one JSON line.

Timing: from the first record handed to our step function to ``Application.run`` returning after
the N-th input record (quix then commits its checkpoint: outputs and changelog flushed, offsets
committed).
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import orjson


def _identity(value: Any) -> Any:
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="microseg.engine.tools.bench_peer")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--rules", default=None)
    parser.add_argument("--commit-interval", type=float, default=5.0)
    args = parser.parse_args(argv)

    try:
        from quixstreams import Application
        from quixstreams.state.rocksdb import RocksDBOptions
    except ImportError:
        print(orjson.dumps({"peer_events_per_s": None, "peer_note": "skipped: quixstreams is not installed"}).decode())
        return 0

    from microseg.engine.settings import load_settings
    from microseg.engine.startup import load_predictive_model, load_ruleset, tune_gc
    from microseg.segments.pipeline import Pipeline, Record
    from microseg.segments.state import CustomerState, decode, encode
    from microseg.segments.step import Core

    logging.basicConfig(level=logging.WARNING)
    settings = load_settings(rules_dir=Path(args.rules) if args.rules else None)
    pipeline = Pipeline(Core(load_ruleset(settings), load_predictive_model(settings)), source=args.topic, kafka=False, encode=encode)
    tune_gc()

    processed = 0
    seen = 0
    first: list[float] = []
    key = b"s"

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        commit_interval=args.commit_interval,
        loglevel="WARNING",
        rocksdb_options=RocksDBOptions(dumps=_identity, loads=bytes),
        # the embedded broker holds a JoinGroup for half the session timeout (quix's default: 45 s)
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000},
    )

    def on_processed(topic: str, partition: int, offset: int) -> None:
        nonlocal processed
        processed += 1
        if processed >= args.events:
            app.stop()

    app._on_message_processed = on_processed  # noqa: SLF001 - set after construction so the callback can reach app

    source = app.topic(args.topic, key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(args.output, key_serializer="bytes", value_serializer="json")

    def step(value: bytes, state: Any) -> list[dict[str, Any]]:
        if not first:
            first.append(time.perf_counter())
        nonlocal seen
        seen += 1

        def load(partition: int, customer_ids: Collection[str]) -> dict[str, CustomerState]:
            raw = state.get(key)
            return {} if raw is None else {c: decode(raw) for c in customer_ids}

        batch = pipeline.process([Record(0, seen, None, value)], time.time(), load)
        for encoded in batch.encoded.values():
            for raw in encoded.values():
                state.set(key, raw)
        return batch.changes + batch.messages if batch.messages else batch.changes

    sdf = app.dataframe(source)
    sdf = sdf.apply(step, stateful=True, expand=True)
    sdf.to_topic(sink)
    app.run()
    ended = time.perf_counter()
    seconds = ended - first[0] if first else float("nan")
    rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(orjson.dumps({
        "peer_events_per_s": round(processed / seconds) if first else None,
        "peer_seconds": round(seconds, 3),
        "peer_events": processed,
        "peer_peak_rss_mb": rss_mb,
        "peer_commit_interval_s": args.commit_interval,
    }).decode())
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
