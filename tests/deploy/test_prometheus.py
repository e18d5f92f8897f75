"""deploy/prometheus and deploy/grafana: the alert rules pass ``promtool check rules``
and their unit tests (``promtool test rules``), and every PromQL expression of the
rules and the dashboard names only the metrics revsync agreed to export.

promtool comes with Debian's ``prometheus`` package (.ci/run installs it).  Without
it these tests skip, except under REVSYNC_REQUIRE_SERVICES=1, where they fail.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.processes import run
from tests.conftest import REQUIRE_SERVICES, ROOT

RULES = ROOT / "deploy" / "prometheus" / "revsync-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "revsync-rules.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "revsync.json"
INSTALL = "apt-get install -y --no-install-recommends prometheus"

# The names revsync exports (issue 13's agreement); histograms as exposed.
GAUGES = {
    "revsync_ready",
    "revsync_backfilled",
    "revsync_last_sync_timestamp_seconds",
    "revsync_store_epoch",
    "revsync_entries",
}
COUNTERS = {
    "revsync_store_resets_total",
    "revsync_store_write_failures_total",
    "revsync_store_pruned_rows_total",
    "revsync_publish_failures_total",
    "revsync_resync_failures_total",
}
HISTOGRAMS = {"revsync_propagation_lag_seconds", "revsync_store_write_duration_seconds"}
AGREED = (
    GAUGES
    | COUNTERS
    | {f"{h}_{suffix}" for h in HISTOGRAMS for suffix in ("bucket", "sum", "count")}
)
ALERTS = {
    "RevsyncNodeStale": {"revsync_last_sync_timestamp_seconds"},
    "RevsyncNodeNotReady": {"revsync_ready"},
    "RevsyncPropagationLagHigh": {"revsync_propagation_lag_seconds_bucket"},
    "RevsyncStoreWriteFailures": {"revsync_store_write_failures_total"},
    "RevsyncStoreGenerationChanged": {"revsync_store_resets_total"},
}
# What a PromQL expression may call, and its keywords.
FUNCTIONS = {
    "abs", "absent", "avg", "ceil", "changes", "clamp_min", "count", "delta", "deriv",
    "histogram_quantile", "increase", "irate", "max", "max_over_time", "min", "min_over_time",
    "quantile", "rate", "resets", "round", "scalar", "sort", "sum", "time", "timestamp", "topk",
    "vector",
}  # fmt: skip
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "and", "or", "unless", "inf", "nan"}  # fmt: skip


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        msg = f"promtool is not installed ({INSTALL})"
        if REQUIRE_SERVICES:
            pytest.fail(f"{msg}, and REVSYNC_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip(msg)
    return binary


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _exprs(node: Any) -> Iterator[str]:
    """Every ``expr`` of a Grafana dashboard, panels in rows included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def _metric_names(expr: str) -> set[str]:
    """The metric names an expression reads; fails on an unknown function."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    names: set[str] = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match[0]
        if re.match(r"\s*\(", text[match.end() :]):
            assert word in FUNCTIONS, f"{word}() in {expr!r} is not a function used here"
        elif word.lower() not in KEYWORDS:
            names.add(word)
    return names


def test_promtool_check_rules() -> None:
    proc = run([_promtool(), "check", "rules", str(RULES)], timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in proc.stdout


def test_promtool_unit_tests() -> None:
    proc = run([_promtool(), "test", "rules", str(RULE_TESTS)], cwd=RULE_TESTS.parent, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests are real: an alert whose threshold drifted fails them."""
    stale = "revsync_last_sync_timestamp_seconds > 60\n"
    assert stale in RULES.read_text()
    (tmp_path / RULES.name).write_text(RULES.read_text().replace(stale, stale[:-1] + "0\n"))
    assert (tmp_path / RULES.name).read_text() != RULES.read_text()
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    proc = run([_promtool(), "test", "rules", RULE_TESTS.name], cwd=tmp_path, timeout=60)
    assert proc.returncode != 0
    assert "RevsyncNodeStale" in proc.stdout + proc.stderr


def test_every_alert_is_unit_tested() -> None:
    tested = yaml.safe_load(RULE_TESTS.read_text())
    cases = [c for test in tested["tests"] for c in test["alert_rule_test"]]
    alerts = {rule["alert"] for rule in _rules()}
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert fired == alerts, alerts - fired
    assert quiet == alerts, alerts - quiet  # and each is shown not to fire too early


def test_rules_alert_on_the_agreed_metrics() -> None:
    by_alert = {rule["alert"]: _metric_names(rule["expr"]) for rule in _rules()}
    for alert, names in by_alert.items():
        assert names, alert
        assert names <= AGREED, f"{alert} reads unknown metrics {names - AGREED}"
        assert rule_severity(alert) in {"warning", "critical"}
    for alert, names in ALERTS.items():
        assert by_alert[alert] == names, alert


def rule_severity(alert: str) -> str:
    (rule,) = [r for r in _rules() if r["alert"] == alert]
    severity: str = rule["labels"]["severity"]
    return severity


def test_name_checker_refuses_unknown_metrics() -> None:
    assert _metric_names('sum by (job) (rate(revsync_x_total{a="b"}[5m]))') == {"revsync_x_total"}
    assert _metric_names("time() - revsync_last_sync_timestamp_seconds > 60") == {
        "revsync_last_sync_timestamp_seconds"
    }
    with pytest.raises(AssertionError, match="not a function"):
        _metric_names("label_replace(revsync_ready, 'a', 'b', 'c', 'd')")


def test_dashboard_reads_only_agreed_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(_exprs(dashboard))
    assert len(exprs) >= 10
    read: set[str] = set()
    for expr in exprs:
        names = _metric_names(expr)
        assert names, expr
        assert names <= AGREED, f"{expr!r} reads {names - AGREED}"
        read |= names
    # The panels cover every agreed metric family.
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in read}
    assert families == GAUGES | COUNTERS | HISTOGRAMS


def test_dashboard_is_a_grafana_dashboard(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
    # promtool parses every expression (as recording rules: it has no lone-query check).
    records = [
        {"record": f"revsync:dashboard_{i}", "expr": expr}
        for i, expr in enumerate(_exprs(dashboard))
    ]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    proc = run([_promtool(), "check", "rules", str(path)], timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
