"""Workspaces end to end (issue 10, items 1 and 3): the real control plane, the simulator on
loopback serving two workspaces, the operator as a process.

What proves a cluster "gone" is a 404 from the workspace the cluster was seen in
(``status.workspaceId``, sent as ``akua-context`` on every call about it): a token of another
workspace gets 403 there, never 404, so rotated credentials hold the deletion instead of
orphaning a billed cluster. A resource that never saw its workspace trusts no 404. A create
whose operation Akua forgot is asked again under its key in the same workspace (or held); the
deletion never releases on "no Akua cluster" while that create may still make one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e_helpers import TOKEN, Operator, Sim, akc, condition, events, get_akc, wait_for

from akua_operator.sim.config import SimConfig
from oracles import assert_exactly_once

WS_A = "ws_sim0000000000000"  # the simulator's default workspace: TOKEN's
WS_B = "ws_bbbbbbbbbbbbbbbb"
TOKEN_B = "sk_akua_test_token_of_workspace_b"
FINALIZER = "akua.dev/finalizer"


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(step_seconds=0.5, tokens=[TOKEN], workspace_tokens={TOKEN_B: WS_B})


# --- helpers ----------------------------------------------------------------------------------


def res(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    """An AkuaCluster manifest whose spec may hold ``name`` (``akc`` takes that keyword)."""
    manifest = akc(name, namespace)
    manifest["spec"] = spec
    return manifest


def put_secret(kubectl: Any, namespace: str, token: str) -> None:
    """Create or overwrite the Secret akua-creds (key ``token``): same name, new content."""
    manifest = kubectl(
        "create",
        "secret",
        "generic",
        "akua-creds",
        "-n",
        namespace,
        f"--from-literal=token={token}",
        "--dry-run=client",
        "-o",
        "json",
    ).stdout
    kubectl.apply(manifest)


def wait_obj(kubectl: Any, name: str, namespace: str, what: str, check: Any) -> dict[str, Any]:
    """Wait until the resource passes ``check``; fail at once (with its Events) if it is gone:
    a released finalizer is the failure these tests look for, not a slow operator."""

    def probe() -> Any:
        obj = get_akc(kubectl, name, namespace)
        if obj is None:
            told = [(e["reason"], e["message"]) for e in events(kubectl, name, namespace)]
            raise AssertionError(f"{name} is gone (released) while waiting for {what}: {told}")
        return check(obj) and obj

    obj: dict[str, Any] = wait_for(what, probe, timeout=90)
    return obj


def stalled(reason: str) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        cond = condition(obj, "Stalled")
        return cond.get("status") == "True" and cond.get("reason") == reason

    return check


def deleting_and_stalled(reason: str) -> Any:
    def check(obj: dict[str, Any]) -> bool:
        return bool(obj["metadata"].get("deletionTimestamp")) and stalled(reason)(obj)

    return check


def observed_ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return bool(
        status.get("clusterId")
        and status.get("etag")
        and condition(obj, "Ready").get("status") == "True"
    )


def seq_now(sim: Sim) -> int:
    journal = sim.journal()
    return int(journal[-1]["seq"]) if journal else 0


def calls_since(sim: Sim, seq: int, cluster_id: str) -> list[dict[str, Any]]:
    return [e for e in sim.journal() if e["seq"] > seq and cluster_id in e["path"]]


def reasons_of(kubectl: Any, name: str, namespace: str) -> list[str]:
    return [e["reason"] for e in events(kubectl, name, namespace)]


def assert_no_release_without_delete(kubectl: Any, name: str, namespace: str) -> None:
    reasons = reasons_of(kubectl, name, namespace)
    assert "AlreadyGone" not in reasons, reasons
    assert "Released" not in reasons, reasons


def assert_refused_in_workspace_a(sim: Sim, since: int, cluster_id: str) -> list[dict[str, Any]]:
    """Every call about the cluster since ``since`` named workspace A and was answered 403:
    none acted in A, none got a 404 that could pass for "gone"."""
    calls = calls_since(sim, since, cluster_id)
    assert calls, "the deletion made no call at all"
    for call in calls:
        assert call["akua_context"] == WS_A, call
        assert call["status"] == 403, call
        assert call["workspace_id"] != WS_A, call
    return calls


# --- item 3: credentials of another workspace -----------------------------------------------


def test_a_secret_rotated_to_another_workspace_holds_the_deletion_until_restored(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    put_secret(kubectl, namespace, TOKEN)
    operator.start()
    cluster_id: str = sim.seed(f"prod-{namespace}")["id"]
    kubectl.apply(
        akc(
            "prod",
            namespace,
            clusterId=cluster_id,
            credentials={"secretRef": {"name": "akua-creds", "key": "token"}},
        )
    )
    obj = wait_obj(kubectl, "prod", namespace, "the first observation", observed_ready)
    assert obj["status"]["workspaceId"] == WS_A  # recorded when first seen

    # Same Secret name and key, a token of workspace B: the recorded credentials identity
    # ("Secret akua-creds, key token") is unchanged; only Akua can tell.
    since = seq_now(sim)
    put_secret(kubectl, namespace, TOKEN_B)
    kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
    obj = wait_obj(
        kubectl,
        "prod",
        namespace,
        "the deletion held (CredentialsForbidden)",
        deleting_and_stalled("CredentialsForbidden"),
    )
    # it keeps asking (it retries every AKUA_CREDENTIALS_BACKOFF) and keeps being refused
    wait_for(
        "two refused DELETEs",
        lambda: (
            len(
                [
                    c
                    for c in calls_since(sim, since, cluster_id)
                    if c["method"] == "DELETE" and c["status"] == 403
                ]
            )
            >= 2
        ),
    )
    obj = get_akc(kubectl, "prod", namespace)
    assert obj is not None
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    message = condition(obj, "Stalled")["message"]
    assert "Secret akua-creds (key token)" in message
    assert "403" in message
    assert condition(obj, "Ready")["status"] == "False"
    warnings = [e for e in events(kubectl, "prod", namespace) if e["type"] == "Warning"]
    assert "CredentialsForbidden" in [e["reason"] for e in warnings]
    calls = assert_refused_in_workspace_a(sim, since, cluster_id)
    assert any(c["method"] == "DELETE" for c in calls)
    assert sim.cluster_exists(cluster_id)
    assert sim.delete_operations(cluster_id) == []
    assert_no_release_without_delete(kubectl, "prod", namespace)
    # the tokens are nowhere a user can read
    for token in (TOKEN, TOKEN_B):
        assert token not in json.dumps(obj)
        assert all(token not in e["message"] for e in events(kubectl, "prod", namespace))
        assert token not in operator.logs()

    # A's token back in the Secret: the deletion finishes, one delete operation
    put_secret(kubectl, namespace, TOKEN)
    wait_for("the object to go", lambda: get_akc(kubectl, "prod", namespace) is None, timeout=90)
    operator.assert_alive()
    assert not sim.cluster_exists(cluster_id)
    ops = sim.delete_operations(cluster_id)
    assert [op["state"] for op in ops] == ["SUCCEEDED"]
    assert_exactly_once(sim.journal(), sim.state()["operations"], [cluster_id])
    accepted = [d for d in sim.deletes(cluster_id) if d["status"] == 202]
    assert accepted and all(d["akua_context"] == WS_A for d in accepted)
    assert all(d["workspace_id"] == WS_A for d in accepted)
    reasons = reasons_of(kubectl, "prod", namespace)
    assert "Deleted" in reasons
    assert "AlreadyGone" not in reasons
    assert operator.starts == 1


def test_the_operator_restarted_with_another_workspaces_token_holds_the_deletion(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    cluster_id: str = sim.seed(f"prod-{namespace}")["id"]
    kubectl.apply(akc("prod", namespace, clusterId=cluster_id))  # the operator's own token
    obj = wait_obj(kubectl, "prod", namespace, "the first observation", observed_ready)
    assert obj["status"]["workspaceId"] == WS_A

    # AKUA_TOKEN swapped to a token of workspace B (e.g. a rotated operator Secret) and the
    # operator restarted
    operator.stop()
    since = seq_now(sim)
    operator.env["AKUA_TOKEN"] = TOKEN_B
    kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
    operator.start()
    obj = wait_obj(
        kubectl,
        "prod",
        namespace,
        "the deletion held (CredentialsForbidden)",
        deleting_and_stalled("CredentialsForbidden"),
    )
    wait_for(
        "two refused calls",
        lambda: len(calls_since(sim, since, cluster_id)) >= 2,
    )
    obj = get_akc(kubectl, "prod", namespace)
    assert obj is not None
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    message = condition(obj, "Stalled")["message"]
    assert "the operator's own credentials" in message and "403" in message
    assert_refused_in_workspace_a(sim, since, cluster_id)
    assert sim.cluster_exists(cluster_id)
    assert sim.delete_operations(cluster_id) == []
    assert_no_release_without_delete(kubectl, "prod", namespace)

    # the right token back: the deletion finishes, one delete operation
    operator.stop()
    operator.env["AKUA_TOKEN"] = TOKEN
    operator.start()
    wait_for("the object to go", lambda: get_akc(kubectl, "prod", namespace) is None, timeout=90)
    operator.assert_alive()
    assert not sim.cluster_exists(cluster_id)
    assert [op["state"] for op in sim.delete_operations(cluster_id)] == ["SUCCEEDED"]
    assert_exactly_once(sim.journal(), sim.state()["operations"], [cluster_id])
    reasons = reasons_of(kubectl, "prod", namespace)
    assert "Deleted" in reasons
    assert "AlreadyGone" not in reasons
    assert TOKEN_B not in operator.logs()


# --- item 3: never observed ------------------------------------------------------------------


def test_a_created_cluster_whose_workspace_was_never_recorded_trusts_no_404(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    put_secret(kubectl, namespace, TOKEN)
    operator.start()
    name = f"made-{namespace}"
    kubectl.apply(
        res(
            "made",
            namespace,
            {
                "name": name,
                "regionId": "reg_eu",
                "credentials": {"secretRef": {"name": "akua-creds"}},
            },
        )
    )
    obj = wait_obj(kubectl, "made", namespace, "the created cluster Ready", observed_ready)
    cluster_id = obj["status"]["clusterId"]
    assert obj["status"]["lifecycle"]["createAttempt"] == 1
    assert obj["status"]["workspaceId"] == WS_A

    # The operator is stopped and the record of the workspace is lost (a status written by an
    # older operator, a restore from a backup): the resource made a cluster, and nothing says
    # in which workspace. Then the Secret's content becomes a token of workspace B.
    operator.stop()
    kubectl(
        "patch",
        "akc",
        "made",
        "-n",
        namespace,
        "--subresource=status",
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/status/workspaceId"}]',
    )
    obj = get_akc(kubectl, "made", namespace)
    assert obj is not None and "workspaceId" not in obj["status"]
    put_secret(kubectl, namespace, TOKEN_B)
    since = seq_now(sim)
    kubectl("delete", "akc", "made", "-n", namespace, "--wait=false")
    operator.start()

    obj = wait_obj(
        kubectl,
        "made",
        namespace,
        "the deletion held (NotFoundUnverified)",
        deleting_and_stalled("NotFoundUnverified"),
    )
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    message = condition(obj, "Stalled")["message"]
    assert "akua.dev/orphan=true" in message
    assert cluster_id in message and "404" in message
    # the 404 came from workspace B (no workspace to name): it proves nothing about A's cluster
    calls = calls_since(sim, since, cluster_id)
    assert calls and all(c["status"] == 404 for c in calls), calls
    assert all(c["akua_context"] is None and c["workspace_id"] == WS_B for c in calls), calls
    assert sim.cluster_exists(cluster_id)  # alive and billed in workspace A
    assert sim.delete_operations(cluster_id) == []
    warnings = [e for e in events(kubectl, "made", namespace) if e["type"] == "Warning"]
    assert "NotFoundUnverified" in [e["reason"] for e in warnings]
    assert_no_release_without_delete(kubectl, "made", namespace)

    # a person who checked Akua releases it
    kubectl("annotate", "akc", "made", "-n", namespace, "akua.dev/orphan=true")
    wait_for("the object to go", lambda: get_akc(kubectl, "made", namespace) is None)
    operator.assert_alive()
    orphaned = [e for e in events(kubectl, "made", namespace) if e["reason"] == "Orphaned"]
    assert orphaned and "akua.dev/orphan" in orphaned[0]["message"]
    assert cluster_id in orphaned[0]["message"]
    assert sim.cluster_exists(cluster_id)  # orphaned, not deleted: the person deletes it in Akua
    assert sim.delete_operations(cluster_id) == []


# --- item 1: a create still running, then deleted, then its operation answers 404 -------------

CREATE_WAITS = "provision_control_plane"


def start_held_create(
    kubectl: Any, sim: Sim, namespace: str, name: str
) -> tuple[dict[str, Any], str]:
    """Apply a resource that creates a cluster whose create operation waits for approval;
    return the resource once it follows that operation, and the operation id."""
    sim.scenario(
        operation_type="cluster.create", cluster_name=name, mode="approval", step=CREATE_WAITS
    )
    kubectl.apply(res("new", namespace, {"name": name, "regionId": "reg_eu"}))
    obj = wait_obj(
        kubectl,
        "new",
        namespace,
        "the create running and recorded",
        lambda o: (
            ((o.get("status") or {}).get("operation") or {}).get("state") == "RUNNING"
            and o["status"].get("workspaceId")
        ),
    )
    assert obj["status"]["workspaceId"] == WS_A
    assert "clusterId" not in obj["status"]
    op_id: str = obj["status"]["operation"]["id"]
    return obj, op_id


def made_by(sim: Sim, name: str) -> list[dict[str, Any]]:
    return [c for c in sim.state()["clusters"] if c["name"] == name]


def create_posts(sim: Sim) -> list[dict[str, Any]]:
    return [e for e in sim.journal() if e["method"] == "POST" and e["path"] == "/clusters"]


def test_a_forgotten_create_operation_is_learned_again_under_its_key_and_its_cluster_deleted(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    name = f"new-{namespace}"
    obj, op_id = start_held_create(kubectl, sim, namespace, name)
    uid = obj["metadata"]["uid"]
    kubectl("delete", "akc", "new", "-n", namespace, "--wait=false")
    wait_obj(
        kubectl,
        "new",
        namespace,
        "the deletion following the create",
        lambda o: condition(o, "Reconciling").get("reason") == "Deleting",
    )
    # The operator is down while Akua forgets the create operation (expired) and the create
    # finishes: a cluster exists that the resource never learned the id of.
    operator.stop()
    sim.admin("POST", f"/operations/{op_id}:forget", {})
    sim.admin("POST", f"/operations/{op_id}:approve", {})
    (made,) = wait_for("the create to finish", lambda: made_by(sim, name))
    wait_for("the cluster active", lambda: made_by(sim, name)[0]["state"] == "active")
    assert sim.api("GET", f"/operations/{op_id}").status_code == 404
    since = seq_now(sim)
    operator.start()

    wait_for("the object to go", lambda: get_akc(kubectl, "new", namespace) is None, timeout=90)
    operator.assert_alive()
    # the deletion got the 404, asked again with the create's key in workspace A, learned the
    # cluster from the answer and deleted it: no leak, one create, one delete
    after = [e for e in sim.journal() if e["seq"] > since]
    assert any(e["path"].startswith(f"/operations/{op_id}") and e["status"] == 404 for e in after)
    resent = [e for e in after if e["method"] == "POST" and e["path"] == "/clusters"]
    assert resent, after
    assert {e["idempotency_key"] for e in create_posts(sim)} == {f"{uid}-create-1"}
    assert all(e["akua_context"] == WS_A and e["workspace_id"] == WS_A for e in resent)
    assert not sim.cluster_exists(made["id"])
    assert (
        len([op for op in sim.state()["operations"] if op["metadata"]["type"] == "cluster.create"])
        == 1
    )
    assert [op["state"] for op in sim.delete_operations(made["id"])] == ["SUCCEEDED"]
    assert_exactly_once(sim.journal(), sim.state()["operations"], [made["id"]])
    reasons = reasons_of(kubectl, "new", namespace)
    assert "CreateUnanswered" in reasons
    assert "Deleted" in reasons
    assert "Released" not in reasons


def test_a_forgotten_create_still_running_holds_the_deletion_until_a_person_acts(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    name = f"new-{namespace}"
    obj, op_id = start_held_create(kubectl, sim, namespace, name)
    uid = obj["metadata"]["uid"]
    kubectl("delete", "akc", "new", "-n", namespace, "--wait=false")
    wait_obj(
        kubectl,
        "new",
        namespace,
        "the deletion following the create",
        lambda o: condition(o, "Reconciling").get("reason") == "Deleting",
    )
    sim.admin("POST", f"/operations/{op_id}:forget", {})  # the create runs on, unseen

    # Asked again under its key, Akua answers with the same (still running, still forgotten)
    # operation: the deletion cannot learn the cluster, and holds; it never releases.
    obj = wait_obj(
        kubectl,
        "new",
        namespace,
        "the deletion held (CreateOperationNotFound)",
        deleting_and_stalled("CreateOperationNotFound"),
    )
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    message = condition(obj, "Stalled")["message"]
    assert op_id in message
    assert "spec.clusterId" in message and "akua.dev/orphan" in message
    assert "akua.dev/retry" in message
    posts = create_posts(sim)
    assert {e["idempotency_key"] for e in posts} == {f"{uid}-create-1"}
    assert len(posts) >= 2  # the create and the deletion's resend under its key
    assert all(e["akua_context"] in (None, WS_A) and e["workspace_id"] == WS_A for e in posts)
    assert posts[-1]["akua_context"] == WS_A
    (made,) = made_by(sim, name)  # the create's cluster, provisioning
    assert sim.deletes(made["id"]) == []
    assert_no_release_without_delete(kubectl, "new", namespace)
    warnings = [e for e in events(kubectl, "new", namespace) if e["type"] == "Warning"]
    assert "CreateOperationNotFound" in [e["reason"] for e in warnings]
    # held: recorded, so later cycles make no Akua call until a person acts
    obj = wait_obj(
        kubectl,
        "new",
        namespace,
        "the hold recorded",
        lambda o: o["status"]["deletion"].get("hold"),
    )
    assert obj["status"]["deletion"]["hold"] == "CreateOperationNotFound"

    # The create finishes; a person asks again (akua.dev/retry): the create's key now answers
    # with the finished operation, which names the cluster, and the deletion deletes it.
    sim.admin("POST", f"/operations/{op_id}:approve", {})
    wait_for("the cluster active", lambda: made_by(sim, name)[0]["state"] == "active")
    kubectl("annotate", "akc", "new", "-n", namespace, "akua.dev/retry=1")
    wait_for("the object to go", lambda: get_akc(kubectl, "new", namespace) is None, timeout=90)
    operator.assert_alive()
    assert not sim.cluster_exists(made["id"])
    assert [op["state"] for op in sim.delete_operations(made["id"])] == ["SUCCEEDED"]
    assert_exactly_once(sim.journal(), sim.state()["operations"], [made["id"]])
    assert {e["idempotency_key"] for e in create_posts(sim)} == {f"{uid}-create-1"}
    reasons = reasons_of(kubectl, "new", namespace)
    assert "DeleteRetry" in reasons and "Deleted" in reasons
    assert "Released" not in reasons


def test_a_lost_create_answer_is_never_asked_again_in_another_workspace(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    # The create reaches Akua (workspace A) but its answer is lost and the operator dies: the
    # status records the request (attempt 1), no cluster id, no workspace. Then the Secret's
    # content becomes a token of workspace B and the resource is deleted.
    put_secret(kubectl, namespace, TOKEN)
    sim.admin(
        "POST",
        "/faults",
        {"drop_rate": 1.0, "methods": ["POST"], "path_contains": "/clusters", "count": 1},
    )
    operator.env["AKUA_API_MAX_RETRIES"] = "0"  # no in-call retry: the kill comes first
    operator.env["AKUA_BACKOFF_BASE"] = "5"  # nor an early retry of the cycle
    operator.start()
    name = f"lost-{namespace}"
    spec = {
        "name": name,
        "regionId": "reg_eu",
        "credentials": {"secretRef": {"name": "akua-creds"}},
    }
    kubectl.apply(res("lost", namespace, spec))
    wait_for(
        "the dropped POST /clusters",
        lambda: [p for p in create_posts(sim) if p["fault"] == "drop_after"],
        interval=0.02,
    )
    operator.kill()
    (made,) = made_by(sim, name)
    assert made["workspace_id"] == WS_A
    obj = get_akc(kubectl, "lost", namespace)
    assert obj is not None
    assert obj["status"]["lifecycle"]["createAttempt"] == 1
    assert "workspaceId" not in obj["status"] and "clusterId" not in obj["status"]

    put_secret(kubectl, namespace, TOKEN_B)
    kubectl("delete", "akc", "lost", "-n", namespace, "--wait=false")
    since = seq_now(sim)
    operator.env["AKUA_BACKOFF_BASE"] = "0.5"
    operator.start()
    # Whatever the deletion does, it must not resend the create into workspace B (keys are
    # deduplicated per workspace: that would make a second cluster there, and release while
    # the first one lives on in A).
    obj = wait_obj(
        kubectl,
        "lost",
        namespace,
        "the deletion held",
        lambda o: condition(o, "Stalled").get("status") == "True",
    )
    assert obj["metadata"]["finalizers"] == [FINALIZER]
    after = [e for e in sim.journal() if e["seq"] > since]
    assert all(e["workspace_id"] != WS_B for e in after if e["method"] == "POST"), after
    assert [c["name"] for c in sim.state()["clusters"] if c["workspace_id"] == WS_B] == []
    # the resend named workspace A, where B's token is refused
    assert [e["status"] for e in create_posts(sim) if e["seq"] > since][:1] == [403]
    assert condition(obj, "Stalled")["reason"] == "CredentialsForbidden"
    assert sim.cluster_exists(made["id"])
    assert_no_release_without_delete(kubectl, "lost", namespace)

    # A's token back: the deletion learns the create under its key in A and deletes its cluster
    put_secret(kubectl, namespace, TOKEN)
    wait_for("the object to go", lambda: get_akc(kubectl, "lost", namespace) is None, timeout=90)
    operator.assert_alive()
    assert not sim.cluster_exists(made["id"])
    assert [op["state"] for op in sim.delete_operations(made["id"])] == ["SUCCEEDED"]
    # one create in all, in workspace A: no second cluster anywhere
    creates = [
        op
        for op in sim.state()["operations"]
        if op["metadata"]["type"] == "cluster.create" and op["metadata"]["name"] == name
    ]
    assert [op["metadata"]["workspace_id"] for op in creates] == [WS_A]
    resent = [e for e in create_posts(sim) if e["seq"] > since]
    assert resent and all(e["akua_context"] == WS_A for e in resent)
