"""``microseg rules test``: rule tests beside the rules, failures and problems with file:line:col,
and test files left out of the rules' version."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from microseg.engine.tools.cli import app
from microseg.engine.tools.rule_tests import run_rule_tests
from microseg.engine.worker.rules_topic import rule_files
from microseg.segments.rulefiles import load_rules

STARTER = Path(__file__).parents[3] / "rules"
RULES = "version: 1\nsegments:\n  - {id: buyer, when: purchases_total >= 1}\n  - {id: quiet, when: days_since_last_activity > 2}\n"
runner = CliRunner()


def _dir(tmp_path: Path, tests: str) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir(parents=True)
    (rules / "a.yaml").write_text(RULES)
    (rules / "a.test.yaml").write_text(tests)
    return rules


def test_the_sample_rule_tests_pass_on_the_starter_rules() -> None:
    result = runner.invoke(app, ["rules", "test", str(STARTER), "--no-model"])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.stdout and "FAIL" not in result.stdout


def test_test_files_are_not_rule_files_and_leave_the_version_alone(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(STARTER, copy)
    with_tests = load_rules(copy).version
    for path in copy.glob("*.test.yaml"):
        path.unlink()
    assert load_rules(copy).version == with_tests
    assert not any(name.endswith(".test.yaml") for name in rule_files(STARTER))


def test_a_failing_expectation_is_reported_at_its_place(tmp_path: Path) -> None:
    rules = _dir(tmp_path, (
        "cases:\n"
        "  - name: bought and went quiet\n"
        "    events:\n"
        "      - {customer: c1, type: purchase, ts: '2026-01-01T10:00:00Z', props: {order_id: o1, amount: 5}}\n"
        "    expect:\n"
        "      - {at: '2026-01-01T10:00:00Z', customer: c1, in: [buyer], not_in: [quiet]}\n"
        "      - {at: '2026-01-02T10:00:00Z', customer: c1, in: [quiet]}\n"
        "      - {at: '2026-01-05T10:00:00Z', customer: c1, only: [buyer, quiet]}\n"
    ))
    results = run_rule_tests(rules, load_rules(rules))
    [case] = results[0].cases
    assert case.checks == 3 and len(case.failures) == 1
    failure = str(case.failures[0])
    assert failure.startswith(f"{rules / 'a.test.yaml'}:7:9: bought and went quiet: at 2026-01-02T10:00:00Z customer 'c1' is not in quiet")
    result = runner.invoke(app, ["rules", "test", str(rules), "--no-model"])
    assert result.exit_code == 1 and "FAIL bought and went quiet" in result.stdout and "a.test.yaml:7:9" in result.stdout


def test_problems_in_a_test_file_have_file_line_col_and_the_other_cases_still_run(tmp_path: Path) -> None:
    rules = _dir(tmp_path, (
        "cases:\n"
        "  - name: unknown segment\n"
        "    events: []\n"
        "    expect:\n"
        "      - {at: '2026-01-01T10:00:00Z', customer: c1, in: [buyers]}\n"
        "  - name: bad instant\n"
        "    events: [{customer: c1, type: purchase, ts: 'yesterday'}]\n"
        "    expect: []\n"
        "  - name: fine\n"
        "    events: [{customer: c9, type: purchase, ts: '2026-01-01T10:00:00Z', props: {order_id: x, amount: 1}}]\n"
        "    expect: [{at: '2026-01-01T10:00:00Z', customer: c9, only: [buyer]}]\n"
    ))
    [result] = run_rule_tests(rules, load_rules(rules))
    problems = [str(p) for p in result.problems]
    assert problems[0].endswith("a.test.yaml:5:57: no segment 'buyers' in these rules")
    assert "a.test.yaml:7:49: 'yesterday' is not an RFC 3339 instant" in problems[1]
    assert [c.name for c in result.cases] == ["fine"] and result.cases[0].passed
    broken = _dir(tmp_path / "b", "cases: [ {name: x\n")
    [result] = run_rule_tests(broken, load_rules(broken))
    assert len(result.problems) == 1 and "a.test.yaml:" in str(result.problems[0]) and "YAML" in str(result.problems[0])


def test_events_the_catalog_refuses_are_problems_at_their_place_not_a_pass(tmp_path: Path) -> None:
    rules = _dir(tmp_path, (
        "cases:\n"
        "  - name: misspelt type\n"
        "    events: [{customer: c1, type: purchace, ts: '2026-01-01T10:00:00Z', props: {order_id: o1, amount: 5}}]\n"
        "    expect: [{at: '2026-01-01T10:00:00Z', customer: c1, only: []}]\n"
        "  - name: cart without its props\n"
        "    events:\n"
        "      - {customer: c2, type: cart_updated, ts: '2026-01-01T10:00:00Z', props: {cart_value: 3}}\n"
        "    expect: [{at: '2026-01-01T10:00:00Z', customer: c2, only: []}]\n"
    ))
    [result] = run_rule_tests(rules, load_rules(rules))
    assert result.cases == []
    problems = [str(p) for p in result.problems]
    assert problems[0].endswith("a.test.yaml:3:35: event refused: unknown event type 'purchace'; did you mean 'purchase'?")
    assert "a.test.yaml:7:79: cart_updated event refused: props.product_id: Field required" in problems[1]
    result = runner.invoke(app, ["rules", "test", str(rules), "--no-model"])
    assert result.exit_code != 0 and "PASS" not in result.stdout
    assert "did you mean 'purchase'?" in result.output
