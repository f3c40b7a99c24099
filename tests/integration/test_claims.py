"""kube/claims.py against the real kube-apiserver: one owner per Akua cluster, recorded as a Lease
`akua-claim-<cluster id>` in the operator namespace (issue 13).

- The first claimant wins; the API server admits exactly one create, even from racing threads.
- Duplicates from before claims existed: the resource that recorded the cluster first (the oldest
  with status.clusterId) keeps it, whoever asks first.
- A claim whose holder is gone passes on; release deletes only the caller's own claim.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from akua_operator.kube.claims import Claimant, ClaimsIO, lease_name

CRD = Path(__file__).resolve().parents[2] / "charts" / "akua-operator" / "files" / "crds"


@pytest.fixture(scope="module")
def crd(kubectl: Any) -> None:
    kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(CRD / "akuaclusters.akua.dev.yaml")
    )
    kubectl("wait", "--for=condition=Established", "crd/akuaclusters.akua.dev", "--timeout=60s")


def make(kubectl: Any, ns: str, name: str, cluster_id: str, *, recorded: bool) -> Claimant:
    kubectl.apply(
        {
            "apiVersion": "akua.dev/v1alpha1",
            "kind": "AkuaCluster",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterId": cluster_id},
        }
    )
    if recorded:
        kubectl(
            "patch",
            "akc",
            name,
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            f'{{"status":{{"clusterId":"{cluster_id}"}}}}',
        )
    uid = kubectl.json("get", "akc", name, "-n", ns)["metadata"]["uid"]
    return Claimant(ns, name, uid)


def holder(kubectl: Any, ns: str, cluster_id: str) -> str | None:
    got = kubectl(
        "get",
        "lease",
        lease_name(cluster_id),
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.holderIdentity}",
        check=False,
    )
    return got.stdout if got.returncode == 0 else None


def test_one_owner_per_cluster(kube_client: Any, kubectl: Any, namespace: str, crd: None) -> None:
    claims = ClaimsIO(kube_client, namespace, watched=(namespace,))
    # Before the upgrade both recorded clu_dup; the older one keeps it, whoever asks first.
    first = make(kubectl, namespace, "first", "clu_dup", recorded=True)
    time.sleep(1.1)  # creationTimestamp has a resolution of one second
    second = make(kubectl, namespace, "second", "clu_dup", recorded=True)
    assert claims.claim_sync("clu_dup", second) == f"{namespace}/first"
    assert holder(kubectl, namespace, "clu_dup") == first.identity
    assert claims.claim_sync("clu_dup", first) is None
    # A release by a resource that does not hold it changes nothing; the owner's frees it.
    claims.release_sync("clu_dup", second)
    assert holder(kubectl, namespace, "clu_dup") == first.identity
    # The owner gone (deleted without a finalizer here): the claim passes on.
    kubectl("delete", "akc", "first", "-n", namespace)
    assert claims.claim_sync("clu_dup", second) is None
    assert holder(kubectl, namespace, "clu_dup") == second.identity
    claims.release_sync("clu_dup", second)
    assert holder(kubectl, namespace, "clu_dup") is None


def test_racing_claimants_one_wins(
    kube_client: Any, kubectl: Any, namespace: str, crd: None
) -> None:
    claims = ClaimsIO(kube_client, namespace, watched=(namespace,))
    racers = [make(kubectl, namespace, f"r{i}", "CLU_Race.1", recorded=False) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda me: claims.claim_sync("CLU_Race.1", me), racers))
    winners = [me for me, owner in zip(racers, results, strict=True) if owner is None]
    assert len(winners) == 1
    assert holder(kubectl, namespace, "CLU_Race.1") == winners[0].identity
    assert all(owner == winners[0].display for owner in results if owner is not None)
    assert lease_name("CLU_Race.1") != lease_name("clu-race-1")  # a changed id gets a hash
