"""`kubectl delete namespace X` with AkuaClusters in it finishes, in both RBAC scopes, and every
Akua cluster in it is deleted exactly once.

The documented topology: the operator runs in its own namespace (the release namespace, with its
token Secret), installed by the chart and run with exactly the chart's RBAC (tests/chart_pod.py),
and watches X. These tests run on the control plane WITH kube-controller-manager, so the
namespace controller really deletes everything in X: in the namespaced scope that includes the
RoleBinding and KopfPeering that give the operator its access to X.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import TOKEN, Sim, akc, condition, get_akc, wait_for

from chart_pod import PodProcess, run_like_the_pod, wait_ready
from controlplane import ControlPlane, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "akua-operator"
CLUSTERS = 3
ACCESS_FINALIZER = "akua.dev/operator-access"


@pytest.fixture
def namespaces(kcm_kubectl: Any) -> Iterator[tuple[str, str]]:
    """(the operator's namespace, the watched namespace X the test deletes)."""
    suffix = uuid.uuid4().hex[:6]
    ops, x = f"t-ops-{suffix}", f"t-x-{suffix}"
    for ns in (ops, x):
        kcm_kubectl("create", "namespace", ns)
    yield ops, x
    for ns in (ops, x):
        kcm_kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def namespace_report(kubectl: Any, ns: str) -> str:
    got = kubectl("get", "namespace", ns, "-o", "yaml", check=False)
    left = kubectl("get", "akuaclusters,rolebindings,kopfpeerings", "-n", ns, check=False)
    return f"{got.stdout}\n{got.stderr}\n{left.stdout}{left.stderr}"


@contextlib.contextmanager
def chart_operator(
    cp: ControlPlane, kubectl: Any, helm: Any, sim: Sim, ops: str, x: str, scope: str, tmp: Path
) -> Iterator[tuple[str, PodProcess]]:
    """The chart installed in `ops` (watching `x` in the namespaced scope) and its pod running
    as a local process with the chart's RBAC; yields (release, pod)."""
    release = f"r{uuid.uuid4().hex[:6]}"
    health_port = free_port()
    sets = [
        f"credentials.token={TOKEN}",
        f"defaultCredentials.namespaces={{{x}}}",
        f"akua.apiUrl={sim.url}",
        f"metrics.port={free_port()}",
        f"health.port={health_port}",
        f"rbac.scope={scope}",
        "operator.logFormat=text",
    ]
    if scope == "namespaced":
        sets.append(f"watchNamespaces={{{x}}}")
    args: list[str] = []
    for s in sets:
        args += ["--set", s]
    helm("install", release, CHART, "-n", ops, "--take-ownership", *args)
    pod = run_like_the_pod(helm, kubectl, cp.kubeconfig, ops, release, tmp)
    try:
        wait_ready(health_port, pod)
        yield release, pod
    finally:
        pod.stop()
        helm("uninstall", release, "-n", ops, "--wait=false", check=False)


def adopt_clusters(kubectl: Any, sim: Sim, x: str, n: int, **spec: Any) -> list[str]:
    """n adopted simulator clusters as AkuaClusters c0..c(n-1) in x, each Ready."""
    ids = []
    for i in range(n):
        seeded = sim.seed(f"nsdel-{i}", state="active")
        ids.append(seeded["id"])
        kubectl.apply(akc(f"c{i}", x, clusterId=seeded["id"], **spec))
    for i in range(n):
        kubectl("wait", f"akc/c{i}", "-n", x, "--for=condition=Ready", "--timeout=90s")
    return ids


def guarded(kubectl: Any, kind: str, name: str, ns: str) -> bool:
    got = kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    if got.returncode != 0:
        return False
    return ACCESS_FINALIZER in (json.loads(got.stdout)["metadata"].get("finalizers") or [])


def wait_gone(kubectl: Any, x: str, pod: PodProcess) -> None:
    done = kubectl(
        "wait", f"namespace/{x}", "--for=delete", "--timeout=120s", check=False, timeout=150
    )
    assert done.returncode == 0, (
        f"namespace {x} did not finish deleting:\n{namespace_report(kubectl, x)}\n"
        f"operator log (tail):\n{pod.text()[-6000:]}"
    )


@pytest.mark.parametrize("scope", ["namespaced", "cluster"])
def test_deleting_a_watched_namespace_deletes_its_clusters_once_and_finishes(
    kcm_control_plane: ControlPlane,
    kcm_kubectl: Any,
    kcm_helm: Any,
    namespaces: tuple[str, str],
    sim: Sim,
    tmp_path: Path,
    scope: str,
) -> None:
    ops, x = namespaces
    kubectl = kcm_kubectl
    with chart_operator(kcm_control_plane, kubectl, kcm_helm, sim, ops, x, scope, tmp_path) as (
        release,
        pod,
    ):
        ids = adopt_clusters(kubectl, sim, x, CLUSTERS)
        if scope == "namespaced":
            # The operator keeps its access to X while AkuaClusters there hold its finalizer.
            full = f"{release}-akua-operator"
            for kind, name in (("rolebinding", f"{full}-watched"), ("kopfpeering", full)):
                wait_for(
                    f"{ACCESS_FINALIZER} on {kind}",
                    lambda k=kind, n=name: guarded(kubectl, k, n, x),
                )
        kubectl("delete", "namespace", x, "--wait=false")
        wait_gone(kubectl, x, pod)
        pod.assert_running()
    for cluster_id in ids:
        assert [d["status"] for d in sim.deletes(cluster_id)] == [202], (
            cluster_id,
            sim.deletes(cluster_id),
        )
    state = sim.state()
    assert set(ids) <= set(state["deleted_cluster_ids"]), state["deleted_cluster_ids"]
    assert not {c["id"] for c in state["clusters"]} & set(ids)
    log = pod.text()
    assert TOKEN not in log
    assert "Traceback" not in log, log[-6000:]
    # Events refused in the terminating namespace are expected, not a warning (nor an RBAC error).
    assert "could not emit Event" not in log, log[-6000:]


def test_a_deletion_stalled_on_purpose_holds_the_namespace_and_the_operator_keeps_access(
    kcm_control_plane: ControlPlane,
    kcm_kubectl: Any,
    kcm_helm: Any,
    namespaces: tuple[str, str],
    sim: Sim,
    tmp_path: Path,
) -> None:
    """Namespaced scope: an AkuaCluster whose delete failed and is retained (it needs a person)
    keeps the namespace Terminating, and the operator keeps its RoleBinding there, so the
    person's `akua.dev/retry` still works; then the namespace goes."""
    ops, x = namespaces
    kubectl = kcm_kubectl
    with chart_operator(
        kcm_control_plane, kubectl, kcm_helm, sim, ops, x, "namespaced", tmp_path
    ) as (release, pod):
        (cluster_id,) = adopt_clusters(kubectl, sim, x, 1, deletion={"onFailure": "Retain"})
        binding = f"{release}-akua-operator-watched"
        wait_for("the RoleBinding guarded", lambda: guarded(kubectl, "rolebinding", binding, x))
        sim.scenario(
            operation_type="cluster.delete",
            cluster_id=cluster_id,
            mode="fail",
            step="drain_workloads",
            retryable=False,
            error_message="a PodDisruptionBudget blocks the drain",
            times=1,
        )
        kubectl("delete", "namespace", x, "--wait=false")
        wait_for(
            "Stalled=True DeleteRetained",
            lambda: (
                condition(get_akc(kubectl, "c0", x), "Stalled").get("reason") == "DeleteRetained"
            ),
            timeout=90,
        )
        # Held on purpose: the namespace waits, and the operator still has its access there.
        assert kubectl.json("get", "namespace", x)["status"]["phase"] == "Terminating"
        assert guarded(kubectl, "rolebinding", binding, x)
        kubectl("annotate", "akc", "c0", "-n", x, "akua.dev/retry=1")
        wait_gone(kubectl, x, pod)
        pod.assert_running()
    assert [d["status"] for d in sim.deletes(cluster_id)] == [202, 202]
    assert [op["state"] for op in sim.delete_operations(cluster_id)] == ["FAILED", "SUCCEEDED"]
