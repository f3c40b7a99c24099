"""The chart values of issue 15 that fit it to the platform (docs/helm.md): the Akua CA bundle,
ServiceMonitor/PodMonitor options, CRDs managed by the chart (`crds.*`), the `helm test` hook, the
PrometheusRule and the Grafana dashboard. Rendered and linted with the real helm; what the real API
server can check (server-side dry-run, installs, upgrades) runs against the session's control plane.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from test_chart import CHART, by_kind, container, env_of, helm_template, one, run


@pytest.fixture(scope="module")
def offline_env(testbin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for helm commands that need no cluster."""
    home = tmp_path_factory.mktemp("helm-offline")
    env = dict(os.environ)
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
        KUBECONFIG=str(home / "no-kubeconfig"),
    )
    return env


def lint(testbin: Path, env: dict[str, str], *sets: str) -> None:
    args: list[str | Path] = [testbin / "helm", "lint", "--strict", CHART]
    for s in sets:
        args += ["--set", s]
    result = run(args, env)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def template_error(testbin: Path, env: dict[str, str], *sets: str) -> str:
    args: list[str | Path] = [testbin / "helm", "template", "rel", CHART]
    for s in sets:
        args += ["--set", s]
    result = run(args, env, check=False)
    assert result.returncode != 0, "helm template accepted the values"
    return str(result.stderr)


# --------------------------------------------------------------------------- CA bundle


CA_FILE = "/var/run/secrets/akua.dev/ca/ca.crt"


def test_no_ca_bundle_by_default(testbin: Path, offline_env: dict[str, str]) -> None:
    docs = helm_template(testbin, offline_env)
    c = container(docs)
    assert "AKUA_CA_FILE" not in env_of(c)
    assert "akua-ca" not in {m["name"] for m in c["volumeMounts"]}
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert "akua-ca" not in {v["name"] for v in pod["volumes"]}


@pytest.mark.parametrize(
    ("sets", "source"),
    [
        (
            ["akua.caBundle.configMap.name=corp-ca"],
            {"configMap": {"name": "corp-ca", "defaultMode": 0o444, "items": [
                {"key": "ca.crt", "path": "ca.crt"}]}},
        ),
        (
            ["akua.caBundle.secret.name=akua-ca-tls", "akua.caBundle.secret.key=bundle.pem"],
            {"secret": {"secretName": "akua-ca-tls", "defaultMode": 0o444, "items": [
                {"key": "bundle.pem", "path": "ca.crt"}]}},
        ),
    ],
    ids=["configMap", "secret"],
)  # fmt: skip
def test_ca_bundle_is_mounted_read_only_and_named_by_akua_ca_file(
    testbin: Path, offline_env: dict[str, str], sets: list[str], source: dict[str, Any]
) -> None:
    lint(testbin, offline_env, *sets)
    docs = helm_template(testbin, offline_env, *sets)
    c = container(docs)
    assert env_of(c)["AKUA_CA_FILE"] == CA_FILE
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["akua-ca"] == {
        "name": "akua-ca",
        "mountPath": str(Path(CA_FILE).parent),
        "readOnly": True,
    }
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["akua-ca"] == {"name": "akua-ca", **source}


def test_ca_bundle_takes_one_source(testbin: Path, offline_env: dict[str, str]) -> None:
    err = template_error(
        testbin,
        offline_env,
        "akua.caBundle.configMap.name=a",
        "akua.caBundle.secret.name=b",
    )
    assert "akua.caBundle.configMap.name and akua.caBundle.secret.name are both set" in err
    err = template_error(testbin, offline_env, "volumes[0].name=akua-ca", "volumes[0].emptyDir=")
    assert "/volumes/0/name" in err


def test_ca_bundle_passes_server_side_validation(
    testbin: Path, offline_env: dict[str, str], kubectl: Any, namespace: str
) -> None:
    docs = helm_template(
        testbin, offline_env, "akua.caBundle.secret.name=corp-ca", namespace=namespace
    )
    dep = one(docs, "Deployment")
    out = kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(dep))
    accepted = json.loads(out.stdout)
    volumes = {v["name"]: v for v in accepted["spec"]["template"]["spec"]["volumes"]}
    assert volumes["akua-ca"]["secret"]["defaultMode"] == 0o444
    assert by_kind(docs, "Deployment") == [dep]


# ---------------------------------------------------------------- ServiceMonitor, PodMonitor

RELABEL_SETS = (
    "relabelings[0].targetLabel=cluster",
    "relabelings[0].replacement=prod-eu",
    "metricRelabelings[0].action=drop",
    "metricRelabelings[0].sourceLabels={__name__}",
    "metricRelabelings[0].regex=python_gc_.*",
    "honorLabels=true",
)
RELABELED_ENDPOINT = {
    "port": "metrics",
    "path": "/metrics",
    "interval": "30s",
    "scrapeTimeout": "10s",
    "honorLabels": True,
    "relabelings": [{"targetLabel": "cluster", "replacement": "prod-eu"}],
    "metricRelabelings": [
        {"action": "drop", "sourceLabels": ["__name__"], "regex": "python_gc_.*"}
    ],
}
PLAIN_ENDPOINT = {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}


def test_service_monitor_relabelings_and_honor_labels(
    testbin: Path, offline_env: dict[str, str]
) -> None:
    sets = ["metrics.serviceMonitor.enabled=true"]
    assert one(helm_template(testbin, offline_env, *sets), "ServiceMonitor")["spec"][
        "endpoints"
    ] == [PLAIN_ENDPOINT]
    sets += [f"metrics.serviceMonitor.{s}" for s in RELABEL_SETS]
    lint(testbin, offline_env, *sets)
    docs = helm_template(testbin, offline_env, *sets)
    assert one(docs, "ServiceMonitor")["spec"]["endpoints"] == [RELABELED_ENDPOINT]
    assert not by_kind(docs, "PodMonitor")


def test_pod_monitor_is_the_alternative_with_the_same_options(
    testbin: Path, offline_env: dict[str, str]
) -> None:
    assert not by_kind(helm_template(testbin, offline_env), "PodMonitor")
    sets = [
        "metrics.podMonitor.enabled=true",
        "metrics.podMonitor.labels.release=prom",
        "metrics.podMonitor.namespace=monitoring",
        "metrics.service.enabled=false",  # a PodMonitor needs no Service
    ]
    lint(testbin, offline_env, *sets)
    docs = helm_template(testbin, offline_env, *sets)
    pm = one(docs, "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["metadata"]["namespace"] == "monitoring"
    assert pm["metadata"]["labels"]["release"] == "prom"
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["akua-system"]}
    assert pm["spec"]["podMetricsEndpoints"] == [PLAIN_ENDPOINT]
    # It selects exactly the operator pods, and "metrics" is their container port's name.
    dep = one(docs, "Deployment")
    assert pm["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert "metrics" in {p["name"] for p in container(docs)["ports"]}
    assert not by_kind(docs, "ServiceMonitor") and not by_kind(docs, "Service")
    sets += [f"metrics.podMonitor.{s}" for s in RELABEL_SETS]
    lint(testbin, offline_env, *sets)
    pm = one(helm_template(testbin, offline_env, *sets), "PodMonitor")
    assert pm["spec"]["podMetricsEndpoints"] == [RELABELED_ENDPOINT]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true"],
            "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled are both true",
        ),
        (
            ["metrics.podMonitor.relabelings[0].action=rename"],
            "at '/metrics/podMonitor/relabelings/0/action': value must be one of",
        ),
        (
            ["metrics.serviceMonitor.metricRelabelings[0].sourcelabels={a}"],
            "additional properties 'sourcelabels' not allowed",
        ),
        (["metrics.podMonitor.honorLabels=maybe"], "/metrics/podMonitor/honorLabels"),
    ],
    ids=["both", "bad-action", "typo", "not-bool"],
)
def test_bad_monitor_values_are_refused(
    testbin: Path, offline_env: dict[str, str], sets: list[str], message: str
) -> None:
    assert message in template_error(testbin, offline_env, *sets)
