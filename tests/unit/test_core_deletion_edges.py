"""Issue 10: the deletion's edge paths that must never leak a billed cluster.

What proves "gone" (a 404 counts only from the recorded workspace), a create or import whose
outcome is not known, a 409 naming an operation that already ended, records that were lost.
Each test drives the pure core through ``decide()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from akc_factories import CID, UID, cluster, facts, operation

from akua_operator.akua.errors import AkuaConflict, AkuaNotFound
from akua_operator.core import Decision, Facts, advance, decide
from akua_operator.core.lifecycle import token_workspace_needed
from akua_operator.core.lifecycle_actions import CreateCluster, ImportCluster
from akua_operator.core.types import (
    Action,
    ApiFailed,
    ClusterGone,
    ClusterObserved,
    DeleteCluster,
    FollowOperation,
    Observation,
    ObserveCluster,
    OperationObserved,
    Release,
    Requeue,
)

CREATE = {"name": "prod", "regionId": "reg_eu"}
IMPORT = {
    "name": "edge",
    "regionId": "reg_eu",
    "provider": "imported_byoc",
    "kubeconfigSecretRef": {"name": "edge-kubeconfig", "key": "kubeconfig"},
}
NEW = "clu_new1"
LAST_HANDLED = "operator.akua.dev/last-handled-configuration"


def cond(d: Decision, type_: str) -> tuple[str, str, str]:
    for c in d.status.conditions:
        if c.type == type_:
            return (str(c.status), c.reason, c.message)
    raise AssertionError(f"no {type_} condition")


def reasons(d: Decision) -> list[str]:
    return [e.reason for e in d.events]


def create_op(op_id: str = "op_create1", state: str = "RUNNING", **over: Any) -> Any:
    return operation(
        op_id,
        op_type="cluster.create",
        state=state,
        steps=[],
        owner_id=NEW,
        response={"type": "cluster.create", "cluster_id": NEW} if state == "SUCCEEDED" else None,
        **over,
    )


def run(
    f: Facts, world: Callable[[Action], Observation], limit: int = 40
) -> tuple[list[Action], Decision, list[str]]:
    actions: list[Action] = []
    seen: list[str] = []
    obs: Observation = None
    for _ in range(limit):
        d = decide(f, obs)
        seen.extend(reasons(d))
        actions.append(d.action)
        if isinstance(d.action, Release | Requeue):
            return actions, d, seen
        f = advance(f, d)
        obs = world(d.action)
    raise AssertionError(f"no end after {limit} steps: {actions[-6:]}")


def no_release(d: Decision) -> None:
    assert not isinstance(d.action, Release), d.action
    assert "Released" not in reasons(d) and "AlreadyGone" not in reasons(d)


# --- item 3: a 404 proves "gone" only from the recorded workspace ---------------------------


def test_every_call_about_an_observed_cluster_is_sent_to_its_recorded_workspace() -> None:
    # The spec names no workspace (the token's own): once Akua showed the cluster in ws_1,
    # every call about it names ws_1 (akua-context); a token of another workspace gets 403.
    f = facts(status={"clusterId": CID})
    d = decide(f)
    assert d.action == ObserveCluster(CID)
    d = decide(advance(f, d), ClusterObserved(cluster(etag="e1")))
    assert d.status.workspace_id == "ws_1"
    assert isinstance(d.action, DeleteCluster) and d.action.workspace == "ws_1"
    d = decide(advance(f, d), OperationObserved(operation(), accepted=True))
    assert d.action == FollowOperation("op_del1", wait=True, workspace="ws_1")


def test_a_404_from_another_workspace_than_the_recorded_one_holds() -> None:
    # The Secret's content was rotated to a token of another workspace: a 404 for a call that
    # did not name the recorded workspace proves nothing.
    seen = facts(spec={"clusterId": CID, "credentials": {"secretRef": {"name": "creds"}}})
    d = decide(advance(seen, decide(seen)), ClusterObserved(cluster(etag="e1")))
    f = advance(seen, d)
    held = decide(f, ClusterGone(CID, via="DELETE", workspace="ws_2"))
    no_release(held)
    assert isinstance(held.action, Requeue)
    stalled = cond(held, "Stalled")
    assert stalled[:2] == ("True", "NotFoundUnverified")
    assert "akua.dev/orphan" in stalled[2]
    gone = decide(f, ClusterGone(CID, via="DELETE", workspace="ws_1"))
    assert isinstance(gone.action, Release)
    assert reasons(gone)[-1] == "AlreadyGone"


def test_a_404_for_a_created_cluster_never_observed_holds() -> None:
    # The create's operation gave the id but no workspace (a lagging or partial answer): nothing
    # proves which workspace the 404 came from.
    status = {
        "clusterId": NEW,
        "lifecycle": {"createAttempt": 1, "createRequest": {"provider": "managed_kaas", **CREATE}},
    }
    f = facts(spec=CREATE, status=status)
    d = decide(f)
    assert d.action == ObserveCluster(NEW)
    d = decide(advance(f, d), ClusterGone(NEW, via="GET"))
    no_release(d)
    stalled = cond(d, "Stalled")
    assert stalled[:2] == ("True", "NotFoundUnverified")
    assert "akua.dev/orphan=true" in stalled[2]
    assert reasons(d) == ["NotFoundUnverified"]
    # the same answer again: no second Event
    again = decide(advance(f, d), ClusterGone(NEW, via="GET"))
    assert reasons(again) == []
    # a person says it is gone
    orphan = facts(spec=CREATE, status=d.status.dump(), annotations={"akua.dev/orphan": "true"})
    assert isinstance(decide(orphan).action, Release)


def test_a_404_for_an_adopted_cluster_never_observed_releases() -> None:
    # Nothing was ever created or imported by this resource: it owns nothing that could leak.
    f = facts(spec={"clusterId": CID})
    d = decide(advance(f, decide(f)), ClusterGone(CID, via="GET"))
    assert isinstance(d.action, Release)


# --- item 6: a long credentials identity matches itself --------------------------------------


def test_a_long_secret_name_matches_itself() -> None:
    spec = {"clusterId": CID, "credentials": {"secretRef": {"name": "s" * 240}}}
    seen = facts(spec=spec)
    d = decide(advance(seen, decide(seen)), ClusterObserved(cluster(etag="e1")))
    assert d.status.credentials_identity is not None
    assert len(d.status.credentials_identity) <= 256
    f = facts(spec=spec, status=d.status.dump())
    d = decide(f)
    d = decide(advance(f, d), ClusterGone(CID, via="DELETE", workspace="ws_1"))
    assert isinstance(d.action, Release), cond(d, "Stalled")
    assert reasons(d)[-1] == "AlreadyGone"


# --- item 1: a create followed during deletion answered 404 ----------------------------------


def creating(**over: Any) -> dict[str, Any]:
    status: dict[str, Any] = {
        "workspaceId": "ws_1",
        "lifecycle": {"createAttempt": 1, "createRequest": {"provider": "managed_kaas", **CREATE}},
        "operation": {
            "id": "op_create1",
            "type": "cluster.create",
            "state": "RUNNING",
            "done": False,
        },
    }
    status.update(over)
    return status


def test_a_vanished_create_operation_is_learned_again_in_its_workspace() -> None:
    f = facts(spec=CREATE, status=creating())
    d = decide(f)
    assert d.action == FollowOperation("op_create1", wait=False, workspace="ws_1")
    f = advance(f, d)
    d = decide(f, ApiFailed(AkuaNotFound("no such operation", status=404), d.action))
    no_release(d)
    key = f"{UID}-create-1"
    assert d.action == CreateCluster("prod", "reg_eu", None, key, resend=True, workspace="ws_1")
    # Akua answers with the first operation; it ends with the cluster, which is deleted.
    f = advance(f, d)
    d = decide(f, OperationObserved(create_op(state="SUCCEEDED"), accepted=True))
    assert d.status.cluster_id == NEW
    assert d.action == ObserveCluster(NEW, workspace="ws_1")
    d = decide(advance(f, d), ClusterObserved(cluster(id=NEW, etag="e1")))
    assert isinstance(d.action, DeleteCluster)


def test_a_create_operation_that_vanishes_twice_holds() -> None:
    f = facts(spec=CREATE, status=creating())
    d = decide(f)
    f = advance(f, d)
    d = decide(f, ApiFailed(AkuaNotFound("gone", status=404), d.action))
    assert isinstance(d.action, CreateCluster)
    f = advance(f, d)
    d = decide(f, OperationObserved(create_op(), accepted=True))
    assert isinstance(d.action, FollowOperation)
    f = advance(f, d)
    d = decide(f, ApiFailed(AkuaNotFound("gone", status=404), d.action))
    no_release(d)
    assert isinstance(d.action, Requeue)
    stalled = cond(d, "Stalled")
    assert stalled[0] == "True"
    assert "spec.clusterId" in stalled[2] and "akua.dev/orphan" in stalled[2]
    # later cycles: no Akua call, no release
    later = decide(facts(spec=CREATE, status=d.status.dump()))
    assert isinstance(later.action, Requeue) and later.events == ()


def test_a_vanished_create_operation_without_a_recorded_workspace_holds() -> None:
    f = facts(spec=CREATE, status=creating(workspaceId=None))
    d = decide(f)
    f = advance(f, d)
    d = decide(f, ApiFailed(AkuaNotFound("gone", status=404), d.action))
    no_release(d)
    assert not isinstance(d.action, CreateCluster)
    assert cond(d, "Stalled")[:2] == ("True", "NotFoundUnverified")
    # never a create under credentials that may see another workspace, cycle after cycle
    later = decide(facts(spec=CREATE, status=d.status.dump()))
    no_release(later)
    assert not isinstance(later.action, CreateCluster)


def test_a_new_create_records_the_tokens_workspace_and_a_resend_goes_there() -> None:
    # The spec names no workspace. The runtime tells the core the token's one workspace
    # (GET /workspaces) before a new attempt: the request records it and goes there; after a
    # lost answer, the deletion's resend goes there too, even when the credentials now belong
    # to another workspace (a rotated Secret): never a second cluster in that one.
    key = f"{UID}-create-1"
    f = replace(facts(spec=CREATE, deleting=False), token_workspace="ws_1")
    assert token_workspace_needed(f)
    d = decide(f)
    assert d.action == CreateCluster("prod", "reg_eu", None, key, resend=False, workspace="ws_1")
    lifecycle = d.status.lifecycle
    assert lifecycle is not None and lifecycle.create_request is not None
    assert lifecycle.create_request.workspace_id == "ws_1"
    # the answer is lost, the resource deleted, the token now one of ws_2
    g = replace(facts(spec=CREATE, status=d.status.dump()), token_workspace="ws_2")
    assert not token_workspace_needed(g)  # nothing new to record while deleting
    d = decide(g)
    no_release(d)
    assert d.action == CreateCluster("prod", "reg_eu", None, key, resend=True, workspace="ws_1")


def test_the_tokens_workspace_is_needed_only_before_a_new_attempt() -> None:
    assert token_workspace_needed(facts(spec=CREATE, deleting=False))
    attempted = {
        "lifecycle": {"createAttempt": 1, "createRequest": {"provider": "managed_kaas", **CREATE}}
    }
    assert not token_workspace_needed(facts(spec=CREATE, status=attempted, deleting=False))
    named = {**CREATE, "credentials": {"workspaceId": "ws_9"}}
    assert not token_workspace_needed(facts(spec=named, deleting=False))
    assert not token_workspace_needed(facts(deleting=False))  # adopting spec.clusterId
    assert not token_workspace_needed(facts(spec=CREATE))  # deleting


# --- item 2: an import whose answer was lost ---------------------------------------------------


def test_an_import_whose_answer_was_lost_holds_until_a_person_acts() -> None:
    request = {"provider": "imported_byoc", "name": "edge", "regionId": "reg_eu"}
    status = {"lifecycle": {"createAttempt": 1, "createRequest": request}}
    f = facts(spec=IMPORT, status=status)
    d = decide(f)
    no_release(d)
    assert not isinstance(d.action, ImportCluster)  # the contract dedupes only POST /clusters
    assert isinstance(d.action, Requeue)
    stalled = cond(d, "Stalled")
    assert stalled[:2] == ("True", "ImportOutcomeUnknown")
    assert "spec.clusterId" in stalled[2] and "akua.dev/orphan=true" in stalled[2]
    assert reasons(d) == ["ImportOutcomeUnknown"]
    again = decide(facts(spec=IMPORT, status=d.status.dump()))
    assert isinstance(again.action, Requeue) and again.events == () and again.status_patch is None
    found = decide(facts(spec={**IMPORT, "clusterId": NEW}, status=d.status.dump()))
    assert found.action == ObserveCluster(NEW)
    orphan = facts(spec=IMPORT, status=d.status.dump(), annotations={"akua.dev/orphan": "true"})
    assert isinstance(decide(orphan).action, Release)


# --- item 5: a 409 naming an operation that already ended ------------------------------------


def test_a_409_naming_a_finished_operation_backs_off_and_tells_once() -> None:
    finished = operation(
        "op_s1", op_type="cluster.suspend", state="SUCCEEDED", steps=[], completed_at=1
    )

    def world(action: Action) -> Observation:
        if isinstance(action, DeleteCluster):
            conflict = AkuaConflict(
                "ABORTED: operation running",
                status=409,
                code=10,
                metadata={"active_operation_id": "op_s1"},
            )
            return ApiFailed(conflict, action)
        if isinstance(action, FollowOperation):
            return OperationObserved(finished)
        return ClusterObserved(cluster())

    actions, last, seen = run(facts(status={"etag": "e0"}), world)
    assert isinstance(last.action, Requeue)
    deletes = sum(isinstance(a, DeleteCluster) for a in actions)
    assert deletes <= 6
    assert seen.count("WaitingForOperation") == 1
    assert last.status.deletion is not None and last.status.deletion.next_attempt_at is not None


# --- item 8: records lost vs nothing happened yet -----------------------------------------


def test_an_unreadable_status_holds_the_finalizer() -> None:
    from dataclasses import replace

    f = replace(facts(spec=CREATE), status_unreadable="deletion.attempt: not an integer")
    d = decide(f)
    no_release(d)
    assert isinstance(d.action, Requeue)
    stalled = cond(d, "Stalled")
    assert stalled[:2] == ("True", "RecordsLost")
    assert "akua.dev/orphan" in stalled[2]
    orphaned = replace(f, meta=replace(f.meta, annotations={"akua.dev/orphan": "true"}))
    assert isinstance(decide(orphaned).action, Release)


def test_a_handled_resource_without_records_holds() -> None:
    # kopf recorded that the resource was handled, but the status holds no create key and no
    # cluster id: the records were lost (a status reset), not "nothing happened yet".
    f = facts(spec=CREATE, annotations={LAST_HANDLED: '{"spec": {}}'})
    d = decide(f)
    no_release(d)
    assert cond(d, "Stalled")[:2] == ("True", "RecordsLost")
    again = decide(advance(f, d))
    no_release(again)


def test_nothing_happened_yet_releases() -> None:
    # Never handled, nothing recorded: released at once.
    assert isinstance(decide(facts(spec=CREATE)).action, Release)
    # Handled, but the status shows why nothing was sent (paused when created).
    paused = {"lifecycle": {"createAttempt": 0, "paused": True}}
    f = facts(spec=CREATE, status=paused, annotations={LAST_HANDLED: "{}"})
    assert isinstance(decide(f).action, Release)


def test_the_lifecycle_counts_a_409_naming_a_finished_operation_too() -> None:
    # The same rule in the living resource (core/remote.py): a rename answered 409 naming an
    # operation that already ended backs off instead of looping.
    finished = operation(
        "op_s1", op_type="cluster.suspend", state="SUCCEEDED", steps=[], completed_at=1
    )

    def world(action: Action) -> Observation:
        if type(action).__name__ == "RenameCluster":
            conflict = AkuaConflict(
                "ABORTED", status=409, code=10, metadata={"active_operation_id": "op_s1"}
            )
            return ApiFailed(conflict, action)  # type: ignore[arg-type]
        if isinstance(action, FollowOperation):
            return OperationObserved(finished)
        return ClusterObserved(cluster(name="drifted"))

    f = facts(spec={"clusterId": CID, "name": "prod"}, deleting=False)
    seen: list[str] = []
    obs: Observation = None
    for _ in range(40):
        d = decide(f, obs)
        seen.extend(reasons(d))
        if isinstance(d.action, Requeue):
            break
        f = advance(f, d)
        obs = world(d.action)
    assert isinstance(d.action, Requeue), "no backoff"
    assert seen.count("WaitingForOperation") == 1
