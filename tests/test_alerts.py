"""deploy/alerts.yml: valid for Prometheus (``promtool check rules``), its alerts fire when they should
(``promtool test rules deploy/alerts.test.yml``), it names only metrics the worker exports, and the
compose stack loads it. promtool comes with Debian's ``prometheus`` package (.ci/run installs it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from microseg.engine.worker.metrics import Metrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")

EXPECTED = {
    "MicrosegWorkerDown",
    "MicrosegWorkerNotReady",
    "MicrosegConsumerLagGrowing",
    "MicrosegDeadLetterRate",
    "MicrosegRuleSetRefused",
    "MicrosegModelRefused",
    "MicrosegNoEvents",
    "MicrosegRulesDisagree",
}


def _rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120)


@needs_promtool
def test_promtool_accepts_the_rules_and_the_config() -> None:
    checked = _promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(EXPECTED)} rules found" in checked.stdout
    config = _promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


@needs_promtool
def test_the_alerts_fire_when_they_should() -> None:
    tested = _promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@needs_promtool
def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation makes promtool fail: the unit tests really compare what fires."""
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text())
    broken = (DEPLOY / "alerts.test.yml").read_text().replace("is 15100 records", "is 15000 records")
    assert "15000" in broken
    (tmp_path / "alerts.test.yml").write_text(broken)
    result = subprocess.run([PROMTOOL or "promtool", "test", "rules", "alerts.test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "MicrosegConsumerLagGrowing" in result.stdout + result.stderr


def test_every_alert_is_present_and_unit_tested() -> None:
    names = {rule["alert"] for rule in _rules()}
    assert names == EXPECTED
    tested = {case["alertname"] for test in yaml.safe_load((DEPLOY / "alerts.test.yml").read_text())["tests"] for case in test["alert_rule_test"]}
    assert tested == EXPECTED
    for rule in _rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_alerts_name_only_metrics_the_worker_exports() -> None:
    exported = set()
    for family in Metrics().registry.collect():
        exported.add(family.name + "_total" if family.type == "counter" else family.name)
        exported.update(sample.name for sample in family.samples)
    used = {name for rule in _rules() for name in re.findall(r"\bmicroseg_[a-z_]+", rule["expr"])}
    assert used, "the rules name no microseg metric"
    assert used <= exported, f"not exported by engine/worker/metrics.py: {sorted(used - exported)}"
    assert {"microseg_consumer_lag", "microseg_events_rejected_total", "microseg_rule_errors_total", "microseg_events_processed_total", "microseg_ready"} <= used


def test_prometheus_and_compose_load_the_alerts() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    prometheus = next(s for s in compose["services"].values() if str(s.get("image", "")).startswith("prom/prometheus:"))
    assert "./deploy/alerts.yml:/etc/prometheus/alerts.yml:ro" in prometheus["volumes"]
