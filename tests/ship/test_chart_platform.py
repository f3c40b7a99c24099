"""The chart values of issue 15 that fit it to the platform (docs/helm.md): the Akua CA bundle,
ServiceMonitor/PodMonitor options, CRDs managed by the chart (`crds.*`), the `helm test` hook, the
PrometheusRule and the Grafana dashboard. Rendered and linted with the real helm; what the real API
server can check (server-side dry-run, installs, upgrades) runs against the session's control plane.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
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

from chart_pod import run_like_the_pod
from controlplane import free_port


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


# --------------------------------------------------------------------------- helm test hook


def hook_objects(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        d["kind"]: d
        for d in docs
        if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"
    }


def test_helm_test_hook_renders_a_locked_down_pod_and_a_service(
    testbin: Path, offline_env: dict[str, str]
) -> None:
    docs = helm_template(testbin, offline_env, "podDisruptionBudget.enabled=true", tests=True)
    hooks = hook_objects(docs)
    assert set(hooks) == {"Pod", "Service"}
    pod, svc = hooks["Pod"], hooks["Service"]
    for obj in (pod, svc):
        policy = obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
        assert policy == "before-hook-creation,hook-succeeded"
    assert svc["metadata"]["annotations"]["helm.sh/hook-weight"] == "-1"  # before the Pod
    dep = one(docs, "Deployment")
    # The Service reaches the operator pods' health port; the test Pod itself is selected by
    # nothing of the release (a ReplicaSet would adopt it, the PDB would count it).
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"] == [
        {"name": "health", "port": 8081, "targetPort": "health", "protocol": "TCP"}
    ]
    labels = pod["metadata"]["labels"]
    for selector in (dep["spec"]["selector"], one(docs, "PodDisruptionBudget")["spec"]["selector"]):
        assert not selector["matchLabels"].items() <= labels.items()
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["serviceAccountName"] == dep["spec"]["template"]["spec"]["serviceAccountName"]
    (c,) = spec["containers"]
    assert c["image"] == container(docs)["image"]
    assert c["securityContext"] == container(docs)["securityContext"]
    assert c["command"][:2] == ["python3", "-c"]
    assert c["command"][2] == (CHART / "files" / "tests" / "check-operator.py").read_text()
    assert env_of(c)["AKUA_TEST_HEALTH_URL"] == (
        f"http://{svc['metadata']['name']}.akua-system.svc:8081/healthz"
    )
    # Off: no hook; the installed objects never include it.
    assert (
        hook_objects(helm_template(testbin, offline_env, "tests.enabled=false", tests=True)) == {}
    )
    assert hook_objects(helm_template(testbin, offline_env)) == {}
    lint(testbin, offline_env, "tests.enabled=false")


def test_helm_test_hook_passes_server_side_validation(
    testbin: Path, offline_env: dict[str, str], kubectl: Any, namespace: str
) -> None:
    hooks = hook_objects(helm_template(testbin, offline_env, namespace=namespace, tests=True))
    items = {"apiVersion": "v1", "kind": "List", "items": list(hooks.values())}
    out = kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(items))
    accepted = {d["kind"] for d in json.loads(out.stdout)["items"]}
    assert accepted == {"Pod", "Service"}


def _hook_command(helm: Any, release: str, namespace: str) -> tuple[list[str], dict[str, str]]:
    """The test Pod's command and environment as the release holds them (`helm get hooks`)."""
    hooks = yaml.safe_load_all(helm("get", "hooks", release, "-n", namespace).stdout)
    pod = next(d for d in hooks if d and d["kind"] == "Pod")
    (c,) = pod["spec"]["containers"]
    return c["command"], env_of(c)


def _pod_identity(kubectl: Any, kubeconfig: Path, sa: str, namespace: str, where: Path) -> Path:
    """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    where.mkdir()
    token = kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    (where / "token").write_text(token)
    cluster = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]
    (where / "ca.crt").write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return where


def test_the_helm_test_command_run_against_the_control_plane(
    helm: Any, kubectl: Any, kubeconfig: Path, namespace: str, release: str, tmp_path: Path
) -> None:
    """The hook's own command, run as a local process (no kubelet here) with the ServiceAccount's
    token, against the real API server and the operator played by a local process."""
    metrics_port, health_port = free_port(), free_port()
    helm(
        "install", release, CHART, "-n", namespace, "--take-ownership",
        "--set", "credentials.token=sk_akua_helm_test_0123456789",
        "--set", "akua.apiUrl=http://127.0.0.1:9/v1",
        "--set", f"metrics.port={metrics_port}", "--set", f"health.port={health_port}",
    )  # fmt: skip
    command, pod_env = _hook_command(helm, release, namespace)
    assert command[:2] == ["python3", "-c"]
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    sa_dir = _pod_identity(
        kubectl, kubeconfig, f"{release}-akua-operator", namespace, tmp_path / "sa"
    )
    env = {
        "PATH": os.environ["PATH"],
        **pod_env,
        # Where the pod reaches them through cluster DNS, the local process reaches them here.
        "AKUA_TEST_HEALTH_URL": f"http://127.0.0.1:{health_port}/healthz",
        "AKUA_TEST_API_URL": server,
        "AKUA_TEST_SA_DIR": str(sa_dir),
    }

    def hook(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", command[2]],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    # No operator running: the test fails, saying so.
    down = hook(AKUA_TEST_HEALTH_ATTEMPTS="1")
    assert down.returncode == 1
    assert (
        f"FAIL: the operator did not answer http://127.0.0.1:{health_port}/healthz" in down.stdout
    )

    proc = run_like_the_pod(helm, kubectl, kubeconfig, namespace, release, tmp_path / "pod")
    try:
        ok = hook()
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert f"ok: http://127.0.0.1:{health_port}/healthz answered 200" in ok.stdout
        assert "ok: akua.dev/v1alpha1 serves akuaclusters" in ok.stdout
        # A CRD the API server does not serve (here: one the ServiceAccount may not read) fails.
        bad = hook(AKUA_TEST_CRD="widgets.example.com")
        assert bad.returncode == 1
        assert (
            "FAIL: GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets"
            in bad.stdout
        )
    finally:
        proc.stop()


# --------------------------------------------------------------------------- alerts and dashboard

FIXTURES = Path(__file__).parent / "fixtures" / "monitoring"


@pytest.fixture
def chart_with_monitoring(tmp_path: Path) -> Path:
    """A copy of the chart with tiny stand-ins for files/monitoring/ (the metrics work writes the
    real ones; these tests check what the templates make of such files)."""
    chart = tmp_path / "akua-operator"
    shutil.copytree(CHART, chart)
    (chart / "files" / "monitoring").mkdir(exist_ok=True)
    for name in ("rules.yaml", "dashboard.json"):
        shutil.copy(FIXTURES / name, chart / "files" / "monitoring" / name)
    return chart


def template_of(
    testbin: Path, env: dict[str, str], chart: Path, *sets: str
) -> list[dict[str, Any]]:
    args: list[str | Path] = [testbin / "helm", "template", "rel", chart, "-n", "akua-system"]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(run(args, env).stdout) if d]


def lint_of(testbin: Path, env: dict[str, str], chart: Path, *sets: str) -> None:
    args: list[str | Path] = [testbin / "helm", "lint", "--strict", chart]
    for s in sets:
        args += ["--set", s]
    out = run(args, env).stdout
    assert "0 chart(s) failed" in out and "[WARNING]" not in out, out


def test_prometheus_rule_embeds_the_rule_file_as_is(
    testbin: Path, offline_env: dict[str, str], chart_with_monitoring: Path
) -> None:
    chart = chart_with_monitoring
    assert not by_kind(template_of(testbin, offline_env, chart), "PrometheusRule")
    sets = ["prometheusRule.enabled=true", "prometheusRule.labels.release=prom"]
    lint_of(testbin, offline_env, chart, *sets)
    rule = one(template_of(testbin, offline_env, chart, *sets), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "akua-system"
    assert rule["metadata"]["labels"]["release"] == "prom"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == "rel"
    # The groups of the file, Prometheus templates untouched by Helm.
    assert rule["spec"] == yaml.safe_load((FIXTURES / "rules.yaml").read_text())
    summary = rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"]
    assert "{{ $labels.namespace }}/{{ $labels.name }}" in summary


def test_prometheus_rule_extra_rules_and_namespace(
    testbin: Path, offline_env: dict[str, str], chart_with_monitoring: Path
) -> None:
    sets = [
        "prometheusRule.enabled=true",
        "prometheusRule.namespace=monitoring",
        "prometheusRule.extraRules[0].alert=AkuaTooManyClusters",
        "prometheusRule.extraRules[0].expr=count(akua_operator_resource_stalled) > 100",
        "prometheusRule.extraRules[0].for=1h",
        "prometheusRule.extraRules[0].labels.severity=info",
    ]
    lint_of(testbin, offline_env, chart_with_monitoring, *sets)
    rule = one(template_of(testbin, offline_env, chart_with_monitoring, *sets), "PrometheusRule")
    assert rule["metadata"]["namespace"] == "monitoring"
    groups = rule["spec"]["groups"]
    assert [g["name"] for g in groups] == ["akua-operator", "akua-operator-extra"]
    assert groups[1]["rules"] == [
        {
            "alert": "AkuaTooManyClusters",
            "expr": "count(akua_operator_resource_stalled) > 100",
            "for": "1h",
            "labels": {"severity": "info"},
        }
    ]
    err = template_error(
        testbin, offline_env, "prometheusRule.extraRules[0].alert=X", "prometheusRule.enabled=true"
    )
    assert "/prometheusRule/extraRules/0" in err  # no expr


def test_grafana_dashboard_configmap_for_the_sidecar(
    testbin: Path, offline_env: dict[str, str], chart_with_monitoring: Path
) -> None:
    chart = chart_with_monitoring
    assert not by_kind(template_of(testbin, offline_env, chart), "ConfigMap")
    lint_of(testbin, offline_env, chart, "grafanaDashboard.enabled=true")
    cm = one(template_of(testbin, offline_env, chart, "grafanaDashboard.enabled=true"), "ConfigMap")
    assert cm["metadata"]["name"] == "rel-akua-operator-dashboard"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "annotations" not in cm["metadata"]
    # The JSON as is: Grafana's own ${...}/{{...}} placeholders untouched.
    assert cm["data"]["akua-operator.json"] == (FIXTURES / "dashboard.json").read_text()
    sets = [
        "grafanaDashboard.enabled=true",
        "grafanaDashboard.labels.grafana_dashboard=null",
        "grafanaDashboard.labels.dashboards=akua",
        "grafanaDashboard.annotations.grafana_folder=Operators",
        "grafanaDashboard.namespace=grafana",
    ]
    lint_of(testbin, offline_env, chart, *sets)
    cm = one(template_of(testbin, offline_env, chart, *sets), "ConfigMap")
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["labels"]["dashboards"] == "akua"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Operators"}


def test_monitoring_objects_pass_server_side_validation_where_possible(
    testbin: Path,
    offline_env: dict[str, str],
    chart_with_monitoring: Path,
    kubectl: Any,
    namespace: str,
) -> None:
    """The dashboard ConfigMap goes to the real API server (dry-run); the PrometheusRule needs
    the Prometheus Operator's CRD, which the test control plane does not have."""
    args: list[str | Path] = [
        testbin / "helm", "template", "rel", chart_with_monitoring, "-n", namespace,
        "--set", "grafanaDashboard.enabled=true",
    ]  # fmt: skip
    docs = [d for d in yaml.safe_load_all(run(args, offline_env).stdout) if d]
    cm = one(docs, "ConfigMap")
    out = kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(cm))
    assert json.loads(out.stdout)["data"] == cm["data"]


# --------------------------------------------------------------------------- shards


def deployments(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}


def test_without_shards_one_deployment_with_the_whole_rate(
    testbin: Path, offline_env: dict[str, str]
) -> None:
    docs = helm_template(testbin, offline_env)
    (dep,) = deployments(docs).values()
    env = env_of(container(docs))
    assert (env["AKUA_API_RATE"], env["AKUA_API_BURST"]) == ("20", "40")
    assert "AKUA_SHARD" not in env and "AKUA_SHARD_NAMES" not in env
    assert "akua.dev/shard" not in dep["spec"]["template"]["metadata"]["labels"]
    assert [p["metadata"]["name"] for p in by_kind(docs, "ClusterKopfPeering")] == [
        "rel-akua-operator"
    ]


def test_shards_render_one_deployment_each_with_a_share_of_the_rate(
    testbin: Path, offline_env: dict[str, str]
) -> None:
    unsharded = deployments(helm_template(testbin, offline_env))["rel-akua-operator"]
    sets = ["shards={a,b}", "akua.apiRate=30", "akua.apiBurst=40"]
    lint(testbin, offline_env, *sets)
    docs = helm_template(testbin, offline_env, *sets)
    deps = deployments(docs)
    assert set(deps) == {"rel-akua-operator", "rel-akua-operator-a", "rel-akua-operator-b"}
    # The default shard keeps the unsharded Deployment's name and (immutable) selector.
    default = deps["rel-akua-operator"]
    assert default["spec"]["selector"] == unsharded["spec"]["selector"]
    for name, shard in (
        ("rel-akua-operator", ""),
        ("rel-akua-operator-a", "a"),
        ("rel-akua-operator-b", "b"),
    ):
        dep = deps[name]
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        env = env_of(c)
        assert env["AKUA_SHARD"] == (shard or "default")
        assert env["AKUA_SHARD_NAMES"] == "a,b"
        # Akua's limit is per workspace: 30 req/s and a burst of 40 over three Deployments.
        assert (env["AKUA_API_RATE"], env["AKUA_API_BURST"]) == ("10", "13")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert labels["akua.dev/shard"] == (shard or "default")
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        if shard:
            assert dep["spec"]["selector"]["matchLabels"]["akua.dev/shard"] == shard
    # One peering per shard, and the operator may write its record into each (and only those).
    names = ["rel-akua-operator-default", "rel-akua-operator-a", "rel-akua-operator-b"]
    assert [p["metadata"]["name"] for p in by_kind(docs, "ClusterKopfPeering")] == names
    (role,) = [
        r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"] == "rel-akua-operator"
    ]
    writes = [
        r
        for r in role["rules"]
        if r["resources"] == ["clusterkopfpeerings"] and "patch" in r["verbs"]
    ]
    assert [r["resourceNames"] for r in writes] == [names]
    # Namespaced: a KopfPeering per shard in each watched namespace.
    docs = helm_template(
        testbin, offline_env, "shards={a}", "rbac.scope=namespaced", "watchNamespaces={x,y}"
    )
    assert sorted(
        (p["metadata"]["namespace"], p["metadata"]["name"]) for p in by_kind(docs, "KopfPeering")
    ) == [
        ("x", "rel-akua-operator-a"), ("x", "rel-akua-operator-default"),
        ("y", "rel-akua-operator-a"), ("y", "rel-akua-operator-default"),
    ]  # fmt: skip
    # No rate limit stays no rate limit; the burst never drops below 1.
    docs = helm_template(testbin, offline_env, "shards={a,b}", "akua.apiRate=0", "akua.apiBurst=2")
    for dep in deployments(docs).values():
        env = env_of(dep["spec"]["template"]["spec"]["containers"][0])
        assert (env["AKUA_API_RATE"], env["AKUA_API_BURST"]) == ("0", "1")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["shards={default}"], "/shards/0"),
        (["shards={Bad_Name}"], "/shards/0"),
        (["shards={a,a}"], "/shards"),
        (["akua.apiBurst=0"], "/akua/apiBurst"),
    ],
    ids=["default-reserved", "pattern", "duplicate", "burst"],
)
def test_bad_shard_values_are_refused(
    testbin: Path, offline_env: dict[str, str], sets: list[str], message: str
) -> None:
    assert message in template_error(testbin, offline_env, *sets)


def test_adding_shards_to_a_release_keeps_its_deployment(
    helm: Any, kubectl: Any, namespace: str, release: str
) -> None:
    """On the real API server: an unsharded release upgraded to shards keeps its Deployment (the
    default shard's, same uid, selector unchanged) and gains one per shard and their peerings."""
    helm("install", release, CHART, "-n", namespace, "--take-ownership")
    full = f"{release}-akua-operator"
    uid_before = kubectl.json("get", "deployment", full, "-n", namespace)["metadata"]["uid"]
    helm(
        "upgrade", release, CHART, "-n", namespace, "--reset-then-reuse-values",
        "--set", "shards={east,west}",
    )  # fmt: skip
    names = kubectl.json("get", "deployments", "-n", namespace)["items"]
    assert sorted(d["metadata"]["name"] for d in names) == [full, f"{full}-east", f"{full}-west"]
    default = kubectl.json("get", "deployment", full, "-n", namespace)
    assert default["metadata"]["uid"] == uid_before
    env = env_of(default["spec"]["template"]["spec"]["containers"][0])
    assert (env["AKUA_SHARD"], env["AKUA_SHARD_NAMES"]) == ("default", "east,west")
    for shard in ("default", "east", "west"):
        kubectl("get", "clusterkopfpeering", f"{full}-{shard}")
