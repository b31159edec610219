"""Publishing predictive models to running workers through a one-partition, compacted topic.

``model publish`` validates a model file and sends its content (not its path) with its version
(a content hash, ``PredictiveModel.version``), the file's name and the time, under one key; every
worker reads the topic from the start and applies only the newest usable record of what it finds,
as for rules (``rules_topic``). A record that is not a usable model is refused with its reason
logged and counted (``microseg_model_errors_total``); the worker keeps the model it had. An
accepted one is swapped in and every stored customer is re-evaluated (``cause: model:<version>``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from microseg.segments.predictive import ModelFileError, PredictiveModel, load_model, model_warnings
from microseg.segments.view import iso

from microseg.engine.kafka.clients import sync_producer
from microseg.engine.model_in_use import FIT_FOR_WORKER, ModelInUse
from microseg.engine.settings import Settings

__all__ = ["publish_model", "apply_published_model", "apply_published_models", "MODEL_KEY"]

log = logging.getLogger(__name__)
MODEL_KEY = b"model"


def publish_model(settings: Settings, bootstrap: str, path: Path) -> PredictiveModel:
    """Validate, then publish; returns the model. Raises ``ModelFileError`` for a file that is
    not a usable model and ``BrokerError`` (one line, within seconds) when no broker answers."""
    from microseg.engine.kafka.broker import check_reachable

    model = load_model(path)
    check_reachable(bootstrap, settings)
    payload = orjson.dumps({"version": model.version, "file": path.name, "published_at": iso(time.time()), "model": model.to_dict()})
    producer = sync_producer(settings, bootstrap, acks="all")
    try:
        producer.send(settings.models_topic, key=MODEL_KEY, value=payload).get(timeout=30)
    finally:
        producer.close(timeout=10)
    return model


def _read(value: bytes, runtime: Any) -> tuple[PredictiveModel, str] | None:
    """The model of a published record and its origin; None (logged and counted) for a bad one."""
    keeping = runtime.model.version if runtime.model is not None else "none"
    try:
        payload = orjson.loads(value)
        model = PredictiveModel.from_dict(payload["model"], "published model")
        return model, f"published {payload.get('file') or 'model'} at {payload.get('published_at') or '?'}"
    except ModelFileError as exc:
        runtime.metrics.model_errors.inc()
        log.error("%s; refused, keeping model %s", exc, keeping)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        runtime.metrics.model_errors.inc()
        log.error("published model record is malformed (%s: %s); refused, keeping model %s", type(exc).__name__, exc, keeping)
    return None


async def apply_published_models(values: Sequence[bytes], runtime: Any) -> None:
    """Of records read together (oldest first), apply the newest usable one: a restarting worker
    whose newest record is bad takes the one before it, as a running worker had. Each bad record
    looked at on the way is refused and counted."""
    for value in reversed(values):
        found = _read(value, runtime)
        if found is not None:
            await _apply(*found, runtime)
            return


async def apply_published_model(value: bytes, runtime: Any) -> None:
    """Validate a published record and swap its model in; a bad one is refused and counted."""
    await apply_published_models([value], runtime)


async def _apply(model: PredictiveModel, origin: str, runtime: Any) -> None:
    for finding in model_warnings(model):
        log.warning("published model %s: %s", model.version, finding)
    in_use = ModelInUse(model, origin)
    swept = await runtime.apply_model(model, origin)
    log.info("%s in force (%d customers re-evaluated)", in_use.line(), swept)
    warning = in_use.demo_warning(FIT_FOR_WORKER)
    if warning:
        log.warning(warning)
