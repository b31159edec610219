"""The analyst-facing commands, run as users run them."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from microseg.engine.tools.cli import app
from microseg.engine.tools.simulator import simulate_lines
from microseg.schemas.outputs import SegmentChange
from microseg.segments.testing import event_bytes

runner = CliRunner()
STARTER = Path(__file__).parents[3] / "rules"


def _journeys(path: Path) -> Path:
    from datetime import datetime, timezone

    with open(path, "wb") as handle:
        for line in simulate_lines(60, 30, 3, datetime(2026, 1, 1, tzinfo=timezone.utc)):
            handle.write(line)
        handle.write(b"{broken json\n")
        handle.write(event_bytes("c-x", "purchase", "2026-01-05T00:00:00Z", order_id="o", amount=-5) + b"\n")
    return path


def test_replay_writes_changes_and_dead_letters(tmp_path: Path) -> None:
    events = _journeys(tmp_path / "events.jsonl")
    out, dlq = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl"
    result = runner.invoke(app, ["replay", str(events), "--rules", str(STARTER), "--out", str(out), "--dlq", str(dlq), "--until", "2026-04-01T00:00:00Z", "--json"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rejected"] == 2 and summary["events"] > 1000 and summary["changes"] > 0
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {line["topic"] for line in lines} == {"segment-changes"}, "history is decided against the wall clock: no send for the past"
    assert summary["messages"] == 0 and summary["suppressed"]["stale"] > 0
    live = tmp_path / "live.jsonl"
    result = runner.invoke(app, ["replay", str(events), "--rules", str(STARTER), "--out", str(live), "--as-live", "--json"])
    assert result.exit_code == 0, result.output
    assert {orjson.loads(line)["topic"] for line in live.read_bytes().splitlines()} == {"segment-changes", "next-best-messages", "message-holdouts"}
    changes = [line["value"] for line in lines if line["topic"] == "segment-changes"]
    for change in changes:
        SegmentChange.model_validate(change)
    assert any(c["cause"] == "tick" for c in changes), "--until lets time-based exits fire"
    dead = [orjson.loads(line) for line in dlq.read_bytes().splitlines()]
    assert [d["reason"].split(":")[0] for d in dead] == ["not valid JSON (or not UTF-8)", "props.amount"]
    assert dead[0]["raw"] == "{broken json" and dead[0]["offset"] > 0


def test_replay_is_deterministic(tmp_path: Path) -> None:
    events = _journeys(tmp_path / "events.jsonl")
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.jsonl"
        result = runner.invoke(app, ["replay", str(events), "--out", str(out), "--until", "2026-03-01T00:00:00Z", "--now", "2026-06-01T00:00:00Z"])
        assert result.exit_code == 0, result.output
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] and outputs[0]


def test_rules_check_reports_every_problem_with_position(tmp_path: Path) -> None:
    good = runner.invoke(app, ["rules", "check", str(STARTER)])
    assert good.exit_code == 0 and good.stdout.startswith("ok:")
    (tmp_path / "a.yaml").write_text(
        "version: 1\nsegments:\n  - id: one\n    description: typo\n    when: sesions_30d > 2\n"
        "  - id: two\n    description: types\n    when: top_category > 3\n"
    )
    (tmp_path / "b.yaml").write_text("version: 1\nsegments:\n  - id: three\n    descripton: x\n    when: true\n")
    bad = runner.invoke(app, ["rules", "check", str(tmp_path)])
    assert bad.exit_code == 1
    lines = bad.stdout.strip().splitlines()
    assert any(line.startswith(f"{tmp_path / 'a.yaml'}:5:11: ") and "sessions_30d" in line for line in lines), lines
    assert any(line.startswith(f"{tmp_path / 'a.yaml'}:8:") for line in lines), lines
    assert any(line.startswith(f"{tmp_path / 'b.yaml'}:4:5: ") for line in lines), lines


def test_rules_preview_shows_sizes_cells_and_moves(tmp_path: Path) -> None:
    events = _journeys(tmp_path / "events.jsonl")
    result = runner.invoke(app, ["rules", "preview", str(STARTER), "--events", str(events), "--until", "2026-03-01T00:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "rfm_champions" in result.stdout and "Micro-segments" in result.stdout
    assert "customers per cell" in result.stdout and "by time alone" in result.stdout


def test_schema_export_matches_the_committed_files(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema", "--out", str(tmp_path)])
    assert result.exit_code == 0
    committed = Path(__file__).parents[3] / "schemas" / "json"
    for path in tmp_path.rglob("*.json"):
        assert (committed / path.relative_to(tmp_path)).read_bytes() == path.read_bytes(), f"run 'microseg schema' to refresh {path.name}"


CUSTOM_EVENTS = """version: 1
events:
  - type: trial_started
    description: A free trial began
    props:
      plan: string
      seats: number?
  - type: purchase
    props:
      coupon: string?
traits:
  - id: last_plan
    events: [trial_started]
    aggregate: last
    value: prop('plan')
"""


def test_schema_with_rules_adds_their_event_types_and_traits(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "custom.yaml").write_text(CUSTOM_EVENTS)
    out = tmp_path / "out"
    result = runner.invoke(app, ["schema", "--rules", str(rules), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out / "props" / "trial_started.schema.json") in result.stdout.split()
    trial = orjson.loads((out / "props" / "trial_started.schema.json").read_bytes())
    assert trial["required"] == ["plan"] and set(trial["properties"]) == {"plan", "seats"}
    assert "coupon" in orjson.loads((out / "props" / "purchase.schema.json").read_bytes())["properties"]
    assert "trial_started" in orjson.loads((out / "customer-event.schema.json").read_bytes())["properties"]["type"]["enum"]
    assert "last_plan" in orjson.loads((out / "customer-dna.schema.json").read_bytes())["properties"]
    committed = Path(__file__).parents[3] / "schemas" / "json"
    assert (out / "segment-change.schema.json").read_bytes() == (committed / "segment-change.schema.json").read_bytes()

    assert runner.invoke(app, ["schema", "--rules", str(rules)]).exit_code == 2  # not over the packaged files
    (rules / "custom.yaml").write_text(CUSTOM_EVENTS.replace("plan: string", "plan: text"))
    bad = runner.invoke(app, ["schema", "--rules", str(rules), "--out", str(out)])
    assert bad.exit_code == 1 and f"{rules / 'custom.yaml'}:6:" in bad.output, bad.output


# -- an unreachable broker: one line, at once, exit code 2 --------------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

from microseg.engine.kafka.broker import free_port  # noqa: E402


@pytest.mark.parametrize(
    "command",
    [["produce", "EVENTS"], ["rules", "publish", str(STARTER)], ["worker"], ["simulate", "--customers", "2", "--days", "1", "--to-topic"]],
    ids=["produce", "rules-publish", "worker", "simulate-to-topic"],
)
def test_unreachable_broker_is_one_line_within_5_s_and_exit_2(command: list[str], tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(event_bytes("c-1", "session_started", "2026-01-05T00:00:00Z") + b"\n")
    port = free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROSEG_")}
    env |= {"MICROSEG_BROKER": f"127.0.0.1:{port}", "MICROSEG_DATA_DIR": str(tmp_path / "data"), "MICROSEG_WEB_PORT": "0"}
    env["MICROSEG_ERASURE_SECRET"] = "0123456789abcdef0123"  # a worker on a real broker needs one
    argv = [str(events) if arg == "EVENTS" else arg for arg in command]
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-W", "ignore", "-m", "microseg", *argv], env=env, capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - started
    print(f"\n{' '.join(command)}: exit {done.returncode} after {seconds:.2f} s")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"error: cannot reach the broker at 127.0.0.1:{port}: Connection refused"], done.stderr
    assert seconds < 5.0


def test_rules_preview_shows_trait_distributions(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "traits.yaml").write_text(
        "version: 1\n"
        "traits:\n"
        "  - {id: views_7d, events: [product_viewed], aggregate: count, window: 7d}\n"
        "  - {id: last_category, events: [product_viewed], aggregate: last, value: \"prop('category')\"}\n"
        "segments:\n"
        "  - {id: browsing, when: views_7d >= 2}\n"
    )
    events = tmp_path / "events.jsonl"
    lines = [event_bytes(f"c{i}", "product_viewed", f"2026-03-0{1 + i}T10:00:00Z", product_id="p", category="shoes" if i else "hats") for i in range(3)]
    lines.append(event_bytes("c2", "product_viewed", "2026-03-03T11:00:00Z", product_id="p", category="shoes"))
    events.write_bytes(b"\n".join(lines) + b"\n")
    result = runner.invoke(app, ["rules", "preview", str(rules), "--events", str(events), "--no-model"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "views_7d" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["views_7d", "3", "1", "1", "2", "2"]
    category = [cell.strip() for cell in next(line for line in result.stdout.splitlines() if "last_category" in line).split("│")[1:-1]]
    assert category[0] == "last_category" and category[-1] == "shoes (2), hats (1)"


def test_rules_check_counts_in_the_singular_and_says_a_file_is_not_a_rules_directory(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "one.yaml").write_text("version: 1\nsegments:\n  - {id: buyer, when: purchases_total >= 1}\n")
    done = CliRunner().invoke(app, ["rules", "check", str(rules)])
    assert done.exit_code == 0 and "ok: 1 segment, 0 dimensions, 0 messages;" in done.stdout, done.output
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    refused = CliRunner().invoke(app, ["rules", "check", str(events)])
    assert refused.exit_code != 0 and "is a file, not a rules directory" in refused.output and "not found" not in refused.output


def test_as_live_counts_stale_only_for_a_held_decision_whose_validity_ran_out_and_says_so(tmp_path: Path) -> None:
    """--as-live decides each decision at its own time: no stale for lag. A decision held for
    consent and re-decided after its expires_at is stale as it would be live (help and docs say so)."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(
        "version: 1\nsegments:\n  - {id: buyer, when: purchases_total >= 1}\n"
        "messages:\n  - {id: thanks, segments: [buyer], channel: email, priority: 1, cooldown: 30d, valid_for: 1d}\n"
    )
    events = tmp_path / "events.jsonl"
    def consent(customer: str, ts: str, n: int) -> bytes:
        return orjson.dumps({"event_id": f"g{n}", "customer_id": customer, "type": "consent_changed", "ts": ts, "props": {"channel": "email", "granted": True}})

    events.write_bytes(b"\n".join([
        consent("c-ok", "2026-01-01T09:00:00Z", 1),
        event_bytes("c-ok", "purchase", "2026-01-01T10:00:00Z", order_id="o1", amount=5),
        event_bytes("c-late", "purchase", "2026-01-01T10:00:00Z", order_id="o2", amount=5),  # no consent: held
        consent("c-late", "2026-01-05T10:00:00Z", 2),  # re-decided after its expires_at (10:00 + 1d)
    ]) + b"\n")
    done = runner_json(["replay", str(events), "--rules", str(rules), "--as-live", "--json", "--no-model"])
    assert done["messages"] == 1 and done["suppressed"].get("consent") == 1 and done["suppressed"].get("stale") == 1
    help_text = " ".join(CliRunner().invoke(app, ["replay", "--help"], terminal_width=400).output.split())
    assert "nothing stale" not in help_text and "held back" in help_text


def runner_json(args: list[str]) -> dict:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout.strip().splitlines()[-1])
