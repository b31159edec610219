"""``microseg worker``: the broker (configured, or embedded), the topics, the store and the Faust app."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from microseg.engine.kafka import local_broker
from microseg.engine.kafka.broker import broker_for, topic_id
from microseg.errors import ConfigError
from microseg.engine.settings import Settings
from microseg.engine.model_in_use import FIT_FOR_WORKER, load_model_in_use
from microseg.engine.startup import load_ruleset, quiet_loggers, tune_gc
from microseg.engine.worker.auth import Guard, check_bind
from microseg.engine.worker.logs import install_format, install_redaction, install_repeat_filter

__all__ = ["run_worker"]

log = logging.getLogger("microseg.worker")


def run_worker(settings: Settings) -> int:
    """Run until interrupted (returns 0); with no broker configured, an embedded one lives as long as
    the worker. Raises ``MicrosegError`` (one line, the command exits 2) when the broker cannot be
    reached at start, the topics do not fit, the embedded broker dies under the worker, or the web
    endpoints would serve customers beyond this machine without a token."""
    import faust

    from microseg.engine.worker.app import build_app
    from microseg.engine.worker.runtime import Runtime
    from microseg.engine.kafka.clients import SharedProducer
    from microseg.engine.state.rocksdb import RocksChangelogStore
    from microseg.engine.worker.delivery import KafkaSink

    if settings.erasure_secret_needed:
        raise ConfigError(
            "MICROSEG_ERASURE_SECRET is required with a configured broker: the key under which erased customers "
            "are remembered (at least 16 characters, e.g. openssl rand -hex 32; the same on every worker, never changed)"
        )
    unguarded = check_bind(settings.web_host, settings.web_port, Guard(settings.api_token, settings.read_token))
    quiet_loggers(logging.DEBUG if os.environ.get("MICROSEG_DEBUG") else logging.INFO)
    install_format(settings.log_format)
    install_repeat_filter(10.0)
    install_redaction(s.get_secret_value() for s in (settings.api_token, settings.read_token, settings.erasure_secret, settings.sasl_password) if s is not None)
    if unguarded is not None:
        log.warning(unguarded)
    ruleset = load_ruleset(settings)
    in_use = load_model_in_use(settings.model_path)
    tune_gc()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    with broker_for(settings) as endpoint:
        if endpoint.embedded:  # so that produce / rules publish run next to this worker find it
            local_broker.remember(settings.data_dir, endpoint.bootstrap)
        log.info("broker %s (%s), rules %s, %d partitions", endpoint.bootstrap, "embedded" if endpoint.embedded else "configured", ruleset.version, settings.partitions)
        log.info("%s; a model published on %s replaces it", in_use.line(), settings.models_topic)
        if (warning := in_use.demo_warning(FIT_FOR_WORKER)) is not None:
            log.warning(warning)
        producer = SharedProducer(settings, endpoint.bootstrap)
        store = RocksChangelogStore(
            Path(settings.data_dir) / "state",
            bootstrap=endpoint.bootstrap,
            changelog_topic=settings.changelog_topic,
            client_kwargs=settings.aiokafka_kwargs(),
            producer=producer,
        )
        runtime = Runtime(settings, store, KafkaSink(producer, settings), ruleset, in_use.model)
        runtime.model_origin = in_use.origin
        runtime.tasks.input_topic_id = topic_id(endpoint.bootstrap, settings, settings.input_topic)
        if runtime.tasks.input_topic_id is None:
            log.warning("the broker reports no topic ids: a deleted and re-created input topic is not detected (see docs/operations.md)")
        app = build_app(settings, endpoint.bootstrap, runtime, embedded_broker=endpoint.broker)
        worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False, override_logging=False)
        worker.spinner = None  # Faust's start-up spinner writes cursor escapes even into a redirected log
        if settings.web_port > 0:
            log.info("web endpoints on http://%s:%d (/metrics, /health, /health/ready, /segments, /customers/{id})", _url_host(settings.web_host), settings.web_port)
        code = 0
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if endpoint.embedded:
            local_broker.forget(settings.data_dir, endpoint.bootstrap)
        log.info(app.progress.stopped(code))  # type: ignore[attr-defined]
    return code


def _url_host(host: str) -> str:
    """The host part of a URL for a bind address (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host
