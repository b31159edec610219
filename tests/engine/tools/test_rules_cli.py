"""``rules preview`` as of one instant; ``rules history``, ``rollback`` and ``diff`` against the
published version (file sizes and a live worker's), on the embedded broker."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from microseg.engine.tools.cli import app
from microseg.segments.rulefiles import load_rules
from microseg.segments.testing import event_bytes

runner = CliRunner()

RFM = """version: 1
segments:
  - {id: rfm_new, when: days_since_last_purchase <= 30 and purchases_total == 1}
  - {id: rfm_lost, when: days_since_last_purchase > 180}
"""
WIDER = """version: 1
segments:
  - {id: rfm_new, when: days_since_last_purchase <= 60 and purchases_total == 1}
  - {id: rfm_lost, when: days_since_last_purchase > 180}
  - {id: buyer, when: purchases_total >= 1}
"""


def _row(output: str, segment: str) -> list[str]:
    line = next(line for line in output.splitlines() if f" {segment} " in line)
    return [cell.strip() for cell in line.strip("│┃ ").split("│")]


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "rfm.yaml").write_text(RFM)
    (new / "rfm.yaml").write_text(WIDER)
    events = tmp_path / "events.jsonl"
    lines = [
        event_bytes("c-old", "purchase", "2026-01-01T12:00:00Z", order_id="o1", amount=10),
        event_bytes("c-mid", "purchase", "2026-06-20T12:00:00Z", order_id="o2", amount=10),
        event_bytes("c-new", "purchase", "2026-08-01T12:00:00Z", order_id="o3", amount=10),
    ]
    events.write_bytes(b"\n".join(lines) + b"\n")
    return old, new, events


def test_preview_evaluates_everyone_as_of_the_newest_event(tmp_path: Path) -> None:
    old, _, events = _files(tmp_path)
    result = runner.invoke(app, ["rules", "preview", str(old), "--events", str(events), "--no-model"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "as of 2026-08-01T12:00:00" in result.stdout
    # c-old's only order is 212 days old at the newest event: lost, not new as at its own last event
    assert _row(result.stdout, "rfm_lost")[1] == "1" and _row(result.stdout, "rfm_new")[1] == "1"
    early = runner.invoke(app, ["rules", "preview", str(old), "--events", str(events), "--no-model", "--as-of", "2026-01-15T00:00:00Z"], terminal_width=200)
    assert early.exit_code == 0, early.output
    assert "2 events after it left out" in early.stdout
    assert _row(early.stdout, "rfm_lost")[1] == "0" and _row(early.stdout, "rfm_new")[1] == "1"


def test_diff_against_a_directory_on_a_file_needs_no_broker(tmp_path: Path) -> None:
    old, new, events = _files(tmp_path)
    diff = runner.invoke(app, ["rules", "diff", str(new), "--against", str(old), "--events", str(events), "--no-model"], terminal_width=200)
    assert diff.exit_code == 0, diff.output
    assert _row(diff.stdout, "buyer")[1:] == ["added", "-", "3", "+3"]
    assert _row(diff.stdout, "rfm_new")[1:] == ["changed", "1", "2", "+1"]
    assert "1 added, 0 removed, 1 changed, 1 unchanged" in diff.stdout
    live = runner.invoke(app, ["rules", "diff", str(new), "--against", str(old)])
    assert live.exit_code == 2 and "--against compares two directories on --events" in live.stderr


# -- with a broker ----------------------------------------------------------------------


def _env(topics: dict[str, str], broker: str) -> dict[str, str]:
    return {**topics, "MICROSEG_BROKER": broker}


def _cli(env: dict[str, str], *args: str) -> Any:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return runner.invoke(app, list(args), terminal_width=200)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.broker
def test_history_rollback_and_diff_against_the_published_version(broker: str, workers: Any, unique_topics: dict[str, str], tmp_path: Path) -> None:
    old, new, events = _files(tmp_path)
    env = _env(unique_topics, broker)
    from microseg.engine.kafka.broker import ensure_topics
    from microseg.engine.settings import Settings

    settings = Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in unique_topics.items()})
    ensure_topics(broker, settings)
    v_old, v_new = load_rules(old).version, load_rules(new).version
    assert _cli(env, "rules", "publish", str(old)).exit_code == 0
    assert _cli(env, "rules", "publish", str(new)).exit_code == 0
    history = _cli(env, "rules", "history")
    assert history.exit_code == 0, history.output
    assert v_old in history.stdout and v_new in history.stdout and f"in force: {v_new}" in history.stdout

    diff = _cli(env, "rules", "diff", str(old), "--events", str(events), "--no-model")
    assert diff.exit_code == 0, diff.output
    assert _row(diff.stdout, "buyer")[1] == "removed" and _row(diff.stdout, "rfm_new")[1] == "changed"
    assert _row(diff.stdout, "rfm_new")[2:] == ["2", "1", "-1"]  # 60 days: c-mid and c-new; 30: c-new
    assert _row(diff.stdout, "rfm_lost")[1:] == ["same", "1", "1", "+0"]

    worker = workers({**unique_topics, "MICROSEG_TICKS": "false"})
    worker.wait_assigned()
    _wait(lambda: (worker.health() or {}).get("rules_version") == v_new)
    from microseg.engine.tools.produce import produce_file

    produce_file(settings, broker, events)
    _wait(lambda: sum(worker.get("/segments")["segments"].values()) >= 4)
    live = _cli({**env, "MICROSEG_WEB_PORT": str(worker.port)}, "rules", "diff", str(old))
    assert live.exit_code == 0, live.output
    assert "live state of 3 customers" in live.stdout
    assert _row(live.stdout, "buyer")[1:3] == ["removed", "3"]

    rolled = _cli(env, "rules", "rollback", v_old[:6])
    assert rolled.exit_code == 0 and f"rolled back to rules {v_old} (was {v_new})" in rolled.stdout
    _wait(lambda: (worker.health() or {}).get("rules_version") == v_old)
    history = _cli(env, "rules", "history")
    assert f"in force: {v_old}" in history.stdout and "rollback" in history.stdout
    assert _cli(env, "rules", "rollback", "nope").exit_code == 1


def _wait(condition: Any, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.3)


@pytest.mark.broker
def test_history_diff_and_rollback_find_the_local_workers_embedded_broker_as_publish_does(
    broker: str, unique_topics: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No MICROSEG_BROKER: every rules command reads <data dir>/embedded-broker (a worker's, here the test broker's)."""
    from microseg.engine.kafka import local_broker
    from microseg.engine.kafka.broker import ensure_topics
    from microseg.engine.settings import Settings

    old, new, events = _files(tmp_path)
    ensure_topics(broker, Settings(**{k.removeprefix("MICROSEG_").lower(): v for k, v in unique_topics.items()}))
    monkeypatch.delenv("MICROSEG_BROKER", raising=False)
    data = tmp_path / "data"
    env = {**unique_topics, "MICROSEG_DATA_DIR": str(data)}
    assert "no broker configured" in _cli(env, "rules", "history").output  # nothing running there yet
    local_broker.remember(data, broker)
    v_old, v_new = load_rules(old).version, load_rules(new).version
    for rules in (old, new):
        published = _cli(env, "rules", "publish", str(rules))
        assert published.exit_code == 0, published.output
    history = _cli(env, "rules", "history")
    assert history.exit_code == 0 and f"in force: {v_new}" in history.stdout, history.output
    diff = _cli(env, "rules", "diff", str(old), "--events", str(events), "--no-model")
    assert diff.exit_code == 0 and _row(diff.stdout, "buyer")[1] == "removed", diff.output
    rolled = _cli(env, "rules", "rollback", v_old[:6])
    assert rolled.exit_code == 0 and f"rolled back to rules {v_old}" in rolled.stdout, rolled.output
