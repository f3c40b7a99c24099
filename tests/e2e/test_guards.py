"""Guards against mass deletion, end to end: the real control plane, the simulator, the operator
as a process. The CRD guard (deleting the AkuaCluster CRD releases every AkuaCluster without
deleting its Akua cluster, unless --on-crd-deletion delete) and the deletion budget.

The CRD tests delete the session's AkuaCluster CRD: each puts it back (and waits until it is
Established) in a ``finally``, so the tests after them find it as the session fixture left it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_helpers import CRD, Operator, Sim, akc, condition, event_reasons, get_akc, wait_for

from akua_operator.sim.config import SimConfig

CRD_NAME = "akuaclusters.akua.dev"
RECORD = "akua-operator-released-clusters"


def adopt_observed(kubectl: Any, sim: Sim, namespace: str, names: list[str]) -> dict[str, str]:
    """Seed a cluster per name, adopt each with an AkuaCluster, wait until all are observed
    (finalizer and etag in place). Returns name -> cluster id."""
    ids = {name: sim.seed(f"{name}-{namespace}")["id"] for name in names}
    for name, cluster_id in ids.items():
        kubectl.apply(akc(name, namespace, clusterId=cluster_id))
    for name in names:
        wait_for(
            f"{name} observed",
            lambda name=name: (
                (o := get_akc(kubectl, name, namespace))
                and (o.get("status") or {}).get("etag")
                and o["metadata"].get("finalizers")
                and condition(o, "Ready").get("status") == "True"
            ),
        )
    return ids


def delete_requests(sim: Sim) -> list[dict[str, Any]]:
    return [e for e in sim.journal() if e["method"] == "DELETE"]


def _release_other_akuaclusters(kubectl: Any, namespace: str) -> None:
    """AkuaClusters left by earlier tests in other namespaces (their operators are gone) would
    keep the CRD Terminating: drop their finalizers; the CRD deletion removes them."""
    found = kubectl.json("get", CRD_NAME, "-A", "-o", "json")
    for item in found["items"]:
        meta = item["metadata"]
        if meta["namespace"] != namespace and meta.get("finalizers"):
            kubectl(
                "patch",
                CRD_NAME,
                meta["name"],
                "-n",
                meta["namespace"],
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )


def _restore_crd(kubectl: Any) -> None:
    """Make sure the CRD is back and Established, whatever happened in the test."""
    found = kubectl("get", "crd", CRD_NAME, "-o", "json", check=False)
    if found.returncode == 0 and json.loads(found.stdout)["metadata"].get("deletionTimestamp"):
        # Still terminating: release whatever holds it, wait until it is gone.
        left = kubectl("get", CRD_NAME, "-A", "-o", "json", check=False)
        if left.returncode == 0:
            for item in json.loads(left.stdout)["items"]:
                meta = item["metadata"]
                kubectl(
                    "patch",
                    CRD_NAME,
                    meta["name"],
                    "-n",
                    meta["namespace"],
                    "--type=merge",
                    "-p",
                    '{"metadata":{"finalizers":null}}',
                    check=False,
                )
        kubectl("wait", "--for=delete", f"crd/{CRD_NAME}", "--timeout=120s", timeout=150)
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")


@pytest.fixture
def crd_restored(kubectl: Any, crd: str) -> Iterator[None]:
    """The test may delete the CRD: it is re-created (and Established) afterwards."""
    try:
        yield
    finally:
        _restore_crd(kubectl)


def _delete_crd_and_wait(kubectl: Any, namespace: str, names: list[str]) -> None:
    _release_other_akuaclusters(kubectl, namespace)
    kubectl("delete", "crd", CRD_NAME, "--wait=false")
    for name in names:
        wait_for(
            f"{name} to disappear",
            lambda name=name: get_akc(kubectl, name, namespace) is None,
            timeout=120,
        )


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(step_seconds=0.3)


def test_deleting_the_crd_releases_every_cluster_without_deleting_and_records_them(
    kubectl: Any,
    sim: Sim,
    namespace: str,
    operator: Operator,
    crd_restored: None,
) -> None:
    operator.env["AKUA_OPERATOR_NAMESPACE"] = namespace
    operator.start()
    names = ["alpha", "beta", "gamma"]
    ids = adopt_observed(kubectl, sim, namespace, names)

    _delete_crd_and_wait(kubectl, namespace, names)

    operator.assert_alive()
    assert delete_requests(sim) == []  # not one DELETE reached Akua
    for cluster_id in ids.values():
        assert sim.cluster_exists(cluster_id)
    record = kubectl.json("get", "configmap", RECORD, "-n", namespace)
    entries = [json.loads(v) for v in record["data"].values()]
    assert sorted((e["name"], e["clusterId"]) for e in entries) == sorted(ids.items())
    assert all(e["namespace"] == namespace and e["releasedAt"] for e in entries)
    for name, cluster_id in ids.items():
        events = kubectl.json(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={name},reason=ReleasedByCRDDeletion",
        )["items"]
        assert len(events) == 1
        assert events[0]["type"] == "Warning"
        assert cluster_id in events[0]["message"] and "NOT deleted" in events[0]["message"]
    logs = operator.logs()
    for cluster_id in ids.values():
        assert f"Akua cluster {cluster_id} was NOT deleted" in logs


def test_with_on_crd_deletion_delete_the_crd_deletion_deletes_the_clusters(
    kubectl: Any,
    sim: Sim,
    namespace: str,
    operator: Operator,
    crd_restored: None,
) -> None:
    operator.env["AKUA_ON_CRD_DELETION"] = "delete"
    operator.env["AKUA_OPERATOR_NAMESPACE"] = namespace
    operator.start()
    names = ["alpha", "beta"]
    ids = adopt_observed(kubectl, sim, namespace, names)

    _delete_crd_and_wait(kubectl, namespace, names)

    operator.assert_alive()
    for cluster_id in ids.values():
        assert len(sim.deletes(cluster_id)) == 1
        assert not sim.cluster_exists(cluster_id)
    found = kubectl("get", "configmap", RECORD, "-n", namespace, check=False)
    assert found.returncode != 0 and "NotFound" in found.stderr  # nothing was released


def waiting_for_budget(kubectl: Any, namespace: str, names: list[str]) -> list[str]:
    waiting = []
    for name in names:
        cond = condition(get_akc(kubectl, name, namespace), "Reconciling")
        if cond.get("reason") == "WaitingForDeletionBudget" and cond.get("status") == "True":
            waiting.append(name)
    return waiting


def test_the_deletion_budget_defers_deletes_beyond_it_until_approved(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.env["AKUA_DELETION_BUDGET_PER_MINUTE"] = "2"
    operator.start()
    names = ["one", "two", "three", "four"]
    ids = adopt_observed(kubectl, sim, namespace, names)

    kubectl("delete", "akc", *names, "-n", namespace, "--wait=false")
    # Two deletes go (the budget's two slots); the other two wait, saying so.
    gone = wait_for(
        "two deleted",
        lambda: (
            (g := [n for n in names if get_akc(kubectl, n, namespace) is None])
            and len(g) >= 2
            and g
        ),
        timeout=60,
    )
    waiting = wait_for(
        "two waiting for the budget",
        lambda: (w := waiting_for_budget(kubectl, namespace, names)) and len(w) == 2 and w,
        timeout=60,
    )
    assert len(delete_requests(sim)) == 2
    assert sorted(gone + waiting) == sorted(names)
    for name in waiting:
        assert sim.deletes(ids[name]) == []
        obj = get_akc(kubectl, name, namespace)
        message = condition(obj, "Reconciling")["message"]
        assert "2 Akua deletions per minute" in message
        assert f"kubectl annotate akuacluster {name} -n {namespace}" in message
        assert "akua.dev/approve-delete=true" in message
        assert obj is not None and not (obj["status"].get("deletion") or {}).get("pending")
        assert event_reasons(kubectl, name, namespace).count("DeletionBudgetWait") == 1

    approved, other = waiting
    kubectl("annotate", "akc", approved, "-n", namespace, "akua.dev/approve-delete=true")
    wait_for(f"{approved} deleted", lambda: get_akc(kubectl, approved, namespace) is None)
    assert len(sim.deletes(ids[approved])) == 1
    assert not sim.cluster_exists(ids[approved])

    # The last one: approved too (or its slot came); every cluster deleted exactly once.
    kubectl("annotate", "akc", other, "-n", namespace, "akua.dev/approve-delete=true", check=False)
    wait_for(f"{other} deleted", lambda: get_akc(kubectl, other, namespace) is None)
    for cluster_id in ids.values():
        assert len(sim.deletes(cluster_id)) == 1
    operator.assert_alive()
