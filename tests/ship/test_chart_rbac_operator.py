"""The chart's RBAC is enough: the operator, run exactly as the chart's Deployment runs it and
authenticated only by a token minted for the chart's ServiceAccount, creates and deletes an
AkuaCluster end to end (against the Akua simulator).

The test control plane has no kubelet, so the pod is played by a local process (tests/chart_pod.py):
its command line and environment are taken from the Deployment that `helm install` created, and
its kubeconfig carries a token of the chart's ServiceAccount and nothing else.
tests/ship/test_chart.py shows the rights are no more than needed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from akua_operator.sim.config import SimConfig
from akua_operator.sim.server import SimServer
from chart_pod import PodProcess, run_like_the_pod, wait_ready
from controlplane import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "akua-operator"
TOKEN = f"sk_akua_rbac_{uuid.uuid4().hex[:12]}"
# The AkuaCluster CRD is part of every release (crds.enabled); in this shared control plane it
# exists already (applied by other tests, or kept by an earlier release), so a release adopts it.
TAKE_OWNERSHIP = "--take-ownership"


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(tokens=[TOKEN], step_seconds=0.3, seed=11)) as server:
        yield server


@pytest.mark.parametrize("flow", ["adopt", "create"])
@pytest.mark.parametrize("scope", ["namespaced", "cluster"])
def test_operator_with_only_the_chart_rbac_creates_and_deletes(
    helm: Any,
    kubectl: Any,
    kubeconfig: Path,
    namespace: str,
    sim: SimServer,
    tmp_path: Path,
    scope: str,
    flow: str,
) -> None:
    release = f"r{uuid.uuid4().hex[:6]}"
    metrics_port, health_port = free_port(), free_port()
    sets = [
        f"credentials.token={TOKEN}",
        f"defaultCredentials.namespaces={{{namespace}}}",
        f"akua.apiUrl={sim.url}",
        f"metrics.port={metrics_port}",
        f"health.port={health_port}",
        f"rbac.scope={scope}",
        "operator.logFormat=text",
    ]
    if scope == "namespaced":
        sets.append(f"watchNamespaces={{{namespace}}}")
    args: list[str] = []
    for s in sets:
        args += ["--set", s]
    helm("install", release, CHART, "-n", namespace, TAKE_OWNERSHIP, *args)
    proc = run_like_the_pod(helm, kubectl, kubeconfig, namespace, release, tmp_path)
    try:
        wait_ready(health_port, proc)
        spec: dict[str, Any]
        if flow == "adopt":
            seeded = sim.sim.state.seed_cluster(name="rbac-proof", state="active")
            spec = {"clusterId": seeded["id"]}
        else:
            spec = {"name": "rbac-proof", "regionId": "reg_sim"}
        kubectl.apply(
            {
                "apiVersion": "akua.dev/v1alpha1",
                "kind": "AkuaCluster",
                "metadata": {"name": "rbac-proof", "namespace": namespace},
                "spec": spec,
            }
        )
        kubectl(
            "wait",
            "akc/rbac-proof",
            "-n",
            namespace,
            "--for=condition=Ready",
            "--timeout=90s",
            timeout=120,
        )
        akc = kubectl.json("get", "akc", "rbac-proof", "-n", namespace)
        cluster_id = akc["status"]["clusterId"]
        assert "akua.dev/finalizer" in akc["metadata"]["finalizers"]
        assert any(c["id"] == cluster_id for c in sim.sim.state.dump()["clusters"])
        # Events were posted with the chart's rights.
        events = kubectl.json(
            "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=rbac-proof"
        )["items"]
        assert events, "no Event on the AkuaCluster"

        # kubectl delete blocks until the Akua delete operation has ended.
        kubectl("delete", "akc", "rbac-proof", "-n", namespace, "--timeout=90s", timeout=120)
        assert kubectl("get", "akc", "rbac-proof", "-n", namespace, check=False).returncode != 0
        state = sim.sim.state.dump()
        assert cluster_id in state["deleted_cluster_ids"], "the Akua cluster was not deleted"
        assert all(c["id"] != cluster_id for c in state["clusters"])
        deletes = [
            j
            for j in sim.sim.journal.read(0)
            if j["method"] == "DELETE" and j["path"] == f"/clusters/{cluster_id}"
        ]
        assert [j["status"] for j in deletes] == [202], deletes
    finally:
        proc.stop()
        helm("uninstall", release, "-n", namespace, "--wait=false", check=False)
    log = proc.text()
    assert TOKEN not in log
    forbidden = [line for line in log.splitlines() if "forbidden" in line.lower() or " 403" in line]
    assert not forbidden, f"the operator hit {len(forbidden)} RBAC denials, e.g.:\n" + "\n".join(
        line[:400] for line in forbidden[:4]
    )


def handled_by(proc: PodProcess, name: str) -> bool:
    return f"/{name}] Handler" in proc.text()


def readiness(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as rsp:
            return rsp.status, json.loads(rsp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_second_replica_waits_through_peering(
    helm: Any,
    kubectl: Any,
    kubeconfig: Path,
    namespace: str,
    sim: SimServer,
    tmp_path: Path,
) -> None:
    """replicaCount=2 with the chart's peering: one replica handles AkuaClusters, the other
    waits, and takes over when the first one is gone."""
    release = f"r{uuid.uuid4().hex[:6]}"
    health = [free_port(), free_port()]
    sets = [
        f"credentials.token={TOKEN}",
        f"defaultCredentials.namespaces={{{namespace}}}",
        f"akua.apiUrl={sim.url}",
        f"metrics.port={free_port()}",
        f"health.port={health[0]}",
        "replicaCount=2",
        "operator.logFormat=text",
    ]
    args: list[str] = []
    for s in sets:
        args += ["--set", s]
    helm("install", release, CHART, "-n", namespace, TAKE_OWNERSHIP, *args)
    pods = [
        run_like_the_pod(helm, kubectl, kubeconfig, namespace, release, tmp_path / "pod-0"),
        run_like_the_pod(
            helm,
            kubectl,
            kubeconfig,
            namespace,
            release,
            tmp_path / "pod-1",
            index=1,
            ports=(free_port(), health[1]),
        ),
    ]
    try:
        for pod, port in zip(pods, health, strict=True):
            wait_ready(port, pod)
        seeded = sim.sim.state.seed_cluster(name="peered", state="active")
        kubectl.apply(
            {
                "apiVersion": "akua.dev/v1alpha1",
                "kind": "AkuaCluster",
                "metadata": {"name": "peered", "namespace": namespace},
                "spec": {"clusterId": seeded["id"]},
            }
        )
        kubectl(
            "wait",
            "akc/peered",
            "-n",
            namespace,
            "--for=condition=Ready",
            "--timeout=90s",
            timeout=120,
        )
        # kopf logs "Handler ... succeeded" just after the handler wrote the Ready status.
        deadline = time.monotonic() + 10
        while not any(handled_by(p, "peered") for p in pods) and time.monotonic() < deadline:
            time.sleep(0.2)
        active = [p for p in pods if handled_by(p, "peered")]
        assert len(active) == 1, "exactly one replica must handle the resource:\n" + "\n".join(
            p.text()[-1500:] for p in pods
        )
        (standby,) = [p for p in pods if p is not active[0]]
        # The standby is a ready replica that says it waits; the active one is not paused.
        for pod, port in zip(pods, health, strict=True):
            code, body = readiness(port)
            assert code == 200, body
            assert body["checks"]["peering"]["paused"] is (pod is standby), body
        # The active replica goes away; the standby takes over once its record expires.
        active[0].stop()
        kubectl("delete", "akc", "peered", "-n", namespace, "--timeout=150s", timeout=180)
        assert handled_by(standby, "peered")
        assert seeded["id"] in sim.sim.state.dump()["deleted_cluster_ids"]
    finally:
        for pod in pods:
            pod.stop()
        helm("uninstall", release, "-n", namespace, "--wait=false", check=False)
