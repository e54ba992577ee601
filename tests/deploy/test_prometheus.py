"""deploy/prometheus/ and deploy/grafana/: alerting rules and a dashboard that real tools accept.

`promtool` (Debian's `prometheus` package, which `scripts/bootstrap.sh --with-browser`
installs) checks the rules and runs their unit tests; a real Prometheus server scrapes the
web's GET /metrics, served by gunicorn started from the Procfile's `web` line, loads the rules
and answers for every series that the rules and the dashboard use, and for every one of their
expressions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_kubernetes import of_kind, procfile
from tests.observability.scrape import free_port
from tests.support import ROOT, ChildProcess, wait_for

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "fitness.json"


def tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} not found: `scripts/bootstrap.sh --with-browser` installs Debian's prometheus package")
    return path


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def rule_expressions() -> list[str]:
    return [rule["expr"] for rule in rules()]


# --- metric names out of PromQL ------------------------------------------------------------

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
                "quantile", "limitk", "limit_ratio"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
            "inf", "nan"}


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    text = re.sub(r"\boffset\s+\w+", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS or name in AGGREGATIONS:
            continue
        names.add(name)
    return names


def test_metric_names_are_found_in_promql():
    assert metric_names('sum by (le) (rate(a_bucket{x="y"}[5m])) / on(q) group_left b offset 5m') == {"a_bucket", "b"}
    assert metric_names('count(c{kind="work"} == 0) or vector(0)') == {"c"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(h_bucket[10m]))) > 15") == {"h_bucket"}


def used_series() -> set[str]:
    names = set().union(*map(metric_names, rule_expressions() + dashboard_expressions()))
    assert {"fitness_queue_messages_ready", "fitness_alert_latency_seconds_bucket"} <= names  # the parser works
    return names


# --- promtool -----------------------------------------------------------------------------

def test_promtool_accepts_the_rules():
    result = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_the_rules_pass_their_unit_tests():
    result = subprocess.run([tool("promtool"), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                            timeout=300, cwd=RULE_TESTS.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test_in_which_it_fires():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case["exp_alerts"]}
    assert {rule["alert"] for rule in rules()} == fired


def test_every_alert_has_a_severity_and_a_summary():
    for rule in rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_prometheus_rule_manifest_carries_the_rules_file():
    (manifest,) = of_kind("PrometheusRule").values()
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["spec"] == yaml.safe_load(RULES.read_text())


def test_the_dashboard_asks_the_chosen_prometheus():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    (variable,) = dashboard["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_the_alert_severities_initialized_are_the_faults_severities():
    from monitoring.models import Fault
    from observability.metrics import ALERT_SEVERITIES

    assert set(ALERT_SEVERITIES) == set(Fault.Severity.values)


# --- a real Prometheus scraping the real web ----------------------------------------------------

@pytest.fixture(scope="module")
def web(django_db_setup, django_db_blocker, log_dir):
    """gunicorn from the Procfile's `web` line, on a free port: its base URL."""
    port = free_port()
    process = ChildProcess(["sh", "-c", "exec env " + procfile()["web"]], name="prometheus-web", log_dir=log_dir,
                           ready="Booting worker", PORT=str(port), WEB_CONCURRENCY="1", METRICS_TOKEN=None,
                           PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    process.start(timeout=120)
    try:
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(answers, timeout=120, interval=1, what="gunicorn to serve /metrics")
        yield url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def prometheus(web, tmp_path_factory, log_dir):
    """A Prometheus server of this module's own, scraping the web every second with the rules loaded."""
    directory = tmp_path_factory.mktemp("prometheus")
    target = urllib.parse.urlsplit(web).netloc
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "fitness-web", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [target]}]}],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    # The binary itself, not the Debian service: its own config, storage and port.
    process = ChildProcess(
        [tool("prometheus"), f"--config.file={directory / 'prometheus.yml'}",
         f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        name="prometheus", log_dir=log_dir, ready="Server is ready to receive web requests",
    )
    process.start(timeout=120)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def api(prometheus: str, path: str, **params: str) -> dict:
    url = f"{prometheus}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        body = json.load(exc)
    return body


def test_prometheus_has_every_series_the_rules_and_the_dashboard_use(prometheus):
    def scraped() -> bool:
        result = api(prometheus, "query", query='up{job="fitness-web"}')["data"]["result"]
        return bool(result) and result[0]["value"][1] == "1"

    wait_for(scraped, timeout=120, interval=1, what="Prometheus to scrape the web's /metrics")
    time.sleep(5)  # a few scrapes
    missing = sorted(name for name in used_series()
                     if not api(prometheus, "series", **{"match[]": name})["data"])
    assert missing == []


def test_prometheus_evaluates_every_rule_and_every_dashboard_expression(prometheus):
    def loaded() -> list | None:
        groups = api(prometheus, "rules")["data"]["groups"]
        # a rule not evaluated yet says 0001-01-01T00:00:00Z
        evaluated = [rule for group in groups for rule in group["rules"]
                     if not rule.get("lastEvaluation", "0001").startswith("0001")]
        return groups if len(evaluated) == len(rules()) else None

    groups = wait_for(loaded, timeout=120, interval=1, what="Prometheus to evaluate every rule")
    assert {rule["name"]: rule["health"] for group in groups for rule in group["rules"]} == {
        rule["alert"]: "ok" for rule in rules()
    }
    for expression in dashboard_expressions():
        answer = api(prometheus, "query", query=expression)
        assert answer["status"] == "success", (expression, answer)
