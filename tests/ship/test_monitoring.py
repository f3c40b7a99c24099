"""The chart's monitoring files: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`, tests/ship/monitoring/*.test.yaml), and every metric the rules and the
Grafana dashboard query is one the operator exports.

promtool is built from the Prometheus Go module by hack/testbin/build.sh, like the control-plane
binaries; a testbin without it fails these tests (rebuild it), never skips them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.core import Metric

from akua_operator.akua.metrics import ClientStats
from akua_operator.telemetry import Telemetry

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "charts" / "akua-operator" / "files" / "monitoring"
RULES = MONITORING / "rules.yaml"
DASHBOARD = MONITORING / "dashboard.json"
RULE_TESTS = sorted((Path(__file__).parent / "monitoring").glob("*.test.yaml"))

#: Series the queries may use that the operator does not export itself.
EXTERNAL = {
    "up",  # Prometheus's own per-target series (AkuaOperatorDown)
    "kube_pod_status_ready",  # kube-state-metrics: the kubelet's verdict (AkuaOperatorNotReady)
}

# PromQL words that are not metric names.
_PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "absent", "absent_over_time", "histogram_quantile", "sort", "sort_desc",
    "label_replace", "label_join", "max_over_time", "min_over_time", "avg_over_time",
    "sum_over_time", "count_over_time", "last_over_time", "clamp_min", "clamp_max", "vector",
    "scalar", "time", "abs", "ceil", "floor", "round", "changes", "resets", "timestamp",
}  # fmt: skip
_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "info": ("_info",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
}


def promtool(testbin: Path) -> Path:
    path = testbin / "promtool"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"{path} is missing: this testbin was built before build.sh built promtool. "
            'Rebuild: export AKUA_TESTBIN="$(hack/testbin/build.sh | tail -n1)"'
        )
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )


def versions() -> dict[str, str]:
    text = (REPO_ROOT / "hack" / "testbin" / "versions.env").read_text()
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.strip().startswith("#")}


def test_promtool_is_the_pinned_version(testbin: Path) -> None:
    module = versions()["PROMETHEUS_MODULE_VERSION"]  # v0.316.0 is Prometheus 3.16.0
    minor = int(module.removeprefix("v0.").split(".")[0])
    patch = module.split(".")[2]
    result = run(promtool(testbin), "--version")
    assert result.returncode == 0, result.stderr
    assert f"version {minor // 100}.{minor % 100}.{patch}" in result.stdout + result.stderr


def test_rules_pass_promtool_check(testbin: Path) -> None:
    result = run(promtool(testbin), "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout + result.stderr


def test_rule_unit_tests_pass(testbin: Path) -> None:
    assert RULE_TESTS, "no tests/ship/monitoring/*.test.yaml"
    result = run(promtool(testbin), "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_a_broken_rule_unit_test_fails(testbin: Path, tmp_path: Path) -> None:
    """The rule tests can fail: the same test expecting another object does not pass."""
    (original,) = [p for p in RULE_TESTS if p.name == "rules.test.yaml"]
    text = original.read_text().replace("name: prod", "name: not-prod", 1)
    broken = tmp_path / "broken.test.yaml"
    broken.write_text(text.replace("../../../charts", str(REPO_ROOT / "charts")))
    result = run(promtool(testbin), "test", "rules", broken)
    assert result.returncode != 0
    assert "AkuaDeletionHeld" in result.stdout + result.stderr


def test_every_alert_names_what_it_is_about() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"]}
    assert set(alerts) == {
        "AkuaDeletionHeld",
        "AkuaResourceStalled",
        "AkuaApiErrors",
        "AkuaApiRateLimited",
        "AkuaOperatorDown",
        "AkuaOperatorNotReady",
    }
    for name in ("AkuaDeletionHeld", "AkuaResourceStalled"):
        summary = alerts[name]["annotations"]["summary"]
        assert "{{ $labels.namespace }}/{{ $labels.name }}" in summary
    for rule in alerts.values():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}


def exported_names() -> set[str]:
    """Every sample name the operator's registry exposes, with the families' suffixes."""
    tel = Telemetry(process_metrics=True)
    stats = ClientStats()
    stats.observe("GET /clusters/{id}", "200", 0.01)  # so the latency is a histogram
    tel.attach_client(stats)
    names: set[str] = set()
    families: Iterator[Metric] = iter(tel.metrics.registry.collect())
    for family in families:
        for suffix in _SAMPLE_SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (good enough for our own queries)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {w for w in words if w not in _PROMQL_WORDS and not re.fullmatch(r"e|Inf|NaN", w)}


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []
    for panel in dashboard["panels"]:
        exprs.extend(target["expr"] for target in panel.get("targets", []))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            inner = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query["query"])
            assert inner, query
            exprs.append(inner.group(1))
    return exprs


def test_the_name_parser_sees_metric_names() -> None:
    assert metric_names(
        'sum by (namespace, job) (rate(a_total{status=~"5..|x"}[5m])) / on (job) b'
    ) == {"a_total", "b"}


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_every_queried_metric_is_exported(source: str) -> None:
    exprs = rule_expressions() if source == "rules" else dashboard_expressions()
    assert exprs
    queried = set().union(*(metric_names(e) for e in exprs))
    allowed = exported_names() | EXTERNAL
    assert queried - allowed == set()


def test_the_dashboard_is_a_grafana_dashboard_for_the_sidecar() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "akua-operator"
    assert dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job"} <= variables
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
