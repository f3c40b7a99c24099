"""Roles for users and the admission policies (issue 13, issue 14's deletion protection), on the
real API server with kube-controller-manager (its clusterrole-aggregation controller builds the
standard view/edit/admin roles), acting as users with `kubectl --as/--as-group`.

The chart is installed (no operator pod runs: nothing here needs it) with the guarded-changes
policy on for the group akua-admins; alice may edit in team A, bob in team B, carol may view in
team A.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import akc, wait_for

CHART = Path(__file__).resolve().parents[2] / "charts" / "akua-operator"
GROUP = "akua-admins"


@pytest.fixture
def teams(kcm_kubectl: Any, kcm_helm: Any) -> Iterator[tuple[str, str, str, str]]:
    """(release, its namespace, team A, team B) with the chart installed."""
    suffix = uuid.uuid4().hex[:6]
    ops, team_a, team_b = f"ops-{suffix}", f"team-a-{suffix}", f"team-b-{suffix}"
    for ns in (ops, team_a, team_b):
        kcm_kubectl("create", "namespace", ns)
    release = f"r{suffix}"
    kcm_helm(
        "install",
        release,
        CHART,
        "-n",
        ops,
        "--take-ownership",  # the AkuaCluster CRD may exist already (crds.enabled)
        "--set",
        "admissionPolicies.guardedChanges.enabled=true",
        "--set",
        f"admissionPolicies.guardedChanges.group={GROUP}",
    )
    try:
        yield release, ops, team_a, team_b
    finally:
        kcm_helm("uninstall", release, "-n", ops, "--wait=false", check=False)
        for ns in (ops, team_a, team_b):
            kcm_kubectl("delete", "namespace", ns, "--wait=false", check=False)


def as_user(user: str, *groups: str) -> list[str]:
    return ["--as", user, *(a for g in groups for a in ("--as-group", g))]


def can_i(kubectl: Any, *args: str) -> bool:
    return kubectl("auth", "can-i", *args, check=False).stdout.strip() == "yes"


def refused(result: Any) -> str:
    assert result.returncode != 0, f"accepted: {result.stdout}"
    text: str = result.stderr
    return text


def test_namespace_users_get_akuaclusters_through_the_standard_roles(
    kcm_kubectl: Any, teams: tuple[str, str, str, str]
) -> None:
    k = kcm_kubectl
    _, _, team_a, team_b = teams
    k("create", "rolebinding", "alice-edit", "--clusterrole=edit", "--user=alice", "-n", team_a)
    k("create", "rolebinding", "carol-view", "--clusterrole=view", "--user=carol", "-n", team_a)
    k("create", "rolebinding", "bob-edit", "--clusterrole=edit", "--user=bob", "-n", team_b)
    alice, carol = as_user("alice"), as_user("carol")
    wait_for(
        "the edit and view roles to aggregate the AkuaCluster rules",
        lambda: (
            can_i(k, "create", "akuaclusters.akua.dev", "-n", team_a, *alice)
            and can_i(k, "list", "akuaclusters.akua.dev", "-n", team_a, *carol)
        ),
        timeout=60,
    )
    # alice (edit in team A): create, read, delete there ...
    k.apply(akc("x", team_a, clusterId="clu_tenancy"), *alice)
    assert k.json("get", "akc", "x", "-n", team_a, *alice)["spec"]["clusterId"] == "clu_tenancy"
    assert k("get", "akc", "-n", team_a, *alice).returncode == 0
    # ... never the status (only the operator writes it) ...
    assert not can_i(
        k, "patch", "akuaclusters.akua.dev", "--subresource=status", "-n", team_a, *alice
    )
    assert not can_i(
        k, "update", "akuaclusters.akua.dev", "--subresource=status", "-n", team_a, *alice
    )
    # ... and nothing in team B.
    assert "forbidden" in refused(
        k("apply", "-f", "-", *alice, input=_json(akc("y", team_b, clusterId="c")), check=False)
    )
    assert "forbidden" in refused(k("get", "akc", "-n", team_b, *alice, check=False))
    # carol (view in team A): reads, never writes
    assert k("get", "akc", "x", "-n", team_a, *carol).returncode == 0
    assert "forbidden" in refused(k("delete", "akc", "x", "-n", team_a, *carol, check=False))
    k("delete", "akc", "x", "-n", team_a, *alice)
    assert "NotFound" in k("get", "akc", "x", "-n", team_a, check=False).stderr


def test_guarded_changes_only_from_the_group_and_protected_resources_refuse_delete(
    kcm_kubectl: Any, teams: tuple[str, str, str, str]
) -> None:
    k = kcm_kubectl
    release, ops, team_a, _ = teams
    k("create", "rolebinding", "alice-edit", "--clusterrole=edit", "--user=alice", "-n", team_a)
    alice, admin = as_user("alice"), as_user("alice", GROUP)
    wait_for(
        "the edit role to aggregate",
        lambda: can_i(k, "patch", "akuaclusters.akua.dev", "-n", team_a, *alice),
        timeout=60,
    )
    k.apply(akc("x", team_a, clusterId="clu_guarded"), *alice)
    orphan = ["annotate", "akc", "x", "-n", team_a, "akua.dev/orphan=true"]
    # Policies take effect a moment after they are created: probe without changing anything.
    wait_for(
        "the guarded-changes policy to be in force",
        lambda: k(*orphan, "--dry-run=server", *alice, check=False).returncode != 0,
        timeout=60,
    )
    # akua.dev/orphan: refused outside the group, accepted inside it.
    message = refused(k(*orphan, *alice, check=False))
    assert (
        f"only members of the group {GROUP} may set or change the annotation akua.dev/orphan"
        in message
    )
    k(*orphan, *admin)
    assert (
        k.json("get", "akc", "x", "-n", team_a)["metadata"]["annotations"]["akua.dev/orphan"]
        == "true"
    )
    # Changing it back (a change) is guarded too; an unrelated change is not.
    assert "akua.dev/orphan" in refused(
        k("annotate", "akc", "x", "-n", team_a, "akua.dev/orphan-", *alice, check=False)
    )
    k("label", "akc", "x", "-n", team_a, "tier=gold", *alice)
    k("annotate", "akc", "x", "-n", team_a, "note=fine", *alice)
    # akua.dev/retry and the deletion fields, CREATE included.
    assert "akua.dev/retry" in refused(
        k("annotate", "akc", "x", "-n", team_a, "akua.dev/retry=1", *alice, check=False)
    )
    policy_orphan = akc("orphaned", team_a, clusterId="c1", deletion={"policy": "Orphan"})
    assert "spec.deletion.policy: Orphan" in refused(
        k("apply", "-f", "-", *alice, input=_json(policy_orphan), check=False)
    )
    k.apply(akc("retained", team_a, clusterId="c2", deletion={"onFailure": "Retain"}), *alice)
    # onFailure Retain -> Release is guarded; the default (Release) on CREATE is no change.
    release_on_failure = '{"spec":{"deletion":{"onFailure":"Release"}}}'
    patch = ["patch", "akc", "retained", "-n", team_a, "--type=merge", "-p", release_on_failure]
    assert "spec.deletion.onFailure: Release" in refused(k(*patch, *alice, check=False))
    k(*patch, *admin)
    # The operator's own writes never fire it (its finalizer and annotations).
    operator_sa = as_user(f"system:serviceaccount:{ops}:{release}-akua-operator")
    k("annotate", "akc", "x", "-n", team_a, "akua.dev/orphan-", *operator_sa)

    # Deletion protection (issue 14): the API server refuses the delete, with the way out.
    k.apply(akc("p", team_a, clusterId="clu_protected", deletion={"protection": True}), *alice)
    delete_p = ["delete", "akc", "p", "-n", team_a]
    wait_for(
        "the deletion-protection policy to be in force",
        lambda: k(*delete_p, "--dry-run=server", check=False).returncode != 0,
        timeout=60,
    )
    expected = (
        f"AkuaCluster {team_a}/p has spec.deletion.protection: true; set it to false to delete it"
    )
    assert expected in refused(k(*delete_p, *alice, check=False))
    assert expected in refused(k(*delete_p, check=False))  # the cluster admin too
    off = [
        "patch",
        "akc",
        "p",
        "-n",
        team_a,
        "--type=merge",
        "-p",
        '{"spec":{"deletion":{"protection":false}}}',
    ]
    assert "spec.deletion.protection off" in refused(k(*off, *alice, check=False))
    k(*off, *admin)
    k(*delete_p, *alice)
    assert "NotFound" in k("get", "akc", "p", "-n", team_a, check=False).stderr


def _json(obj: dict[str, Any]) -> str:
    import json

    return json.dumps(obj)
