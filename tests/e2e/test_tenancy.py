"""Many teams, one operator (issue 13), end to end: the real control plane, the simulator on
loopback, `akua-operator run` watching two teams' namespaces with the default credentials
permitted in team A's only and its cluster claims in an operator namespace.

- A resource in team B that names no Secret stalls (DefaultCredentialsNotPermitted) before any
  Akua call: the simulator's journal shows none; deleting it makes none either.
- The first resource to adopt a cluster owns it (a Lease in the operator namespace); a second
  claimant is refused (ClusterClaimed, naming the owner) and deleting it leaves the cluster alive.
- The owner deleted with akua.dev/orphan frees the claim: a resource in team B with its own
  Secret then adopts the cluster.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import TOKEN, Operator, Sim, akc, condition, get_akc, wait_for

from akua_operator.kube.claims import lease_name


@pytest.fixture
def more_namespaces(kubectl: Any, namespace: str) -> Iterator[tuple[str, str]]:
    team_b, ops = f"{namespace[:50]}-b", f"{namespace[:50]}-ops"
    for ns in (team_b, ops):
        kubectl("create", "namespace", ns)
    yield team_b, ops
    for ns in (team_b, ops):
        # As the namespace fixture does (tests/conftest.py): nothing left Terminating.
        kubectl("delete", "akc", "--all", "-n", ns, "--wait=false", check=False)
        for obj in kubectl("get", "akc", "-n", ns, "-o", "name", check=False).stdout.split():
            kubectl(
                "patch",
                obj,
                "-n",
                ns,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
        kubectl("delete", "namespace", ns, "--wait=false", check=False)


def stalled(obj: dict[str, Any] | None, reason: str) -> bool:
    cond = condition(obj, "Stalled")
    return cond.get("status") == "True" and cond.get("reason") == reason


def wait_gone(kubectl: Any, name: str, ns: str) -> None:
    wait_for(f"{ns}/{name} to be gone", lambda: get_akc(kubectl, name, ns) is None, timeout=60)


def lease_holder(kubectl: Any, ops: str, cluster_id: str) -> str | None:
    got = kubectl("get", "lease", lease_name(cluster_id), "-n", ops, "-o", "json", check=False)
    if got.returncode != 0:
        assert "NotFound" in got.stderr, got.stderr
        return None
    holder: str = json.loads(got.stdout)["spec"]["holderIdentity"]
    return holder


def test_default_credentials_only_where_permitted_and_one_owner_per_cluster(
    kubectl: Any,
    sim: Sim,
    operator_env: dict[str, str],
    namespace: str,
    more_namespaces: tuple[str, str],
    crd: str,
    tmp_path: Path,
) -> None:
    team_a = namespace
    team_b, ops = more_namespaces
    cid = sim.seed("shared")["id"]
    op = Operator(
        operator_env,
        team_a,
        tmp_path / "operator.log",
        "--namespace",
        team_b,
        "--default-credentials-namespaces",
        team_a,
        "--operator-namespace",
        ops,
    ).start()
    try:
        # 1. Team B names no Secret: refused before any Akua call, and its deletion makes none.
        kubectl.apply(akc("b1", team_b, clusterId=cid))
        b1 = wait_for(
            "b1 stalled",
            lambda: (
                (o := get_akc(kubectl, "b1", team_b))
                and stalled(o, "DefaultCredentialsNotPermitted")
                and o
            ),
        )
        message = condition(b1, "Stalled")["message"]
        assert f"namespace {team_b}" in message and "spec.credentials.secretRef" in message
        assert sim.calls_for(cid) == []
        assert lease_holder(kubectl, ops, cid) is None  # it may not act: it claims nothing
        kubectl("delete", "akc", "b1", "-n", team_b, "--wait=false")
        wait_gone(kubectl, "b1", team_b)
        assert sim.calls_for(cid) == []

        # 2. Team A adopts it: the first claimant owns it.
        kubectl.apply(akc("a1", team_a, clusterId=cid))
        a1 = wait_for(
            "a1 ready",
            lambda: (
                (o := get_akc(kubectl, "a1", team_a))
                and condition(o, "Ready").get("status") == "True"
                and o
            ),
        )
        assert lease_holder(kubectl, ops, cid) == f"{team_a}/a1/{a1['metadata']['uid']}"

        # 3. A second claimant is refused, naming the owner; deleting it leaves the cluster.
        kubectl.apply(akc("a2", team_a, clusterId=cid))
        a2 = wait_for(
            "a2 refused",
            lambda: (o := get_akc(kubectl, "a2", team_a)) and stalled(o, "ClusterClaimed") and o,
        )
        assert f"{team_a}/a1" in condition(a2, "Stalled")["message"]
        kubectl("delete", "akc", "a2", "-n", team_a, "--wait=false")
        wait_gone(kubectl, "a2", team_a)
        assert sim.deletes(cid) == []
        assert sim.cluster_exists(cid)
        assert lease_holder(kubectl, ops, cid) == f"{team_a}/a1/{a1['metadata']['uid']}"

        # 4. The owner orphaned: the claim is freed, and team B adopts the cluster with its own
        #    Secret (a named Secret is never refused).
        kubectl("annotate", "akc", "a1", "-n", team_a, "akua.dev/orphan=true")
        kubectl("delete", "akc", "a1", "-n", team_a, "--wait=false")
        wait_gone(kubectl, "a1", team_a)
        assert lease_holder(kubectl, ops, cid) is None
        kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "akua-token", "namespace": team_b},
                "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
            }
        )
        kubectl.apply(
            akc("b2", team_b, clusterId=cid, credentials={"secretRef": {"name": "akua-token"}})
        )
        b2 = wait_for(
            "b2 ready",
            lambda: (
                (o := get_akc(kubectl, "b2", team_b))
                and condition(o, "Ready").get("status") == "True"
                and o
            ),
        )
        assert lease_holder(kubectl, ops, cid) == f"{team_b}/b2/{b2['metadata']['uid']}"
        assert sim.deletes(cid) == [] and sim.cluster_exists(cid)
        kubectl("annotate", "akc", "b2", "-n", team_b, "akua.dev/orphan=true")
        kubectl("delete", "akc", "b2", "-n", team_b, "--wait=false")
        wait_gone(kubectl, "b2", team_b)
        op.assert_alive()
    finally:
        op.stop()


def test_upgrade_a_resource_that_acted_under_the_default_credentials_keeps_them_to_delete(
    kubectl: Any,
    sim: Sim,
    operator_env: dict[str, str],
    namespace: str,
    more_namespaces: tuple[str, str],
    crd: str,
    tmp_path: Path,
) -> None:
    """Before the rule, an AkuaCluster in team B adopted a cluster with the operator's token (its
    status says so). After the upgrade team B may not use the token: alive, the resource stalls
    without any Akua call; deleted, it still deletes its cluster (never a stranded cluster)."""
    team_b, ops = more_namespaces
    seeded = sim.seed("before-upgrade", state="active")
    cid = seeded["id"]
    kubectl.apply(akc("old", team_b, clusterId=cid))
    recorded = {
        "status": {
            "clusterId": cid,
            "workspaceId": seeded["workspace_id"],
            "credentialsIdentity": "operator default",
        }
    }
    kubectl(
        "patch",
        "akc",
        "old",
        "-n",
        team_b,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(recorded),
    )
    op = Operator(
        operator_env,
        namespace,
        tmp_path / "operator.log",
        "--namespace",
        team_b,
        "--default-credentials-namespaces",
        namespace,
        "--operator-namespace",
        ops,
    ).start()
    try:
        wait_for(
            "old stalled",
            lambda: stalled(get_akc(kubectl, "old", team_b), "DefaultCredentialsNotPermitted"),
        )
        assert sim.calls_for(cid) == []
        kubectl("delete", "akc", "old", "-n", team_b, "--wait=false")
        wait_gone(kubectl, "old", team_b)
        assert len(sim.deletes(cid)) == 1
        assert not sim.cluster_exists(cid)
        op.assert_alive()
    finally:
        op.stop()
