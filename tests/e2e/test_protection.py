"""Deletion protection without the admission policy, end to end: the real control plane, the
simulator, the operator as a process. A protected AkuaCluster's `kubectl delete` is accepted by
the API server (no policy installed here), but the operator deletes nothing: the finalizer
holds, Stalled=True DeletionProtected, no DELETE reaches Akua. Flipping
spec.deletion.protection to false lets the deletion go on: one DELETE, the resource is gone."""

from __future__ import annotations

from typing import Any

from e2e_helpers import Operator, Sim, akc, condition, event_reasons, get_akc, wait_for


def test_protected_resource_is_held_until_protection_is_turned_off(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    cluster_id = sim.seed(f"prot-{namespace}")["id"]
    spec: dict[str, Any] = {"clusterId": cluster_id, "deletion": {"protection": True}}
    kubectl.apply(akc("prod", namespace, **spec))
    operator.start()
    wait_for(
        "prod observed",
        lambda: condition(get_akc(kubectl, "prod", namespace), "Ready").get("status") == "True",
    )

    kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
    stalled = wait_for(
        "Stalled DeletionProtected",
        lambda: (
            (c := condition(get_akc(kubectl, "prod", namespace), "Stalled")).get("reason")
            == "DeletionProtected"
            and c.get("status") == "True"
            and c
        ),
    )
    assert "spec.deletion.protection" in stalled["message"]
    wait_for(
        "the DeletionProtected Warning Event",
        lambda: "DeletionProtected" in event_reasons(kubectl, "prod", namespace),
    )
    obj = get_akc(kubectl, "prod", namespace)
    assert obj is not None
    assert obj["metadata"].get("deletionTimestamp")
    assert "akua.dev/finalizer" in obj["metadata"]["finalizers"]
    assert sim.deletes(cluster_id) == []
    assert sim.cluster_exists(cluster_id)
    operator.assert_alive()

    kubectl(
        "patch",
        "akc",
        "prod",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"deletion":{"protection":false}}}',
    )
    wait_for("prod deleted", lambda: get_akc(kubectl, "prod", namespace) is None, timeout=90)
    assert len(sim.deletes(cluster_id)) == 1
    assert not sim.cluster_exists(cluster_id)
