"""The chart values of issue 15 that fit it to the platform (docs/helm.md): the Akua CA bundle,
ServiceMonitor/PodMonitor options, CRDs managed by the chart (`crds.*`), the `helm test` hook, the
PrometheusRule and the Grafana dashboard. Rendered and linted with the real helm; what the real API
server can check (server-side dry-run, installs, upgrades) runs against the session's control plane.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_chart import (
    CHART,
    by_kind,
    chart_with_crd_in_crds_dir,
    container,
    env_of,
    helm_template,
    one,
    run,
    uid,
)


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


@pytest.fixture
def release(helm: Any, namespace: str) -> Iterator[str]:
    """A release name unique in the session; uninstalled afterwards."""
    name = f"r{uid()}"
    yield name
    helm("uninstall", name, "-n", namespace, "--wait=false", check=False)


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
    "honorLabels=false",
)
RELABELED_ENDPOINT = {
    "port": "metrics",
    "path": "/metrics",
    "interval": "30s",
    "scrapeTimeout": "10s",
    "honorLabels": False,
    "relabelings": [{"targetLabel": "cluster", "replacement": "prod-eu"}],
    "metricRelabelings": [
        {"action": "drop", "sourceLabels": ["__name__"], "regex": "python_gc_.*"}
    ],
}
PLAIN_ENDPOINT = {
    "port": "metrics",
    "path": "/metrics",
    "interval": "30s",
    "scrapeTimeout": "10s",
    "honorLabels": True,  # the per-object series keep the AkuaCluster's namespace label
}


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


# --------------------------------------------------------------------------- crds.enabled / keep

CRD_NAME = "akuaclusters.akua.dev"
GENERATED_CRD = CHART / "files" / "crds" / f"{CRD_NAME}.yaml"
PEERING_CRDS = ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")


def crds_of(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return by_kind(docs, "CustomResourceDefinition")


def test_the_crd_is_rendered_kept_and_labelled_by_default(
    testbin: Path, offline_env: dict[str, str]
) -> None:
    generated = yaml.safe_load(GENERATED_CRD.read_text())
    docs = helm_template(testbin, offline_env, "commonLabels.team=platform")
    (crd,) = crds_of(docs)  # the AkuaCluster CRD only: the peering CRDs stay in crds/
    assert crd["metadata"]["name"] == CRD_NAME
    assert crd["spec"] == generated["spec"]  # the generated CRD, byte for byte in meaning
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    labels = crd["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "rel"
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert labels["team"] == "platform"
    # Helm's own crds/ now holds kopf's peering CRDs alone (installed if missing, never owned).
    shown = run([testbin / "helm", "show", "crds", CHART], offline_env).stdout
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(shown) if d}
    assert names == set(PEERING_CRDS)
    lint(testbin, offline_env)


@pytest.mark.parametrize(
    ("sets", "annotations"),
    [
        (["crds.keep=false"], {}),
        (["crds.enabled=false"], None),
        (["crds.enabled=false", "crds.keep=false"], None),
    ],
    ids=["not-kept", "disabled", "disabled-not-kept"],
)
def test_crds_values_off(
    testbin: Path, offline_env: dict[str, str], sets: list[str], annotations: dict[str, str] | None
) -> None:
    lint(testbin, offline_env, *sets)
    crds = crds_of(helm_template(testbin, offline_env, *sets))
    if annotations is None:
        assert crds == []
    else:
        (crd,) = crds
        assert (crd["metadata"].get("annotations") or {}) == annotations


def _akuacluster(kubectl: Any, namespace: str, name: str) -> str:
    kubectl.apply(
        {
            "apiVersion": "akua.dev/v1alpha1",
            "kind": "AkuaCluster",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"name": name, "regionId": "reg_test"},
        }
    )
    return str(kubectl.json("get", "akc", name, "-n", namespace)["metadata"]["uid"])


def _owner(kubectl: Any, crd: str) -> tuple[str | None, str | None]:
    annotations = kubectl.json("get", "crd", crd)["metadata"].get("annotations") or {}
    return annotations.get("meta.helm.sh/release-name"), annotations.get("helm.sh/resource-policy")


@pytest.mark.parametrize("adopt", ["take-ownership", "label"])
def test_upgrade_from_the_chart_with_the_crd_in_crds_dir_keeps_the_crd_and_the_akuaclusters(
    helm: Any, kubectl: Any, namespace: str, release: str, tmp_path: Path, adopt: str
) -> None:
    """docs/helm.md "Upgrading, and the CRDs": from a release whose CRD came from crds/ (the
    chart before crds.enabled), a plain `helm upgrade` refuses to adopt it and changes nothing;
    `--take-ownership` (Helm >= 3.17) or Helm's ownership label and annotations adopt it; the
    AkuaClusters survive the upgrade and the uninstall; kopf's peering CRDs never belong to the
    release."""
    helm("install", release, chart_with_crd_in_crds_dir(tmp_path / "today"), "-n", namespace)
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    uid = _akuacluster(kubectl, namespace, "survivor")

    refused = helm("upgrade", release, CHART, "-n", namespace, check=False)
    assert refused.returncode != 0
    assert f'CustomResourceDefinition "{CRD_NAME}"' in refused.stderr
    assert "cannot be imported into the current release" in refused.stderr
    assert _owner(kubectl, CRD_NAME)[0] != release

    # The documented command, with either way of adopting the CRD.
    upgrade = ["upgrade", release, CHART, "-n", namespace, "--reset-then-reuse-values"]
    if adopt == "take-ownership":
        upgrade.append("--take-ownership")
    else:
        kubectl("label", "--overwrite", "crd", CRD_NAME, "app.kubernetes.io/managed-by=Helm")
        kubectl(
            "annotate", "--overwrite", "crd", CRD_NAME,
            f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
        )  # fmt: skip
    result = helm(*upgrade)
    assert "STATUS: deployed" in result.stdout
    assert _owner(kubectl, CRD_NAME) == (release, "keep")
    assert kubectl.json("get", "akc", "survivor", "-n", namespace)["metadata"]["uid"] == uid
    # The CRD is served as the chart renders it (the release upgrades it from now on).
    live = kubectl.json("get", "crd", CRD_NAME)
    assert live["spec"]["versions"] == yaml.safe_load(GENERATED_CRD.read_text())["spec"]["versions"]
    # A second upgrade needs nothing special.
    helm("upgrade", release, CHART, "-n", namespace, "--reuse-values", "--set", "replicaCount=2")

    helm("uninstall", release, "-n", namespace)
    assert kubectl.json("get", "akc", "survivor", "-n", namespace)["metadata"]["uid"] == uid
    assert kubectl("get", "crd", CRD_NAME, check=False).returncode == 0
    for crd in PEERING_CRDS:
        meta = kubectl.json("get", "crd", crd)["metadata"]
        assert "meta.helm.sh/release-name" not in (meta.get("annotations") or {}), crd
        assert (meta.get("labels") or {}).get("app.kubernetes.io/managed-by") != "Helm", crd
    kubectl("delete", "akc", "survivor", "-n", namespace, "--wait=false")


def test_crds_enabled_false_never_deletes_the_crd(
    helm: Any, kubectl: Any, namespace: str, release: str
) -> None:
    """Without crds.keep, turning crds.enabled off would make Helm delete the CRD (and every
    AkuaCluster): the chart refuses; with keep, Helm leaves the CRD when it leaves the release."""
    helm("install", release, CHART, "-n", namespace, "--take-ownership")
    try:
        # Turned off by an upgrade (Helm's three-way merge then removes the live annotation; an
        # install over a CRD that already carries it would leave it).
        helm("upgrade", release, CHART, "-n", namespace, "--set", "crds.keep=false")
        assert _owner(kubectl, CRD_NAME) == (release, None)
        uid = _akuacluster(kubectl, namespace, "kept")
        refused = helm(
            "upgrade", release, CHART, "-n", namespace, "--reuse-values",
            "--set", "crds.enabled=false", check=False,
        )  # fmt: skip
        assert refused.returncode != 0
        assert f"crds.enabled=false would make Helm DELETE the CRD {CRD_NAME}" in refused.stderr
        assert _owner(kubectl, CRD_NAME) == (release, None)
    finally:  # never leave a release that would delete the shared CRD on uninstall
        helm(
            "upgrade", release, CHART, "-n", namespace, "--reuse-values", "--set", "crds.keep=true"
        )
    assert _owner(kubectl, CRD_NAME) == (release, "keep")
    helm(
        "upgrade", release, CHART, "-n", namespace, "--reuse-values", "--set", "crds.enabled=false"
    )
    assert kubectl.json("get", "akc", "kept", "-n", namespace)["metadata"]["uid"] == uid
    assert kubectl("get", "crd", CRD_NAME, check=False).returncode == 0
    kubectl("delete", "akc", "kept", "-n", namespace, "--wait=false")
