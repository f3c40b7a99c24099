"""`kubectl delete namespace X` with AkuaClusters in it finishes, in both RBAC scopes, and every
Akua cluster in it is deleted exactly once.

The documented topology: the operator runs in its own namespace (the release namespace, with its
token Secret), installed by the chart and run with exactly the chart's RBAC (tests/chart_pod.py),
and watches X. These tests run on the control plane WITH kube-controller-manager, so the
namespace controller really deletes everything in X: in the namespaced scope that includes the
RoleBinding and KopfPeering that give the operator its access to X.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import TOKEN, Sim, akc, wait_for

from chart_pod import run_like_the_pod, wait_ready
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
    kubectl, helm = kcm_kubectl, kcm_helm
    release = f"r{uuid.uuid4().hex[:6]}"
    health_port = free_port()
    sets = [
        f"credentials.token={TOKEN}",
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
    helm("install", release, CHART, "-n", ops, *args)
    pod = run_like_the_pod(helm, kubectl, kcm_control_plane.kubeconfig, ops, release, tmp_path)
    ids: list[str] = []
    try:
        wait_ready(health_port, pod)
        for i in range(CLUSTERS):
            seeded = sim.seed(f"nsdel-{i}", state="active")
            ids.append(seeded["id"])
            kubectl.apply(akc(f"c{i}", x, clusterId=seeded["id"]))
        for i in range(CLUSTERS):
            kubectl("wait", f"akc/c{i}", "-n", x, "--for=condition=Ready", "--timeout=90s")
        if scope == "namespaced":
            # The operator keeps its access to X while AkuaClusters there hold its finalizer.
            full = f"{release}-akua-operator"
            for kind in ("rolebinding", "kopfpeering"):
                wait_for(
                    f"{ACCESS_FINALIZER} on {kind} {full}",
                    lambda kind=kind: (
                        ACCESS_FINALIZER
                        in kubectl.json("get", kind, full, "-n", x)["metadata"].get(
                            "finalizers", []
                        )
                    ),
                    timeout=30,
                )

        kubectl("delete", "namespace", x, "--wait=false")
        done = kubectl(
            "wait", f"namespace/{x}", "--for=delete", "--timeout=120s", check=False, timeout=150
        )
        assert done.returncode == 0, (
            f"namespace {x} did not finish deleting:\n{namespace_report(kubectl, x)}\n"
            f"operator log (tail):\n{pod.text()[-6000:]}"
        )
        pod.assert_running()
    finally:
        pod.stop()
        helm("uninstall", release, "-n", ops, "--wait=false", check=False)
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
