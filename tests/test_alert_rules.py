"""deploy/prometheus/alerts.yml: valid for Prometheus, complete for the one on call, and
each alert proven by its unit tests (alerts.test.yml, run by promtool): they pass, and
they fail when the alert's expression can never be true."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.metrics import REGISTRY
from core.metrics_sources import ScrapeTimeCollector
from tests.live import ROOT

RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULE_TESTS = RULES_DIR / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "aistatus.json"

# The seed's three, and what the on-call engineer of this service needs beside them.
EXPECTED = {
    "ApiResponseTimeHigh", "CacheMemoryNearMax", "DatabasePoolShortage",
    "Http5xxRatioHigh", "StreamErrorRatioHigh", "JobQueueBacklog", "JobQueueHasNoWorker", "SweepRetries",
    "OutboxLag", "DependencyDown", "QueueRedisMemoryNearMax", "AistatusDown",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: Debian's prometheus package (scripts/install_test_deps.sh installs it)")
    return found


def alerts(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def run_rule_tests(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), "test", "rules", "alerts.test.yml"], cwd=directory, capture_output=True, text=True, timeout=60,
        check=False,  # the caller reads the outcome
    )


def test_the_rules_are_valid_for_prometheus():
    checked = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_deployment_configuration_is_valid_with_its_rules_and_token_file(tmp_path):
    config = yaml.safe_load((RULES_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    token_file = tmp_path / "aistatus-token"
    token_file.write_text("a-token")
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "aistatus"  # AistatusDown names it
    job["authorization"]["credentials_file"] = str(token_file)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(RULES, tmp_path / "alerts.yml")

    checked = subprocess.run(
        [promtool(), "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "12 rules found" in checked.stdout


def test_every_alert_says_how_long_how_bad_what_and_what_to_do():
    rules = alerts(yaml.safe_load(RULES.read_text()))
    assert {rule["alert"] for rule in rules} == EXPECTED
    for rule in rules:
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["runbook"]) > 80, rule["alert"]


def test_the_unit_tests_pass_and_see_every_alert_fire():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == EXPECTED

    result = run_rule_tests(RULES_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("expr", ["vector(1) == 0", "vector(1)"], ids=["never-fires", "always-fires"])
@pytest.mark.parametrize("broken", sorted(EXPECTED))
def test_the_unit_tests_fail_when_an_alert_never_or_always_fires(broken, expr, tmp_path):
    rules = yaml.safe_load(RULES.read_text())
    for rule in alerts(rules):
        if rule["alert"] == broken:
            rule["expr"] = expr
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / "alerts.test.yml")

    result = run_rule_tests(tmp_path)

    assert result.returncode != 0
    assert broken in result.stdout + result.stderr


def sample_names() -> set[str]:
    """Every sample name /metrics serves: the metrics counted (core.metrics) and those
    read at the scrape (core.metrics_sources)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    families = [*REGISTRY.collect(), *ScrapeTimeCollector().collect()]
    return {family.name + suffix for family in families for suffix in suffixes.get(family.type, [""])}


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_the_alerts_and_the_dashboard_read_only_metrics_that_exist():
    known = sample_names()
    queries = [rule["expr"] for rule in alerts(yaml.safe_load(RULES.read_text()))] + dashboard_queries()
    read = {name for query in queries for name in re.findall(r"\baistatus_[a-z_]+", query)}
    assert read - known == set()
    assert {"aistatus_db_pool_wait_seconds_total", "aistatus_redis_used_memory_bytes", "aistatus_queue_jobs"} <= read


def test_the_dashboards_queries_are_valid_promql(tmp_path):
    queries = dashboard_queries()
    assert len(queries) >= 20
    # promtool parses the expressions of recording rules: one per query.
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)]}]}
    (tmp_path / "dashboard.yml").write_text(yaml.safe_dump(rules))

    checked = subprocess.run(
        [promtool(), "check", "rules", str(tmp_path / "dashboard.yml")], capture_output=True, text=True, timeout=60,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
