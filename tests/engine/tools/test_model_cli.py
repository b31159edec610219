"""Which model the commands use, said where it matters: replay's summary, the demo model's one-line
warning (replay, rules preview), ``model show`` and ``model publish``'s refusals."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from microseg.engine.tools.cli import app
from microseg.segments.predictive import BgNbdParams, GammaGammaParams, PredictiveModel, load_default_model
from microseg.segments.testing import event_bytes

runner = CliRunner()
FITTED = PredictiveModel(BgNbdParams(0.2426, 4.4136, 0.7929, 2.4259), GammaGammaParams(6.2496, 3.7442, 15.4435), description="fitted on CDNOW")
RULES = "version: 1\nsegments:\n  - id: valuable\n    when: clv_12m > 1000\n"


def _events(path: Path) -> Path:
    lines = [event_bytes(f"c{i}", "purchase", "2026-01-05T10:00:00Z", order_id=f"o{i}", amount=40) for i in range(3)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning:")]


def test_replay_says_which_model_and_warns_once_about_the_demo_model(tmp_path: Path) -> None:
    events = _events(tmp_path / "events.jsonl")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(RULES)
    demo = runner.invoke(app, ["replay", str(events), "--rules", str(rules), "--json"])
    assert demo.exit_code == 0, demo.output
    assert orjson.loads(demo.stdout.strip().splitlines()[-1])["model"] == load_default_model().version
    (warning,) = _warnings(demo.stderr)
    assert "is a demo model, fitted on simulated journeys" in warning and "microseg fit --from-events" in warning

    model = tmp_path / "cdnow.json"
    model.write_text(FITTED.to_json())
    fitted = runner.invoke(app, ["replay", str(events), "--rules", str(rules), "--model", str(model), "--json"])
    assert fitted.exit_code == 0 and not _warnings(fitted.stderr)
    assert orjson.loads(fitted.stdout.strip().splitlines()[-1])["model"] == FITTED.version
    none = runner.invoke(app, ["replay", str(events), "--rules", str(rules), "--no-model"])
    assert none.exit_code == 0 and not _warnings(none.stderr) and none.stderr.rstrip().endswith("model none")

    preview = runner.invoke(app, ["rules", "preview", str(rules), "--events", str(events)])
    assert preview.exit_code == 0, preview.output
    assert len(_warnings(preview.stderr)) == 1 and "demo model" in preview.stderr


def test_model_show_reads_a_file_or_the_packaged_model(tmp_path: Path) -> None:
    packaged = runner.invoke(app, ["model", "show"])
    assert packaged.exit_code == 0, packaged.output
    shown = orjson.loads(packaged.stdout)
    assert shown["version"] == load_default_model().version and shown["demo"] is True and shown["origin"] == "packaged"
    model = tmp_path / "cdnow.json"
    model.write_text(FITTED.to_json())
    shown = orjson.loads(runner.invoke(app, ["model", "show", str(model)]).stdout)
    assert (shown["version"], shown["description"], shown["origin"], shown["demo"]) == (FITTED.version, "fitted on CDNOW", f"file {model}", False)
    (tmp_path / "bad.json").write_text("{}")
    bad = runner.invoke(app, ["model", "show", str(tmp_path / "bad.json")])
    assert bad.exit_code == 2 and "not a microseg predictive model" in bad.stderr


def test_model_publish_refuses_a_bad_file_and_needs_a_broker(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(orjson.dumps({**FITTED.to_dict(), "gamma_gamma": {"p": 1, "q": 0.5, "v": 1}}).decode())
    refused = runner.invoke(app, ["model", "publish", str(tmp_path / "bad.json"), "--broker", "127.0.0.1:1"])
    assert refused.exit_code == 2 and "Gamma-Gamma parameter 'q' must be > 1" in refused.stderr
    (tmp_path / "ok.json").write_text(FITTED.to_json())
    unreachable = runner.invoke(app, ["model", "publish", str(tmp_path / "ok.json"), "--broker", "127.0.0.1:1"])
    assert unreachable.exit_code == 2 and "cannot reach the broker at 127.0.0.1:1" in unreachable.stderr


def test_a_degenerate_model_is_one_warning_line_and_arguments_are_checked_before_the_demo_warning(tmp_path: Path) -> None:
    degenerate = PredictiveModel(BgNbdParams(0.2426, 4.4136, 5e6, 5e6), GammaGammaParams(6.2496, 3.7442, 15.4435), description="flat")
    model = tmp_path / "flat.json"
    model.write_text(degenerate.to_json())
    shown = runner.invoke(app, ["model", "show", str(model)])
    assert shown.exit_code == 0, shown.output
    (warning,) = [line for line in shown.stderr.splitlines() if line.strip()]
    assert warning.startswith(f"warning: {model}: BG/NBD a + b = ") and "ModelWarning" not in warning and ".py:" not in warning
    events = _events(tmp_path / "events.jsonl")
    wrong = runner.invoke(app, ["replay", str(events), "--now", "yesterday"])
    assert wrong.exit_code != 0 and "--now 'yesterday' is not an RFC 3339 time" in wrong.stderr
    assert not _warnings(wrong.stderr) and "demo model" not in wrong.stderr
