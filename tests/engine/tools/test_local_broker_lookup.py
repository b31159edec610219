"""Every command that reads the workers' topics finds a local worker's embedded broker
(``<MICROSEG_DATA_DIR>/embedded-broker``) when no broker is configured, as ``produce`` does:
``report uplift --from-topics``, ``fit --from-topic``, ``replay --posteriors topic``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from microseg.engine.tools.cli import app


def _cli(env: dict[str, str], *args: str) -> Any:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return CliRunner().invoke(app, list(args), terminal_width=200)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.broker
def test_topic_readers_use_the_local_workers_embedded_broker(broker: str, unique_topics: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from microseg.engine.kafka import local_broker
    from microseg.engine.kafka.broker import ensure_topics
    from microseg.engine.settings import Settings

    monkeypatch.delenv("MICROSEG_BROKER", raising=False)
    ensure_topics(broker, Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in unique_topics.items()}))
    events = tmp_path / "events.jsonl"
    events.write_text("")
    env = {**unique_topics, "MICROSEG_DATA_DIR": str(tmp_path / "data")}
    commands = (("report", "uplift", "--from-topics"), ("fit", "--from-topic", "--out", str(tmp_path / "m.json")), ("replay", str(events), "--posteriors", "topic", "--no-model"))
    for command in commands:  # no worker there yet: the error names both ways
        result = _cli(env, *command)
        assert result.exit_code != 0 and "no worker with an embedded broker in" in result.output, (command, result.output)
    local_broker.remember(tmp_path / "data", broker)
    uplift = _cli(env, *commands[0])
    assert "no decision records found" in uplift.output, uplift.output  # it read the (empty) topics
    fit = _cli(env, *commands[1])
    assert "broker" not in fit.output.lower() and f"of {unique_topics['MICROSEG_INPUT_TOPIC']}" in fit.output, fit.output
    replay = _cli(env, *commands[2])
    assert replay.exit_code == 0, replay.output
