"""The Helm chart charts/akua-operator and the plain manifests in deploy/ generated from it.

Everything runs the real helm and kubectl binaries ($AKUA_TESTBIN). Rendering, linting and the
schema need no cluster; installs, `kubectl apply -k deploy/` and the RBAC checks run against the
real kube-apiserver of the session (no kubelet: Deployments create no Pods, so the operator itself
is not running here; tests/ship/test_chart_rbac_operator.py runs it with the chart's RBAC).
"""

from __future__ import annotations

import base64
import filecmp
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "akua-operator"
DEPLOY = REPO_ROOT / "deploy"
GEN_DEPLOY = REPO_ROOT / "hack" / "gen-deploy.sh"
TOKEN = "sk_akua_chart_test_0123456789"  # a value only this test uses, to look for leaks
# The AkuaCluster CRD is part of every release (crds.enabled); in this shared control plane it
# exists already (applied by other tests, or kept by an earlier release), so a release adopts it.
TAKE_OWNERSHIP = "--take-ownership"

# The rights the chart grants in a namespace the operator watches, as `kubectl auth can-i --list`
# prints them: (resource, resource names, verbs). The peering rows name the release's peering.
WATCHED_NAMESPACE_RIGHTS = {
    ("akuaclusters.akua.dev", (), ("get", "list", "patch", "watch")),
    ("akuaclusters.akua.dev/status", (), ("patch",)),
    ("secrets", (), ("get",)),
    ("events", (), ("create",)),
}
CLUSTER_ONLY_RIGHTS = {
    ("customresourcedefinitions.apiextensions.k8s.io", (), ("list", "watch")),
}
# Both scopes, everywhere: the CRD guard reads the AkuaCluster CRD (in the namespaced scope the one
# cluster-scoped right).
CRD_GUARD_RIGHT = (
    "customresourcedefinitions.apiextensions.k8s.io",
    ("akuaclusters.akua.dev",),
    ("get",),
)
CRD_GUARD_RULE = (
    "apiextensions.k8s.io",
    "customresourcedefinitions",
    ("akuaclusters.akua.dev",),
    ("get",),
)


def released_rights(full: str) -> set[tuple[str, tuple, tuple]]:
    """In the release namespace: the ConfigMap recording the clusters the CRD guard released,
    and the claim Leases (one owner per Akua cluster; their names are not known in advance)."""
    return {
        ("configmaps", (), ("create",)),
        ("configmaps", (f"{full}-released-clusters",), ("get", "patch")),
        ("leases.coordination.k8s.io", (), ("create", "delete", "get", "update")),
    }


# --------------------------------------------------------------------------- helpers


def run(cmd: list[str | Path], env: dict[str, str], check: bool = True, **kw: Any) -> Any:
    result = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, env=env, check=False, **kw
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"`{' '.join(map(str, cmd))}` exited {result.returncode}\n"
            f"stderr:\n{result.stderr}\nstdout:\n{result.stdout[:4000]}"
        )
    return result


@pytest.fixture(scope="module")
def offline_env(testbin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for helm commands that need no cluster (lint, template)."""
    home = tmp_path_factory.mktemp("helm-offline")
    env = dict(os.environ)
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
        KUBECONFIG=str(home / "no-kubeconfig"),
        PATH=os.pathsep.join([str(testbin), env.get("PATH", "")]),
    )
    return env


def helm_template(
    testbin: Path,
    env: dict[str, str],
    *sets: str,
    namespace: str = "akua-system",
    tests: bool = False,
) -> list[dict[str, Any]]:
    """The objects an install creates; with `tests`, the `helm test` hook objects too."""
    args: list[str | Path] = [testbin / "helm", "template", "rel", CHART, "-n", namespace]
    if not tests:
        args.append("--skip-tests")
    for s in sets:
        args += ["--set", s]
    out = run(args, env).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    return c


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def rule_set(rules: list[dict[str, Any]]) -> set[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    out = set()
    for r in rules:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                out.add(
                    (g, res, tuple(sorted(r.get("resourceNames", []))), tuple(sorted(r["verbs"])))
                )
    return out


def token_kubeconfig(admin_kubeconfig: Path, token: str, path: Path) -> Path:
    """A kubeconfig that authenticates with `token` only (no client certificate)."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    ctx = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == ctx["cluster"])
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path


_ROW = re.compile(r"^(\S*)\s+(\[[^\]]*\])\s+(\[[^\]]*\])\s+(\[[^\]]*\])\s*$")


def can_i_list(kubectl: Any, kubeconfig: Path, namespace: str) -> set[tuple[str, tuple, tuple]]:
    """`kubectl auth can-i --list -n NS` as the kubeconfig's user: the resource rows as
    (resource, resource names, verbs); the non-resource URL rows as ("URL <urls>", (), verbs)."""
    env = kubectl.control_plane.env()
    env["KUBECONFIG"] = str(kubeconfig)
    out = kubectl("auth", "can-i", "--list", "-n", namespace, env=env).stdout
    lines = out.strip().splitlines()
    assert lines[0].split() == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    rows = set()
    for line in lines[1:]:
        m = _ROW.match(line)
        assert m, f"unparsed can-i row: {line!r}"
        res, urls, names, verbs = m.groups()

        def split(cell: str) -> tuple[str, ...]:
            return tuple(sorted(cell.strip("[]").split()))

        key = res if res else "URL " + " ".join(split(urls))
        rows.add((key, split(names), split(verbs)))
    return rows


def can_i(kubectl: Any, kubeconfig: Path, *args: str) -> bool:
    env = kubectl.control_plane.env()
    env["KUBECONFIG"] = str(kubeconfig)
    result = kubectl("auth", "can-i", *args, env=env, check=False)
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, f"can-i {args}: {result.stdout!r} {result.stderr!r}"
    return answer == "yes"


def uid() -> str:
    return uuid.uuid4().hex[:6]


@pytest.fixture
def release(helm: Any, namespace: str) -> Iterator[str]:
    """A release name unique in the session (its ClusterRole and peering are cluster-scoped);
    uninstalled afterwards."""
    name = f"r{uid()}"
    yield name
    helm("uninstall", name, "-n", namespace, "--wait=false", check=False)


@pytest.fixture
def extra_namespaces(kubectl: Any) -> Iterator[list[str]]:
    names = [f"t-watch-{uid()}", f"t-watch-{uid()}", f"t-other-{uid()}"]
    for n in names:
        kubectl("create", "namespace", n)
    yield names
    for n in names:
        kubectl("delete", "namespace", n, "--wait=false", check=False)


# The chart values of issue 15, all set (server-side dry-run and lint use the same).
ISSUE15_SETS = (
    "commonLabels.team=platform",
    "commonLabels.cost-center=cc-42",
    "deploymentAnnotations.example\\.com/owner=team-a",
    "serviceAccount.labels.sa-label=yes",
    "serviceAccount.automountServiceAccountToken=false",
    "volumes[0].name=ca",
    "volumes[0].configMap.name=corp-ca",
    "volumeMounts[0].name=ca",
    "volumeMounts[0].mountPath=/etc/akua/ca",
    "volumeMounts[0].readOnly=true",
    "strategy.type=RollingUpdate",
    "strategy.rollingUpdate.maxSurge=1",
    "strategy.rollingUpdate.maxUnavailable=0",
    "revisionHistoryLimit=5",
    "nodeSelector.pool=ops",
    "startupProbe.failureThreshold=12",
    "podDisruptionBudget.enabled=true",
    "podDisruptionBudget.minAvailable=1",
    "replicaCount=2",
)


# --------------------------------------------------------------------------- offline: lint


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["credentials.token=" + TOKEN, "metrics.serviceMonitor.enabled=true", "replicaCount=2"],
        ["rbac.scope=namespaced", "watchNamespaces={a,b}", "credentials.existingSecret=s"],
        ["peering.enabled=false", "operator.logFormat=text", "image.digest=sha256:" + "a" * 64],
        list(ISSUE15_SETS),
    ],
    ids=["defaults", "token+servicemonitor", "namespaced", "standalone", "issue15-values"],
)
def test_helm_lint_is_clean(testbin: Path, offline_env: dict[str, str], sets: list[str]) -> None:
    args: list[str | Path] = [testbin / "helm", "lint", "--strict", CHART]
    for s in sets:
        args += ["--set", s]
    result = run(args, offline_env)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


# --------------------------------------------------------------------------- offline: render


def test_cluster_scope_renders_cluster_rbac_and_all_namespaces(
    testbin: Path, offline_env: dict[str, str]
) -> None:
    docs = helm_template(testbin, offline_env)
    assert_released_configmap_rbac(docs, "akua-system")
    (role,) = operator_cluster_roles(docs)
    binding = one(docs, "ClusterRoleBinding")
    sa = one(docs, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "akua-system"}
    ]
    peering = "rel-akua-operator"
    assert rule_set(role["rules"]) == {
        ("akua.dev", "akuaclusters", (), ("get", "list", "patch", "watch")),
        ("akua.dev", "akuaclusters/status", (), ("patch",)),
        ("", "secrets", (), ("get",)),
        ("", "events", (), ("create",)),
        ("apiextensions.k8s.io", "customresourcedefinitions", (), ("list", "watch")),
        CRD_GUARD_RULE,
        ("kopf.dev", "clusterkopfpeerings", (), ("list", "watch")),
        ("kopf.dev", "clusterkopfpeerings", (peering,), ("get", "patch")),
    }
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == peering
    c = container(docs)
    # No namespace may use the default credentials unless the install lists it.
    assert c["args"] == ["run", "--all-namespaces", "--default-credentials-namespaces="]
    env = env_of(c)
    assert env["AKUA_PEERING_NAME"] == peering
    assert "AKUA_ACCESS_GUARD" not in env  # cluster-wide RBAC lives outside every namespace
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "AKUA_STANDALONE" not in env
    # No default credentials configured: no token file, no Secret, and NOTES would say so.
    assert "AKUA_TOKEN_FILE" not in env
    assert not by_kind(docs, "Secret")


def test_namespaced_scope_renders_a_role_per_watched_namespace_and_nothing_cluster_wide(
    testbin: Path, offline_env: dict[str, str]
) -> None:
    docs = helm_template(
        testbin,
        offline_env,
        "rbac.scope=namespaced",
        "watchNamespaces={team-a,team-b}",
        namespace="ops",
    )
    assert not by_kind(docs, "ClusterKopfPeering")
    sa = {"kind": "ServiceAccount", "name": "rel-akua-operator", "namespace": "ops"}
    # The one cluster-scoped right: read the AkuaCluster CRD.
    cluster_roles = {r["metadata"]["name"]: r for r in operator_cluster_roles(docs)}
    assert set(cluster_roles) == {"rel-akua-operator", "rel-akua-operator-watched"}
    assert rule_set(cluster_roles["rel-akua-operator"]["rules"]) == {CRD_GUARD_RULE}
    crb = one(docs, "ClusterRoleBinding")
    assert crb["roleRef"]["name"] == "rel-akua-operator"
    assert crb["subjects"] == [sa]
    # The rights in the watched namespaces: a ClusterRole granted only by a RoleBinding in each
    # (a RoleBinding can be kept by the access guard's finalizer when its namespace is deleted).
    assert rule_set(cluster_roles["rel-akua-operator-watched"]["rules"]) == {
        ("akua.dev", "akuaclusters", (), ("get", "list", "patch", "watch")),
        ("akua.dev", "akuaclusters/status", (), ("patch",)),
        ("", "secrets", (), ("get",)),
        ("", "events", (), ("create",)),
        (
            "rbac.authorization.k8s.io",
            "rolebindings",
            ("rel-akua-operator-watched",),
            ("get", "patch"),
        ),
        ("", "namespaces", ("team-a", "team-b"), ("get",)),
        ("kopf.dev", "kopfpeerings", (), ("list", "watch")),
        ("kopf.dev", "kopfpeerings", ("rel-akua-operator",), ("get", "patch")),
    }
    # Named apart from the <fullname> Role + RoleBinding of earlier versions: a RoleBinding's
    # roleRef cannot change in place, so `helm upgrade` replaces them instead.
    watched = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["namespace"] != "ops"]
    assert sorted(b["metadata"]["namespace"] for b in watched) == ["team-a", "team-b"]
    for b in watched:
        assert b["metadata"]["name"] == "rel-akua-operator-watched"
        assert b["subjects"] == [sa]
        assert b["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "rel-akua-operator-watched",
        }
    assert_released_configmap_rbac(docs, "ops")
    peerings = by_kind(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    c = container(docs)
    assert c["args"] == [
        "run",
        "--namespace",
        "team-a",
        "--namespace",
        "team-b",
        "--default-credentials-namespaces=",
    ]
    assert env_of(c)["AKUA_ACCESS_GUARD"] == "rel-akua-operator-watched"


def operator_cluster_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ClusterRoles of the operator itself (not the roles for users, which aggregate into
    view/edit/admin)."""
    return [
        r
        for r in by_kind(docs, "ClusterRole")
        if not any(
            k.startswith("rbac.authorization.k8s.io/aggregate-to-") for k in r["metadata"]["labels"]
        )
    ]


def assert_released_configmap_rbac(docs: list[dict[str, Any]], release_ns: str) -> None:
    """The only Roles: the released-clusters ConfigMap and the claim Leases in the release
    namespace."""
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "Role")}
    name = "rel-akua-operator-released-clusters"
    claims = roles.pop("rel-akua-operator-claims")
    assert claims["metadata"]["namespace"] == release_ns
    assert rule_set(claims["rules"]) == {
        ("coordination.k8s.io", "leases", (), ("create", "delete", "get", "update")),
    }
    (role,) = roles.values()
    assert role["metadata"] == role["metadata"] | {"name": name, "namespace": release_ns}
    assert rule_set(role["rules"]) == {
        ("", "configmaps", (), ("create",)),
        ("", "configmaps", (name,), ("get", "patch")),
    }
    (binding,) = [b for b in by_kind(docs, "RoleBinding") if b["metadata"]["name"] == name]
    assert binding["metadata"]["namespace"] == release_ns
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": name,
    }
    assert [s["name"] for s in binding["subjects"]] == ["rel-akua-operator"]


def test_deployment_is_locked_down_and_wired_to_values(
    testbin: Path, offline_env: dict[str, str]
) -> None:
    docs = helm_template(
        testbin,
        offline_env,
        "credentials.existingSecret=my-akua",
        "credentials.key=api-token",
        "akua.apiUrl=http://sim.local:8080/v1",
        "operator.logFormat=text",
        "metrics.port=9090",
        "health.port=9091",
    )
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True
    assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = env_of(c)
    assert env["AKUA_API_URL"] == "http://sim.local:8080/v1"
    assert env["AKUA_LOG_FORMAT"] == "text"
    assert env["AKUA_METRICS_PORT"] == "9090"
    assert env["AKUA_HEALTH_PORT"] == "9091"
    # The guards against mass deletion (defaults: orphan on CRD deletion, no budget).
    assert env["AKUA_ON_CRD_DELETION"] == "orphan"
    assert env["AKUA_DELETION_BUDGET_PER_MINUTE"] == "0"
    assert env["AKUA_OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["AKUA_RELEASED_CONFIGMAP"] == "rel-akua-operator-released-clusters"
    token_file = Path(env["AKUA_TOKEN_FILE"])
    secret_volume = volumes[mounts[str(token_file.parent)]]["secret"]
    assert secret_volume["secretName"] == "my-akua"
    assert secret_volume["items"] == [{"key": "api-token", "path": token_file.name}]
    assert not by_kind(docs, "Secret")  # an existing Secret is never created or touched
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9090, "health": 9091}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    svc = one(docs, "Service")
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert not by_kind(docs, "ServiceMonitor")


def test_values_of_an_older_release_render_the_new_defaults(
    testbin: Path, offline_env: dict[str, str]
) -> None:
    """`helm upgrade --reuse-values` (docs/helm.md "Upgrading") keeps the values of the release,
    which predate onCRDDeletion and deletionBudget: the chart must not need them."""
    older = [
        "onCRDDeletion=null",
        "deletionBudget=null",
        # issue 15's values
        "commonLabels=null",
        "deploymentAnnotations=null",
        "serviceAccount.labels=null",
        "serviceAccount.automountServiceAccountToken=null",
        "volumes=null",
        "volumeMounts=null",
        "strategy=null",
        "revisionHistoryLimit=null",
        "nodeSelector=null",
        "startupProbe=null",
        "podDisruptionBudget=null",
    ]
    docs = helm_template(testbin, offline_env, *older)
    env = env_of(container(docs))
    assert env["AKUA_ON_CRD_DELETION"] == "orphan"
    assert env["AKUA_DELETION_BUDGET_PER_MINUTE"] == "0"
    assert docs == helm_template(testbin, offline_env), "absent values must render the defaults"
    dep = one(docs, "Deployment")
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert dep["spec"]["revisionHistoryLimit"] == 3
    assert dep["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert container(docs)["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert one(docs, "ServiceAccount")["automountServiceAccountToken"] is True
    assert not by_kind(docs, "PodDisruptionBudget")
    # An older release's own updateStrategy (the values it carries) still applies.
    docs = helm_template(testbin, offline_env, *older, "updateStrategy=RollingUpdate")
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "RollingUpdate"}
    docs = helm_template(testbin, offline_env, "onCRDDeletion=delete", "deletionBudget.perMinute=7")
    env = env_of(container(docs))
    assert env["AKUA_ON_CRD_DELETION"] == "delete"
    assert env["AKUA_DELETION_BUDGET_PER_MINUTE"] == "7"


def test_issue15_values_off_by_default(testbin: Path, offline_env: dict[str, str]) -> None:
    docs = helm_template(testbin, offline_env)
    dep = one(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = container(docs)
    assert not by_kind(docs, "PodDisruptionBudget")
    assert "annotations" not in dep["metadata"]
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert dep["spec"]["revisionHistoryLimit"] == 3
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["automountServiceAccountToken"] is True
    assert {v["name"] for v in pod["volumes"]} == {"tmp"}
    assert [m["name"] for m in c["volumeMounts"]] == ["tmp"]
    assert c["startupProbe"] == {
        "httpGet": {"path": "/healthz", "port": "health"},
        "periodSeconds": 5,
        "timeoutSeconds": 5,
        "failureThreshold": 30,
    }
    sa = one(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is True
    assert "team" not in sa["metadata"]["labels"]
    # Opting out: no startup probe; no node selector (a map in values merges with the default,
    # so the default key is removed by setting it to null).
    docs = helm_template(
        testbin, offline_env, "startupProbe.enabled=false", "nodeSelector.kubernetes\\.io/os=null"
    )
    assert "startupProbe" not in container(docs)
    assert "nodeSelector" not in one(docs, "Deployment")["spec"]["template"]["spec"]


def test_issue15_values_on(testbin: Path, offline_env: dict[str, str]) -> None:
    docs = helm_template(testbin, offline_env, *ISSUE15_SETS)
    # commonLabels: on every object the chart renders, the pods included; selectors untouched.
    assert len(docs) > 5
    for d in docs:
        labels = d["metadata"]["labels"]
        assert labels["team"] == "platform", f"{d['kind']} {d['metadata']['name']}"
        assert labels["cost-center"] == "cc-42"
    dep = one(docs, "Deployment")
    assert dep["spec"]["template"]["metadata"]["labels"]["team"] == "platform"
    assert "team" not in dep["spec"]["selector"]["matchLabels"]
    assert dep["metadata"]["annotations"] == {"example.com/owner": "team-a"}
    assert "annotations" not in dep["spec"]["template"]["metadata"]
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert dep["spec"]["revisionHistoryLimit"] == 5
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux", "pool": "ops"}  # merged
    # The operator's pod keeps its token whatever the ServiceAccount says.
    assert pod["automountServiceAccountToken"] is True
    sa = one(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["labels"]["sa-label"] == "yes"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["ca"] == {"name": "ca", "configMap": {"name": "corp-ca"}}
    assert "tmp" in volumes
    c = container(docs)
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["ca"] == {"name": "ca", "mountPath": "/etc/akua/ca", "readOnly": True}
    assert mounts["tmp"]["mountPath"] == "/tmp"
    assert c["startupProbe"]["failureThreshold"] == 12
    assert c["startupProbe"]["periodSeconds"] == 5
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        ([], {"maxUnavailable": 1}),
        (["podDisruptionBudget.maxUnavailable=50%"], {"maxUnavailable": "50%"}),
        (["podDisruptionBudget.minAvailable=2"], {"minAvailable": 2}),
    ],
)
def test_pod_disruption_budget_takes_one_of_min_and_max(
    testbin: Path, offline_env: dict[str, str], sets: list[str], expected: dict[str, Any]
) -> None:
    docs = helm_template(testbin, offline_env, "podDisruptionBudget.enabled=true", *sets)
    spec = one(docs, "PodDisruptionBudget")["spec"]
    assert {k: v for k, v in spec.items() if k != "selector"} == expected


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["updateStrategy=RollingUpdate"], {"type": "RollingUpdate"}),
        (["updateStrategy=RollingUpdate", "strategy.type=Recreate"], {"type": "Recreate"}),
        (
            ["updateStrategy=Recreate", "strategy.type=RollingUpdate"],
            {"type": "RollingUpdate"},
        ),
    ],
    ids=["deprecated-alone", "strategy-wins", "strategy-wins-2"],
)
def test_strategy_wins_over_the_deprecated_update_strategy(
    testbin: Path, offline_env: dict[str, str], sets: list[str], expected: dict[str, Any]
) -> None:
    docs = helm_template(testbin, offline_env, *sets)
    assert one(docs, "Deployment")["spec"]["strategy"] == expected


def test_issue15_values_pass_server_side_validation(
    testbin: Path, offline_env: dict[str, str], kubectl: Any, namespace: str
) -> None:
    """The real API server accepts the objects these values shape (server-side dry-run)."""
    docs = helm_template(testbin, offline_env, *ISSUE15_SETS, namespace=namespace)
    kinds = {"Deployment", "PodDisruptionBudget", "ServiceAccount", "Service"}
    chosen = [d for d in docs if d["kind"] in kinds]
    assert sorted(d["kind"] for d in chosen) == sorted(kinds)
    items = {"apiVersion": "v1", "kind": "List", "items": chosen}
    out = kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(items))
    accepted = {d["kind"]: d for d in json.loads(out.stdout)["items"]}
    assert set(accepted) == kinds
    dep = accepted["Deployment"]
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert dep["spec"]["revisionHistoryLimit"] == 5
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert accepted["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert accepted["ServiceAccount"]["automountServiceAccountToken"] is False


def test_token_from_values_becomes_a_kept_secret(
    testbin: Path, offline_env: dict[str, str]
) -> None:
    docs = helm_template(testbin, offline_env, "credentials.token=" + TOKEN)
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["token"]).decode() == TOKEN
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # The token is in the Secret only: not in the Deployment (env, args, annotations).
    assert TOKEN not in json.dumps(one(docs, "Deployment"))
    docs = helm_template(
        testbin, offline_env, "credentials.token=" + TOKEN, "credentials.keepOnUninstall=false"
    )
    assert "annotations" not in one(docs, "Secret")["metadata"]


def test_service_monitor_only_when_enabled(testbin: Path, offline_env: dict[str, str]) -> None:
    docs = helm_template(
        testbin,
        offline_env,
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.release=prom",
        "metrics.serviceMonitor.interval=15s",
    )
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["endpoints"] == [
        {
            "port": "metrics",
            "path": "/metrics",
            "interval": "15s",
            "scrapeTimeout": "10s",
            "honorLabels": True,
        }
    ]
    svc = one(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()


def test_standalone_without_peering(testbin: Path, offline_env: dict[str, str]) -> None:
    docs = helm_template(testbin, offline_env, "peering.enabled=false")
    assert not by_kind(docs, "ClusterKopfPeering")
    assert not any(r["apiGroups"] == ["kopf.dev"] for r in operator_cluster_roles(docs)[0]["rules"])
    env = env_of(container(docs))
    assert env["AKUA_STANDALONE"] == "true"
    assert "AKUA_PEERING_NAME" not in env


# --------------------------------------------------------------------------- offline: schema


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            ["rbac.scope=everywhere"],
            "at '/rbac/scope': value must be one of 'cluster', 'namespaced'",
        ),
        (["colour=blue"], "additional properties 'colour' not allowed"),
        (
            ["image.pullpolicy=Always"],
            "at '/image': additional properties 'pullpolicy' not allowed",
        ),
        (["rbac.admin=true"], "at '/rbac': additional properties 'admin' not allowed"),
        (
            ["operator.logFormat=xml"],
            "at '/operator/logFormat': value must be one of 'json', 'text'",
        ),
        (["operator.logLevel=loud"], "at '/operator/logLevel': value must be one of"),
        (
            ["akua.apiUrl=ftp://api.akua.dev"],
            "at '/akua/apiUrl': 'ftp://api.akua.dev' does not match",
        ),
        (["image.digest=sha256:abc"], "at '/image/digest': 'sha256:abc' does not match"),
        (["metrics.port=0"], "at '/metrics/port': minimum: got 0, want 1"),
        (["health.port=70000"], "at '/health/port': maximum: got 70,000, want 65,535"),
        (["replicaCount=-1"], "at '/replicaCount': minimum: got -1, want 0"),
        (
            ["updateStrategy=BlueGreen"],
            "at '/updateStrategy': value must be one of '', 'Recreate', 'RollingUpdate'",
        ),
        (
            ["metrics.serviceMonitor.interval=30"],
            "at '/metrics/serviceMonitor/interval': got number, want string",
        ),
        (["metrics.service.type=Ingress"], "at '/metrics/service/type': value must be one of"),
        (
            ["rbac.scope=namespaced", "watchNamespaces={Bad_NS}"],
            "at '/watchNamespaces/0': 'Bad_NS' does not match",
        ),
        (["credentials.token=sk_akua_with space"], "at '/credentials/token'"),
        (["credentials.existingSecret=Not/A/Name"], "at '/credentials/existingSecret'"),
        (["peering.enabled=maybe"], "at '/peering/enabled': got string, want boolean"),
        (["onCRDDeletion=destroy"], "at '/onCRDDeletion': value must be one of"),
        (["deletionBudget.perMinute=-1"], "at '/deletionBudget/perMinute'"),
        # Rules across several values (templates/_validate.tpl), each saying what to change.
        (
            ["rbac.scope=namespaced"],
            "rbac.scope=namespaced needs the namespaces to watch: set watchNamespaces",
        ),
        (["watchNamespaces={a}"], "watchNamespaces=[a] is only for rbac.scope=namespaced"),
        (
            ["credentials.existingSecret=s", "credentials.token=t"],
            "credentials.existingSecret and credentials.token are both set: choose one",
        ),
        (["peering.enabled=false", "replicaCount=2"], "replicaCount=2 needs peering.enabled=true"),
        (
            ["metrics.serviceMonitor.enabled=true", "metrics.service.enabled=false"],
            "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true",
        ),
        (["metrics.port=9000", "health.port=9000"], "metrics.port and health.port are both 9000"),
        (
            [
                "defaultCredentials.namespaceSelector=tier=shared",
                "rbac.scope=namespaced",
                "watchNamespaces={a}",
            ],
            "defaultCredentials.namespaceSelector needs rbac.scope=cluster",
        ),
        (["defaultCredentials.namespaces={Bad_NS}"], "at '/defaultCredentials/namespaces/0'"),
        (
            ["admissionPolicies.guardedChanges.enabled=true"],
            "guardedChanges.enabled=true needs admissionPolicies.guardedChanges.group",
        ),
        (
            ["networkPolicy.enabled=true", "networkPolicy.akuaApiCIDRs={1.2.3.0/24}"],
            "networkPolicy.enabled=true needs networkPolicy.apiServerCIDRs and networkPolicy.akua",
        ),
        (["networkPolicy.apiServerCIDRs={example.com}"], "at '/networkPolicy/apiServerCIDRs/0'"),
        (
            ["podDisruptionBudget.minAvailable=1", "podDisruptionBudget.maxUnavailable=1"],
            "at '/podDisruptionBudget': 'not' failed",
        ),
        (
            ["strategy.type=Recreate", "strategy.rollingUpdate.maxSurge=1"],
            "at '/strategy'",
        ),
        (
            ["commonLabels.app\\.kubernetes\\.io/instance=x"],
            "invalid propertyName 'app.kubernetes.io/instance'",
        ),
        (["volumes[0].name=tmp"], "at '/volumes/0/name'"),
        (
            ["commonLabels.team=a", "podLabels.team=b"],
            'the label "team" is in both commonLabels and podLabels',
        ),
        (
            ["commonLabels.team=a", "serviceAccount.labels.team=b"],
            'the label "team" is in both commonLabels and serviceAccount.labels',
        ),
        (["commonLabels.helm\\.sh/chart=x"], "invalid propertyName 'helm.sh/chart'"),
        (
            ["serviceAccount.create=false"],
            "serviceAccount.name is required when serviceAccount.create is false",
        ),
    ],
)
def test_bad_values_are_rejected_with_a_clear_message(
    testbin: Path, offline_env: dict[str, str], sets: list[str], message: str
) -> None:
    args: list[str | Path] = [testbin / "helm", "template", "rel", CHART]
    for s in sets:
        args += ["--set", s]
    result = run(args, offline_env, check=False)
    assert result.returncode != 0, f"{sets} was accepted"
    assert message in result.stderr
    assert not result.stdout.strip()


def _value_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map each key path of a values.yaml to its line index (block mappings only)."""
    stack: list[tuple[int, str]] = []
    out: dict[tuple[str, ...], int] = {}
    for i, line in enumerate(text.splitlines()):
        m = re.match(r"^( *)([A-Za-z][A-Za-z0-9]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        out[tuple(k for _, k in stack)] = i
    return out


def _schema_leaves(node: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    # resources and strategy are Kubernetes objects passed through whole (empty by default).
    if "properties" not in node or path in {("resources",), ("strategy",)}:
        return [path]
    return [
        leaf for k, sub in node["properties"].items() for leaf in _schema_leaves(sub, (*path, k))
    ]


def test_default_values_satisfy_the_schema_and_every_value_is_documented() -> None:
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    text = (CHART / "values.yaml").read_text()
    jsonschema.Draft7Validator.check_schema(schema)
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(yaml.safe_load(text)))
    lines = text.splitlines()
    where = _value_lines(text)
    undocumented = []
    for leaf in _schema_leaves(schema):
        if leaf == ("global",):
            continue
        assert leaf in where, f"{'.'.join(leaf)} is in the schema but not in values.yaml"
        if not lines[where[leaf] - 1].lstrip().startswith("#"):
            undocumented.append(".".join(leaf))
    assert not undocumented, f"values without a comment above them: {undocumented}"
    # And the reverse: nothing in values.yaml that the schema does not know.
    known = set(_schema_leaves(schema))
    for path in where:
        assert any(path[: len(k)] == k or k[: len(path)] == path for k in known), (
            f"{'.'.join(path)} is in values.yaml but not in the schema"
        )


# --------------------------------------------------------------------------- deploy/


def test_deploy_is_generated_from_the_chart(testbin: Path, tmp_path: Path) -> None:
    """deploy/ must be exactly what hack/gen-deploy.sh renders from the chart now."""
    env = dict(os.environ, HELM=str(testbin / "helm"))
    env.update(
        HELM_CACHE_HOME=str(tmp_path / "hc"),
        HELM_CONFIG_HOME=str(tmp_path / "hcfg"),
        HELM_DATA_HOME=str(tmp_path / "hd"),
    )
    out = tmp_path / "deploy"
    run([GEN_DEPLOY, out], env)
    cmp = filecmp.dircmp(DEPLOY, out)

    def differences(c: filecmp.dircmp[str], prefix: str = "") -> list[str]:
        diffs = [f"{prefix}{n}: only in deploy/" for n in c.left_only]
        diffs += [f"{prefix}{n}: missing from deploy/" for n in c.right_only]
        diffs += [f"{prefix}{n}: differs" for n in c.diff_files]
        for name, sub in c.subdirs.items():
            diffs += differences(sub, f"{prefix}{name}/")
        return diffs

    # dircmp compares shallowly by stat; compare contents to be sure.
    diffs = differences(cmp)
    for f in sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()):
        if (DEPLOY / f).is_file() and (DEPLOY / f).read_bytes() != (out / f).read_bytes():
            diffs.append(f"{f}: differs")
    assert not diffs, "deploy/ drifted from the chart; run hack/gen-deploy.sh and commit:\n" + (
        "\n".join(sorted(set(diffs)))
    )
    # The CRD in deploy/ is the chart's, byte for byte.
    crd = "akuaclusters.akua.dev.yaml"
    assert (DEPLOY / "crds" / crd).read_bytes() == (CHART / "files" / "crds" / crd).read_bytes()


def test_kubectl_apply_k_deploy_creates_the_operator(kubectl: Any) -> None:
    result = kubectl("apply", "-k", DEPLOY)
    assert "customresourcedefinition.apiextensions.k8s.io/akuaclusters.akua.dev" in result.stdout
    kubectl("wait", "--for=condition=Established", "crd/akuaclusters.akua.dev", "--timeout=60s")
    ns = "akua-system"
    assert (
        kubectl.json("get", "namespace", ns)["metadata"]["labels"][
            "pod-security.kubernetes.io/enforce"
        ]
        == "restricted"
    )
    kubectl("get", "serviceaccount", "akua-operator", "-n", ns)
    kubectl("get", "service", "akua-operator-metrics", "-n", ns)
    role = kubectl.json("get", "clusterrole", "akua-operator")
    assert any("akuaclusters" in r["resources"] for r in role["rules"])
    binding = kubectl.json("get", "clusterrolebinding", "akua-operator")
    assert binding["subjects"][0] == {
        "kind": "ServiceAccount",
        "name": "akua-operator",
        "namespace": ns,
    }
    dep = kubectl.json("get", "deployment", "akua-operator", "-n", ns)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["run", "--all-namespaces", "--default-credentials-namespaces="]
    env = env_of(c)
    assert env["AKUA_STANDALONE"] == "true"
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["credentials"]["secret"]["secretName"] == "akua-operator-credentials"
    # An AkuaCluster can be created against the applied CRD (its kind is served).
    kubectl.apply(
        {
            "apiVersion": "akua.dev/v1alpha1",
            "kind": "AkuaCluster",
            "metadata": {"name": "applied", "namespace": ns},
            "spec": {"name": "applied", "regionId": "reg_test"},
        }
    )
    assert kubectl.json("get", "akc", "applied", "-n", ns)["spec"]["regionId"] == "reg_test"
    kubectl("delete", "akc", "applied", "-n", ns, "--wait=false")
    # Applying again changes nothing (idempotent).
    again = kubectl("apply", "-k", DEPLOY).stdout
    assert "configured" not in again and "created" not in again, again


# --------------------------------------------------------------------------- helm install


def test_helm_install_with_an_existing_secret(
    helm: Any, kubectl: Any, namespace: str, release: str
) -> None:
    kubectl(
        "create", "secret", "generic", "my-akua", "-n", namespace, f"--from-literal=token={TOKEN}"
    )
    result = helm(
        "install",
        release,
        CHART,
        "-n",
        namespace,
        TAKE_OWNERSHIP,
        "--set",
        "credentials.existingSecret=my-akua",
    )
    assert "STATUS: deployed" in result.stdout
    assert 'Default credentials: key "token" of Secret "my-akua"' in result.stdout
    assert TOKEN not in result.stdout
    full = f"{release}-akua-operator"
    kubectl(
        "get",
        "crd",
        "akuaclusters.akua.dev",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    )
    kubectl("get", "serviceaccount", full, "-n", namespace)
    kubectl("get", "clusterrole", full)
    kubectl("get", "clusterrolebinding", full)
    kubectl("get", "service", f"{full}-metrics", "-n", namespace)
    kubectl("get", "clusterkopfpeering", full)
    dep = kubectl.json("get", "deployment", full, "-n", namespace)
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["credentials"]["secret"]["secretName"] == "my-akua"
    secrets = kubectl.json("get", "secrets", "-n", namespace)["items"]
    ours = [s["metadata"]["name"] for s in secrets if s["type"] != "helm.sh/release.v1"]
    assert ours == ["my-akua"]  # the chart created no Secret (only Helm's release record)
    assert helm("status", release, "-n", namespace).returncode == 0
    helm("uninstall", release, "-n", namespace)
    kubectl("get", "secret", "my-akua", "-n", namespace)  # yours: never touched by Helm
    assert kubectl("get", "clusterrole", full, check=False).returncode != 0


def test_helm_install_with_a_token_then_uninstall_never_strands_akuaclusters(
    helm: Any, kubectl: Any, namespace: str, release: str
) -> None:
    result = helm(
        "install", release, CHART, "-n", namespace, TAKE_OWNERSHIP,
        "--set", f"credentials.token={TOKEN}",
    )  # fmt: skip
    assert "STATUS: deployed" in result.stdout
    assert TOKEN not in result.stdout
    assert TOKEN not in helm("get", "notes", release, "-n", namespace).stdout
    full = f"{release}-akua-operator"
    secret_name = f"{full}-credentials"
    secret = kubectl.json("get", "secret", secret_name, "-n", namespace)
    assert base64.b64decode(secret["data"]["token"]).decode() == TOKEN
    dep = kubectl.json("get", "deployment", full, "-n", namespace)
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["credentials"]["secret"]["secretName"] == secret_name

    # An AkuaCluster the operator has taken (finalizer held), still there at uninstall.
    kubectl.apply(
        {
            "apiVersion": "akua.dev/v1alpha1",
            "kind": "AkuaCluster",
            "metadata": {
                "name": "left-behind",
                "namespace": namespace,
                "finalizers": ["akua.dev/finalizer"],
            },
            "spec": {"name": "left-behind", "regionId": "reg_test"},
        }
    )
    out = helm("uninstall", release, "-n", namespace).stdout
    assert "kept due to the resource policy" in out and secret_name in out
    # The CRD and the resource survive; the Secret too, so a reinstall can still authenticate.
    kubectl("get", "crd", "akuaclusters.akua.dev")
    kubectl("get", "secret", secret_name, "-n", namespace)
    kubectl("delete", "akc", "left-behind", "-n", namespace, "--wait=false")
    akc = kubectl.json("get", "akc", "left-behind", "-n", namespace)
    assert akc["metadata"]["deletionTimestamp"]  # waiting for an operator, not lost

    # Reinstall under the same name adopts the kept Secret.
    result = helm(
        "install", release, CHART, "-n", namespace, TAKE_OWNERSHIP,
        "--set", f"credentials.token={TOKEN}",
    )  # fmt: skip
    assert "STATUS: deployed" in result.stdout
    secret = kubectl.json("get", "secret", secret_name, "-n", namespace)
    assert secret["metadata"]["annotations"]["meta.helm.sh/release-name"] == release

    # The documented last resort without any operator: remove the finalizer by hand.
    kubectl(
        "patch",
        "akc",
        "left-behind",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )
    assert kubectl("get", "akc", "left-behind", "-n", namespace, check=False).returncode != 0


# --------------------------------------------------------------------------- RBAC, for real


def _sa_kubeconfig(kubectl: Any, kubeconfig: Path, sa: str, ns: str, path: Path) -> Path:
    token = kubectl("create", "token", sa, "-n", ns, "--duration=10m").stdout.strip()
    return token_kubeconfig(kubeconfig, token, path)


def _baseline(kubectl: Any, kubeconfig: Path, ns: str, tmp_path: Path, target_ns: str) -> set:
    """What any ServiceAccount with no binding may do (discovery, self reviews)."""
    name = f"nobody-{uid()}"
    kubectl("create", "serviceaccount", name, "-n", ns)
    cfg = _sa_kubeconfig(kubectl, kubeconfig, name, ns, tmp_path / f"{name}.kubeconfig")
    return can_i_list(kubectl, cfg, target_ns)


def test_rbac_cluster_scope_grants_exactly_the_listed_rights(
    helm: Any, kubectl: Any, kubeconfig: Path, namespace: str, release: str, tmp_path: Path
) -> None:
    helm("install", release, CHART, "-n", namespace, TAKE_OWNERSHIP)
    full = f"{release}-akua-operator"
    cfg = _sa_kubeconfig(kubectl, kubeconfig, full, namespace, tmp_path / "op.kubeconfig")
    other = f"t-anywhere-{uid()}"
    kubectl("create", "namespace", other)
    try:
        granted = can_i_list(kubectl, cfg, other) - _baseline(
            kubectl, kubeconfig, namespace, tmp_path, other
        )
        expected = (
            WATCHED_NAMESPACE_RIGHTS
            | CLUSTER_ONLY_RIGHTS
            | {
                CRD_GUARD_RIGHT,
                ("clusterkopfpeerings.kopf.dev", (), ("list", "watch")),
                ("clusterkopfpeerings.kopf.dev", (full,), ("get", "patch")),
            }
        )
        assert granted == expected
        # Its own namespace adds the ConfigMap of released clusters, and nothing else.
        own = can_i_list(kubectl, cfg, namespace) - _baseline(
            kubectl, kubeconfig, namespace, tmp_path, namespace
        )
        assert own == expected | released_rights(full)
        assert can_i(kubectl, cfg, "watch", "akuaclusters.akua.dev", "--all-namespaces")
        assert can_i(
            kubectl, cfg, "patch", "akuaclusters.akua.dev", "--subresource=status", "-n", other
        )
        assert can_i(kubectl, cfg, "get", "secrets", "-n", other)
        for verb_resource in [
            ("delete", "akuaclusters.akua.dev"),
            ("create", "akuaclusters.akua.dev"),
            ("update", "akuaclusters.akua.dev"),
            ("patch", "events"),
            ("create", "events.events.k8s.io"),
            ("list", "secrets"),
            ("watch", "secrets"),
            ("create", "secrets"),
            ("get", "pods"),
            ("get", "configmaps"),
            ("list", "namespaces"),
            ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
            ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
            ("patch", f"clusterkopfpeerings.kopf.dev/someone-else-{uid()}"),
            ("*", "*"),
        ]:
            assert not can_i(kubectl, cfg, *verb_resource, "-n", other), verb_resource
        assert not can_i(kubectl, cfg, "list", "secrets", "--all-namespaces")
    finally:
        kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_rbac_namespaced_scope_grants_nothing_outside_the_watched_namespaces(
    helm: Any,
    kubectl: Any,
    kubeconfig: Path,
    namespace: str,
    release: str,
    extra_namespaces: list[str],
    tmp_path: Path,
) -> None:
    watch_a, watch_b, unwatched = extra_namespaces
    helm(
        "install",
        release,
        CHART,
        "-n",
        namespace,
        TAKE_OWNERSHIP,
        "--set",
        "rbac.scope=namespaced",
        "--set",
        f"watchNamespaces={{{watch_a},{watch_b}}}",
    )
    full = f"{release}-akua-operator"
    for ns in (watch_a, watch_b):
        kubectl("get", "kopfpeering", full, "-n", ns)
    cfg = _sa_kubeconfig(kubectl, kubeconfig, full, namespace, tmp_path / "op.kubeconfig")
    baseline = _baseline(kubectl, kubeconfig, namespace, tmp_path, unwatched)
    expected = WATCHED_NAMESPACE_RIGHTS | {
        CRD_GUARD_RIGHT,
        ("kopfpeerings.kopf.dev", (), ("list", "watch")),
        ("kopfpeerings.kopf.dev", (full,), ("get", "patch")),
        # The access guard: its own RoleBinding's finalizers, and whether the namespace is
        # being deleted (through the RoleBinding in NS: only NS itself can be read).
        ("rolebindings.rbac.authorization.k8s.io", (f"{full}-watched",), ("get", "patch")),
        ("namespaces", (watch_a,), ("get",)),
        ("namespaces", (watch_b,), ("get",)),
    }
    for ns in (watch_a, watch_b):
        assert can_i_list(kubectl, cfg, ns) - baseline == expected
        # A real request, as the access guard makes it: a RoleBinding in NS lets it read NS.
        env = kubectl.control_plane.env() | {"KUBECONFIG": str(cfg)}
        assert kubectl.json("get", "namespace", ns, env=env)["metadata"]["name"] == ns
    # Outside the watched namespaces: only the one cluster-scoped right (reading the AkuaCluster
    # CRD), and in its own namespace the ConfigMap of released clusters.
    assert can_i_list(kubectl, cfg, unwatched) - baseline == {CRD_GUARD_RIGHT}
    assert can_i_list(kubectl, cfg, namespace) - baseline == {CRD_GUARD_RIGHT} | released_rights(
        full
    )
    env = kubectl.control_plane.env() | {"KUBECONFIG": str(cfg)}
    denied = kubectl("get", "namespace", unwatched, env=env, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()
    assert not can_i(kubectl, cfg, "get", "customresourcedefinitions/kopfpeerings.kopf.dev")
    assert not can_i(kubectl, cfg, "update", f"rolebindings/{full}", "-n", watch_a)
    assert not can_i(kubectl, cfg, "patch", f"rolebindings/other-{uid()}", "-n", watch_a)
    assert not can_i(kubectl, cfg, "patch", "roles", "-n", watch_a)
    assert not can_i(kubectl, cfg, "bind", "clusterroles", "-n", watch_a)
    assert not can_i(kubectl, cfg, "get", "secrets", "-n", unwatched)
    assert not can_i(kubectl, cfg, "list", "akuaclusters.akua.dev", "--all-namespaces")
    assert not can_i(kubectl, cfg, "list", "namespaces")
    assert not can_i(kubectl, cfg, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(kubectl, cfg, "delete", "akuaclusters.akua.dev", "-n", watch_a)
    assert not can_i(kubectl, cfg, "list", "secrets", "-n", watch_a)


def test_documented_upgrade_path_applies_the_crds_then_upgrades(
    helm: Any, kubectl: Any, namespace: str, release: str
) -> None:
    """docs/helm.md: Helm never upgrades crds/ (kopf's peering CRDs), so `kubectl apply
    --server-side -f crds/` first; the AkuaCluster CRD is the release's (crds.enabled)."""
    helm("install", release, CHART, "-n", namespace, TAKE_OWNERSHIP)
    applied = kubectl("apply", "--server-side", "-f", CHART / "crds").stdout
    for crd in ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{crd} serverside-applied" in applied
    assert "akuaclusters" not in applied
    result = helm(
        "upgrade",
        release,
        CHART,
        "-n",
        namespace,
        "--reuse-values",
        "--set",
        "operator.logLevel=debug",
    )
    assert "STATUS: deployed" in result.stdout and "REVISION: 2" in result.stdout
    dep = kubectl.json("get", "deployment", f"{release}-akua-operator", "-n", namespace)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert env_of(c)["AKUA_LOG_LEVEL"] == "debug"


def chart_with_crd_in_crds_dir(dst: Path) -> Path:
    """A copy of the chart as it was before `crds.enabled`: the AkuaCluster CRD in crds/ (Helm
    installs it on first install only and never owns it), no templates/crds.yaml, no `crds`."""
    shutil.copytree(CHART, dst)
    for crd in (dst / "files" / "crds").glob("*.yaml"):
        crd.rename(dst / "crds" / crd.name)
    (dst / "templates" / "crds.yaml").unlink()
    values = yaml.safe_load((dst / "values.yaml").read_text())
    schema = json.loads((dst / "values.schema.json").read_text())
    del values["crds"]
    del schema["properties"]["crds"]
    (dst / "values.yaml").write_text(yaml.safe_dump(values))
    (dst / "values.schema.json").write_text(json.dumps(schema))
    return dst


def _older_chart(dst: Path) -> Path:
    """The chart as a release before issue 15 had it: the same templates, but values.yaml and the
    schema without the values issue 15 added, and that release's updateStrategy and nodeSelector."""
    chart_with_crd_in_crds_dir(dst)
    values = yaml.safe_load((dst / "values.yaml").read_text())
    schema = json.loads((dst / "values.schema.json").read_text())
    for key in (
        "commonLabels",
        "deploymentAnnotations",
        "volumes",
        "volumeMounts",
        "strategy",
        "revisionHistoryLimit",
        "startupProbe",
        "podDisruptionBudget",
    ):
        del values[key]
        del schema["properties"][key]
    for key in ("labels", "automountServiceAccountToken"):
        del values["serviceAccount"][key]
        del schema["properties"]["serviceAccount"]["properties"][key]
    # Session 3 of issue 15.
    del values["akua"]["caBundle"]
    del schema["properties"]["akua"]["properties"]["caBundle"]
    for key in ("akua", "apiRate"), ("akua", "apiBurst"):
        del values[key[0]][key[1]]
        del schema["properties"][key[0]]["properties"][key[1]]
    for key in ("tests", "prometheusRule", "grafanaDashboard", "shards"):
        del values[key]
        del schema["properties"][key]
    del values["metrics"]["podMonitor"]
    del schema["properties"]["metrics"]["properties"]["podMonitor"]
    for key in ("relabelings", "metricRelabelings", "honorLabels"):
        del values["metrics"]["serviceMonitor"][key]
        del schema["properties"]["metrics"]["properties"]["serviceMonitor"]["properties"][key]
    values["updateStrategy"] = "Recreate"
    values["nodeSelector"] = {}
    (dst / "values.yaml").write_text(yaml.safe_dump(values))
    (dst / "values.schema.json").write_text(json.dumps(schema))
    return dst


def test_upgrade_with_reuse_values_from_a_release_before_the_new_values(
    helm: Any, kubectl: Any, namespace: str, release: str, tmp_path: Path
) -> None:
    """docs/helm.md "--reuse-values and new values", against the real API server."""
    helm("install", release, _older_chart(tmp_path / "older"), "-n", namespace)
    full = f"{release}-akua-operator"
    result = helm("upgrade", release, CHART, "-n", namespace, "--reuse-values", TAKE_OWNERSHIP)
    assert "REVISION: 2" in result.stdout
    dep = kubectl.json("get", "deployment", full, "-n", namespace)
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert dep["spec"]["revisionHistoryLimit"] == 3
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["failureThreshold"] == 30
    assert "nodeSelector" not in pod  # the older release's own nodeSelector: {} (documented)
    sa = kubectl.json("get", "serviceaccount", full, "-n", namespace)
    assert sa["automountServiceAccountToken"] is True
    assert kubectl("get", "pdb", full, "-n", namespace, check=False).returncode != 0
    # A new value given with --reuse-values applies; --reset-then-reuse-values takes every new
    # default (the node selector) and keeps what the release set.
    helm(
        "upgrade", release, CHART, "-n", namespace, "--reuse-values",
        "--set", "podDisruptionBudget.enabled=true", "--set", "commonLabels.team=platform",
    )  # fmt: skip
    pdb = kubectl.json("get", "pdb", full, "-n", namespace)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["metadata"]["labels"]["team"] == "platform"
    helm("upgrade", release, CHART, "-n", namespace, "--reset-then-reuse-values")
    dep = kubectl.json("get", "deployment", full, "-n", namespace)
    assert dep["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert dep["metadata"]["labels"]["team"] == "platform"
    assert kubectl.json("get", "pdb", full, "-n", namespace)["spec"]["maxUnavailable"] == 1
