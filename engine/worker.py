"""``microseg worker``: the broker (configured, or embedded), the topics, the store and the Faust app."""

from __future__ import annotations

import gc
import logging
import os
import sys
from pathlib import Path

from microseg.errors import MicrosegError
from microseg.segments.predictive import PredictiveModel, load_default_model, load_model
from microseg.segments.ruleset import RuleSet
from microseg.segments.rulefiles import load_rules

from microseg.engine.broker import broker_for
from microseg.engine.settings import Settings

__all__ = ["run_worker", "load_ruleset", "load_predictive_model", "quiet_loggers", "tune_gc"]

log = logging.getLogger("microseg.worker")


def packaged_rules_dir() -> Path:
    import microseg.rules

    return Path(microseg.rules.__file__).parent


def load_ruleset(settings: Settings) -> RuleSet:
    return load_rules(settings.rules_dir or packaged_rules_dir())


def load_predictive_model(settings: Settings) -> PredictiveModel | None:
    return load_model(settings.model_path) if settings.model_path else load_default_model()


def quiet_loggers(level: int = logging.INFO) -> None:
    """Our own logs at ``level``; the libraries' debug chatter off (it costs real time per message)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for name in ("aiokafka", "faust", "mode", "kafka", "aiohttp"):
        logging.getLogger(name).setLevel(logging.WARNING)


def tune_gc() -> None:
    """Start-up objects (modules, rules, model) out of the collector's scans, and young collections
    every 50,000 allocations instead of 700: the hot path makes many short-lived objects without
    cycles, which reference counting frees anyway; collecting after every few events cost ~5%."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run_worker(settings: Settings) -> None:
    """Run until interrupted; with no broker configured, an embedded one lives as long as the worker."""
    import faust

    from microseg.engine.app import build_app
    from microseg.engine.runtime import Runtime
    from microseg.engine.store import RocksChangelogStore

    quiet_loggers(logging.DEBUG if os.environ.get("MICROSEG_DEBUG") else logging.INFO)
    ruleset = load_ruleset(settings)
    model = load_predictive_model(settings)
    tune_gc()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    with broker_for(settings) as endpoint:
        log.info("broker %s (%s), rules %s, %d partitions", endpoint.bootstrap, "embedded" if endpoint.embedded else "configured", ruleset.version, settings.partitions)
        store = RocksChangelogStore(
            Path(settings.data_dir) / "state",
            bootstrap=endpoint.bootstrap,
            changelog_topic=settings.changelog_topic,
            client_kwargs=settings.aiokafka_kwargs(),
            idempotent_producer=settings.idempotent_producer,
        )
        runtime = Runtime(settings, store, ruleset, model)
        app = build_app(settings, endpoint.bootstrap, runtime)
        worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False, override_logging=False)
        try:
            worker.execute_from_commandline()
        except SystemExit:
            pass
        except MicrosegError as exc:
            log.error("%s", exc)
            raise
