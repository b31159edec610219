"""What every process of microseg loads at start: the rule set, the predictive model, logging and
the garbage collector's tuning for the hot path. Shared by the worker and the tools."""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path

from microseg.segments.predictive import PredictiveModel, load_default_model, load_model
from microseg.segments.ruleset import RuleSet
from microseg.segments.rulefiles import load_rules

from microseg.engine.settings import Settings

__all__ = ["packaged_rules_dir", "load_ruleset", "load_predictive_model", "quiet_loggers", "tune_gc"]


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
