"""The deletion decisions of the pure core, case by case."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from akc_factories import (
    CID,
    DELETE_STEPS,
    NOW,
    NOW_UNIX,
    UID,
    cluster,
    delete_steps,
    facts,
    operation,
    step,
)

from akua_operator.akua.errors import (
    AkuaConflict,
    AkuaForbidden,
    AkuaHTTPError,
    AkuaNotFound,
    AkuaRateLimited,
    AkuaResponseError,
    AkuaServerError,
    AkuaTimeout,
    AkuaUnauthorized,
    AkuaUnprocessable,
)
from akua_operator.core import Decision, Facts, Tuning, advance, decide
from akua_operator.core.types import (
    Action,
    ApiFailed,
    ClusterGone,
    ClusterObserved,
    CredentialsUnavailable,
    DeleteCluster,
    FollowOperation,
    Observation,
    ObserveCluster,
    OperationObserved,
    Release,
    Requeue,
)


def cond(decision: Decision, type_: str) -> tuple[str, str, str]:
    for c in decision.status.conditions:
        if c.type == type_:
            return (str(c.status), c.reason, c.message)
    raise AssertionError(f"no {type_} condition")


def resent(action: Action) -> Action:
    """The same DELETE sent again: identical request, but never budgeted (core/guards.py)."""
    assert isinstance(action, DeleteCluster)
    return replace(action, budgeted=False)


def run(
    f: Facts, world: Callable[[Action], Observation], limit: int = 30
) -> tuple[list[Action], Decision, list[str]]:
    """Drive the core like the handler does until Release/Requeue; return actions, last, reasons."""
    actions: list[Action] = []
    reasons: list[str] = []
    obs: Observation = None
    for _ in range(limit):
        d = decide(f, obs)
        reasons.extend(e.reason for e in d.events)
        actions.append(d.action)
        if isinstance(d.action, Release | Requeue):
            return actions, d, reasons
        f = advance(f, d)
        obs = world(d.action)
    raise AssertionError(f"no end after {limit} steps: {actions}")


# --- orphaning -----------------------------------------------------------------------------


def test_policy_orphan_releases_without_api_call() -> None:
    d = decide(facts(spec={"clusterId": CID, "deletion": {"policy": "Orphan"}}))
    assert isinstance(d.action, Release)
    assert [e.reason for e in d.events] == ["Orphaned"]
    assert "Orphan" in d.events[0].message


def test_orphan_annotation_releases_even_mid_operation() -> None:
    f = facts(
        annotations={"akua.dev/orphan": "true"},
        status={
            "operation": {"id": "op_1", "type": "cluster.delete", "state": "RUNNING", "done": False}
        },
    )
    d = decide(f)
    assert isinstance(d.action, Release)
    assert d.events[0].reason == "Orphaned"
    assert "akua.dev/orphan" in d.events[0].message


@pytest.mark.parametrize("value", ["false", "", "yes"])
def test_orphan_annotation_other_values_do_not_release(value: str) -> None:
    d = decide(facts(annotations={"akua.dev/orphan": value}, status={"etag": "e1"}))
    assert isinstance(d.action, DeleteCluster)


# --- first DELETE ---------------------------------------------------------------------------


def test_first_delete_uses_stored_etag_and_uid_key_recorded_before_sending() -> None:
    d = decide(facts(status={"etag": "e1", "clusterId": CID}))
    assert d.action == DeleteCluster(CID, "e1", f"{UID}-delete-1-1", budgeted=True)
    assert len(d.action.idempotency_key) <= 64
    assert d.status_patch is not None
    assert d.status_patch["deletion"]["pending"] is True
    assert d.status_patch["deletion"]["ifMatch"] == "e1"
    assert d.status_patch["deletion"]["idempotencyKey"] == f"{UID}-delete-1-1"
    assert cond(d, "Reconciling")[0] == "True"
    assert cond(d, "Ready")[:2] == ("False", "Deleting")


def test_without_stored_etag_reads_cluster_first() -> None:
    f = facts()
    d = decide(f)
    assert d.action == ObserveCluster(CID)
    d2 = decide(advance(f, d), ClusterObserved(cluster(etag="fresh")))
    assert isinstance(d2.action, DeleteCluster)
    assert d2.action.if_match == "fresh"
    assert d2.status.etag == "fresh"


def test_accepted_operation_id_is_recorded_before_following() -> None:
    f = facts(status={"etag": "e1"})
    d = decide(f)
    f = advance(f, d)
    d = decide(f, OperationObserved(operation(steps=delete_steps(0)), accepted=True))
    assert d.action == FollowOperation("op_del1", wait=True, workspace="ws_1")
    assert d.status_patch is not None
    assert d.status_patch["operation"]["id"] == "op_del1"
    assert d.status_patch["deletion"]["operationId"] == "op_del1"
    assert d.status_patch["deletion"]["pending"] is False
    assert "DeleteStarted" in [e.reason for e in d.events]
    assert d.status.progress == "delete 1/4 drain_workloads"


@pytest.mark.parametrize("step_events", [False, True], ids=["default", "step-events"])
def test_full_delete_mirrors_every_step_in_order_and_releases(step_events: bool) -> None:
    script = [operation(steps=delete_steps(i)) for i in range(4)]
    script.append(operation(state="SUCCEEDED", steps=delete_steps(4, running=False)))
    progress: list[str | None] = []
    states: list[str | None] = []
    events: list[str] = []
    reasons: list[str] = []
    f = facts(status={"etag": "e1", "state": "active"}, tuning=Tuning(step_events=step_events))
    obs: Observation = None
    d = decide(f)
    obs = OperationObserved(operation(steps=delete_steps(0)), accepted=True)
    f = advance(f, d)
    for nxt in script:
        d = decide(f, obs)
        progress.append(d.status.progress)
        states.append(d.status.state)
        events.extend(e.message for e in d.events if e.reason == "OperationStep")
        reasons.extend(e.reason for e in d.events)
        f = advance(f, d)
        obs = OperationObserved(nxt)
    d = decide(f, obs)
    events.extend(e.message for e in d.events if e.reason == "OperationStep")
    reasons.extend(e.reason for e in d.events)
    assert isinstance(d.action, Release)
    assert [e.reason for e in d.events][-1] == "Deleted"
    assert "https://akua.dev/operations/op_del1" in d.events[-1].message
    # the STATE column says deleting from the DELETE's answer to the end
    assert states == ["deleting"] * 5
    # the release's status is never empty: it carries the moment of the release
    assert d.status_patch is not None
    assert d.status_patch["deletion"]["releasedAt"] == "2026-11-28T12:00:00.000000Z"
    if not step_events:  # the default: Events at the start and the end only
        assert events == []
        assert reasons == ["DeleteStarted", "Deleted"]
        return
    assert progress == [
        "delete 1/4 drain_workloads",
        "delete 1/4 drain_workloads",
        "delete 2/4 delete_workers",
        "delete 3/4 delete_control_plane",
        "delete 4/4 release_network",
    ]
    # one running + one completed event per step, in order
    running = [m.split()[3] for m in events if " running " in m]
    completed = [m.split()[3] for m in events if " completed " in m]
    assert running == DELETE_STEPS
    assert completed == DELETE_STEPS


def test_step_mirror_has_every_field() -> None:
    f = facts(status={"etag": "e1"})
    f = advance(f, decide(f))
    failing = step(
        "delete_workers",
        "failed",
        error_message="boom",
        retryable=True,
        skippable=True,
        execution_type="user",
    )
    d = decide(
        f,
        OperationObserved(
            operation(steps=[step("drain_workloads", "completed"), failing]), accepted=True
        ),
    )
    assert d.status_patch is not None
    s = d.status_patch["operation"]["steps"][1]
    assert s == {
        "name": "delete_workers",
        "status": "failed",
        "executionType": "user",
        "startedAt": "2023-11-14T22:16:40Z",
        "completedAt": "2023-11-14T22:18:20Z",
        "errorMessage": "boom",
        "retryable": True,
        "skippable": True,
    }
    op = d.status_patch["operation"]
    assert op["type"] == "cluster.delete"
    assert op["htmlUrl"] == "https://akua.dev/operations/op_del1"
    assert op["state"] == "RUNNING"


def test_unchanged_operation_writes_no_status() -> None:
    f = facts(status={"etag": "e1"})
    f = advance(f, decide(f))
    d = decide(f, OperationObserved(operation(steps=delete_steps(1)), accepted=True))
    f = advance(f, d)
    d2 = decide(f, OperationObserved(operation(steps=delete_steps(1))))
    assert d2.status_patch is None
    assert d2.events == ()
    assert d2.action == FollowOperation("op_del1", wait=True, workspace="ws_1")


# --- release on 404 -------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["GET", "DELETE"])
def test_cluster_already_gone_releases(via: str) -> None:
    f = facts()
    f = advance(f, decide(f))
    d = decide(f, ClusterGone(CID, via=via))
    assert isinstance(d.action, Release)
    assert d.events[-1].reason == "AlreadyGone"


def test_no_cluster_id_releases_without_api_call() -> None:
    d = decide(facts(spec={"name": "x", "regionId": "r"}))
    assert isinstance(d.action, Release)


# --- resume after restart -------------------------------------------------------------------


def test_restart_resumes_recorded_operation_without_new_delete() -> None:
    status = {
        "etag": "e1",
        "clusterId": CID,
        "operation": {"id": "op_del1", "type": "cluster.delete", "state": "RUNNING", "done": False},
        "deletion": {"attempt": 1, "requests": 1, "operationId": "op_del1"},
    }
    d = decide(facts(status=status))
    assert d.action == FollowOperation("op_del1", wait=False)


@pytest.mark.parametrize(
    ("read_ago", "wait"), [(None, False), (2, True), (9, True), (11, False), (40, False)]
)
def test_a_run_long_polls_at_once_only_after_a_fresh_answer(
    read_ago: int | None, wait: bool
) -> None:
    # A delete run ends on each change an answer brings (handlers/runtime.py); the run after it
    # starts within a moment of that answer and goes straight on long-polling (:wait answers at
    # once when the operation has ended). After a restart or a quiet while: a GET first.
    op: dict[str, object] = {
        "id": "op_del1",
        "type": "cluster.delete",
        "state": "RUNNING",
        "done": False,
    }
    if read_ago is not None:
        op["lastReadAt"] = (NOW - timedelta(seconds=read_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {
        "etag": "e1",
        "clusterId": CID,
        "operation": op,
        "deletion": {"attempt": 1, "requests": 1, "operationId": "op_del1"},
    }
    d = decide(facts(status=status))
    assert d.action == FollowOperation("op_del1", wait=wait)


def test_restart_with_pending_delete_resends_identical_request() -> None:
    status = {
        "etag": "e1",
        "deletion": {
            "attempt": 1,
            "requests": 1,
            "pending": True,
            "ifMatch": "e1",
            "idempotencyKey": f"{UID}-delete-1-1",
        },
    }
    d = decide(facts(status=status))
    assert d.action == DeleteCluster(CID, "e1", f"{UID}-delete-1-1")


def test_restart_after_success_before_release_releases() -> None:
    status = {
        "operation": {
            "id": "op_del1",
            "type": "cluster.delete",
            "state": "SUCCEEDED",
            "done": True,
        },
        "deletion": {"attempt": 1, "requests": 1, "operationId": "op_del1"},
    }
    d = decide(facts(status=status))
    assert isinstance(d.action, Release)


# --- failed operations ----------------------------------------------------------------------


def failed(op_id: str = "op_del1", retryable: bool = True, state: str = "FAILED") -> Observation:
    steps = [
        step("drain_workloads", "completed"),
        step("delete_workers", "failed", error_message="workers stuck", retryable=retryable),
        step("delete_control_plane"),
        step("release_network"),
    ]
    return OperationObserved(operation(op_id, state=state, steps=steps, error="workers stuck"))


def started(f: Facts, op_id: str = "op_del1") -> Facts:
    d = decide(f)
    if isinstance(d.action, ObserveCluster):
        f = advance(f, d)
        d = decide(f, ClusterObserved(cluster(etag="e-now")))
    assert isinstance(d.action, DeleteCluster)
    f = advance(f, d)
    d = decide(f, OperationObserved(operation(op_id, steps=delete_steps(1)), accepted=True))
    return advance(f, d)


def test_retryable_failure_backs_off_then_new_delete_with_fresh_etag_and_key() -> None:
    f = started(facts(status={"etag": "e1", "state": "active"}))
    assert f.status.state == "deleting"
    d = decide(f, failed())
    assert isinstance(d.action, Requeue)
    assert d.action.delay == 10
    assert "DeleteRetrying" in [e.reason for e in d.events]
    assert d.status.deletion is not None and d.status.deletion.failures == 1
    assert d.status.state is None  # no longer deleting; Akua's state is read before the retry
    f = advance(f, d)
    # too early: still backing off, nothing written
    early = decide(f)
    assert isinstance(early.action, Requeue)
    assert early.status_patch is None
    # later: read the cluster, then DELETE with the new etag and a new key
    later = Facts(
        meta=f.meta, spec=f.spec, status=f.status, now=NOW + timedelta(seconds=11), tuning=f.tuning
    )
    d = decide(later)
    assert d.action == ObserveCluster(CID, workspace="ws_1")
    d = decide(advance(later, d), ClusterObserved(cluster(etag="e2")))
    assert d.action == DeleteCluster(
        CID, "e2", f"{UID}-delete-2-2", workspace="ws_1", budgeted=True
    )
    assert d.status.state == "active"  # as Akua showed it


def test_retries_exhausted_release_records_event() -> None:
    f = started(
        facts(spec={"clusterId": CID, "deletion": {"maxRetries": 0}}, status={"etag": "e1"})
    )
    d = decide(f, failed())
    assert isinstance(d.action, Release)
    ev = d.events[-1]
    assert ev.reason == "DeleteFailed"
    assert ev.type == "Warning"
    assert "workers stuck" in ev.message
    assert "https://akua.dev/operations/op_del1" in ev.message


def test_non_retryable_failure_goes_straight_to_on_failure() -> None:
    f = started(facts(status={"etag": "e1"}))
    d = decide(f, failed(retryable=False))
    assert isinstance(d.action, Release)
    assert "not retryable" in d.events[-1].message


def test_cancelled_without_failed_step_is_not_retried() -> None:
    f = started(
        facts(spec={"clusterId": CID, "deletion": {"onFailure": "Retain"}}, status={"etag": "e1"})
    )
    d = decide(
        f,
        OperationObserved(
            operation(
                state="CANCELLED", steps=delete_steps(1, False), error="cancelled by a person"
            )
        ),
    )
    assert isinstance(d.action, Requeue)
    assert cond(d, "Stalled")[:2] == ("True", "DeleteRetained")


def test_retain_keeps_finalizer_until_retry_annotation_changes() -> None:
    spec = {"clusterId": CID, "deletion": {"onFailure": "Retain", "maxRetries": 0}}
    f = started(facts(spec=spec, status={"etag": "e1"}, annotations={"akua.dev/retry": "1"}))
    d = decide(f, failed())
    assert isinstance(d.action, Requeue)
    stalled = cond(d, "Stalled")
    assert stalled[:2] == ("True", "DeleteRetained")
    assert "akua.dev/retry" in stalled[2]
    f = advance(f, d)
    # nothing changed: keep waiting, no write
    again = decide(f)
    assert isinstance(again.action, Requeue)
    assert again.status_patch is None
    # a new annotation value: retry from a fresh read
    bumped = facts(spec=spec, status=f.status.dump(), annotations={"akua.dev/retry": "2"})
    d = decide(bumped)
    assert d.action == ObserveCluster(CID, workspace="ws_1")
    assert "DeleteRetry" in [e.reason for e in d.events]
    d = decide(advance(bumped, d), ClusterObserved(cluster(etag="e3")))
    assert isinstance(d.action, DeleteCluster)
    assert d.action.idempotency_key == f"{UID}-delete-2-2"


def test_retain_retries_when_generation_changes() -> None:
    spec = {"clusterId": CID, "deletion": {"onFailure": "Retain", "maxRetries": 0}}
    f = started(facts(spec=spec, status={"etag": "e1"}))
    f = advance(f, decide(f, failed()))
    d = decide(facts(spec=spec, status=f.status.dump(), generation=2))
    assert d.action == ObserveCluster(CID, workspace="ws_1")


# --- 409 ------------------------------------------------------------------------------------


def conflict(**metadata: str) -> AkuaConflict:
    return AkuaConflict("ABORTED: etag mismatch", status=409, code=10, metadata=metadata)


def test_409_with_etag_retries_with_that_etag_and_a_new_key() -> None:
    f = facts(status={"etag": "stale"})
    d = decide(f)
    assert isinstance(d.action, DeleteCluster)
    f = advance(f, d)
    d = decide(f, ApiFailed(conflict(etag="current"), d.action))
    assert d.action == DeleteCluster(CID, "current", f"{UID}-delete-1-2")
    assert "ClusterChanged" in [e.reason for e in d.events]
    assert d.status.etag == "current"


def test_409_without_etag_rereads_never_resends_stale_etag() -> None:
    f = facts(status={"etag": "stale"})
    d = decide(f)
    f = advance(f, d)
    d = decide(f, ApiFailed(conflict(), d.action))
    assert d.action == ObserveCluster(CID)
    assert d.status.deletion is not None and d.status.deletion.pending is False
    # a restart now must not resend the stale request
    assert decide(advance(f, d)).action == ObserveCluster(CID)


def test_a_stale_reread_after_409_never_resends_the_refused_etag() -> None:
    # The contract promises no read-your-writes: the re-read after an etag mismatch may still
    # show the etag Akua just refused. Sending it again can only get another 409.
    f = facts(status={"etag": "stale"})
    d = decide(f)
    f = advance(f, d)
    d = decide(f, ApiFailed(conflict(), d.action))
    assert d.action == ObserveCluster(CID)
    f = advance(f, d)
    d = decide(f, ClusterObserved(cluster(etag="stale")))
    assert isinstance(d.action, Requeue)
    assert "stale read" in d.action.reason
    assert d.status.deletion is not None and d.status.deletion.next_attempt_at is not None
    f = replace(advance(f, d), now=NOW + timedelta(seconds=d.action.delay))
    d = decide(f)  # after the backoff: read again, and the fresh read is used
    assert d.action == ObserveCluster(CID, workspace="ws_1")
    f = advance(f, d)
    d = decide(f, ClusterObserved(cluster(etag="current")))
    assert d.action == DeleteCluster(CID, "current", f"{UID}-delete-1-2", workspace="ws_1")


def test_after_a_409_naming_a_running_operation_the_same_etag_is_sent_again() -> None:
    # Etags need not change on Akua's own changes: once the operation that refused the DELETE
    # ended, the etag the DELETE carried may be the current one (not a stale read).
    f = facts(status={"etag": "e1"})
    d = decide(f)
    f = advance(f, d)
    d = decide(f, ApiFailed(conflict(active_operation_id="op_susp"), d.action))
    f = advance(f, d)
    done = operation(
        "op_susp",
        op_type="cluster.suspend",
        state="SUCCEEDED",
        steps=[step("drain_workloads", "completed")],
    )
    d = decide(f, OperationObserved(done))
    assert isinstance(d.action, ObserveCluster)
    f = advance(f, d)
    d = decide(f, ClusterObserved(cluster(etag="e1", state="suspended")))
    assert d.action == DeleteCluster(CID, "e1", f"{UID}-delete-1-2", workspace="ws_1")


def test_a_restart_after_a_409_naming_our_running_delete_attaches_without_a_new_key() -> None:
    # A DELETE killed in flight is resent under its key after a restart; Akua may check the
    # running operation before the key (the contract allows it) and answer 409 naming the
    # delete the first request started. Killed again before that operation was read, the next
    # run must wait for it (recorded in status), not read the cluster and send a new DELETE.
    status = {
        "etag": "e1",
        "deletion": {
            "attempt": 1,
            "requests": 1,
            "pending": True,
            "ifMatch": "e1",
            "idempotencyKey": f"{UID}-delete-1-1",
        },
    }
    f = facts(status=status)
    d = decide(f)
    assert d.action == DeleteCluster(CID, "e1", f"{UID}-delete-1-1")
    f = advance(f, d)
    d = decide(f, ApiFailed(conflict(active_operation_id="op_del1"), d.action))
    assert d.action == FollowOperation("op_del1", wait=False)
    assert d.status.deletion is not None
    assert d.status.deletion.awaited_operation_id == "op_del1"
    restarted = advance(f, d)  # a new run (or a restart) decides from this status alone
    d = decide(restarted)
    assert d.action == FollowOperation("op_del1", wait=False)
    f = advance(restarted, d)
    d = decide(f, OperationObserved(operation("op_del1", steps=delete_steps(1))))
    assert d.action == FollowOperation("op_del1", wait=True, workspace="ws_1")
    assert "DeleteAttached" in [e.reason for e in d.events]
    assert d.status.deletion is not None
    assert d.status.deletion.operation_id == "op_del1"
    assert d.status.deletion.awaited_operation_id is None
    assert d.status.deletion.idempotency_key == f"{UID}-delete-1-1"


def test_an_awaited_operation_that_vanished_reads_the_cluster() -> None:
    f = facts(status={"etag": "e1"})
    d = decide(f)
    f = advance(f, d)
    d = decide(f, ApiFailed(conflict(active_operation_id="op_susp"), d.action))
    f = advance(f, d)
    d = decide(f, ApiFailed(AkuaNotFound("no such op", status=404), d.action))
    assert d.action == ObserveCluster(CID)
    assert d.status.deletion is not None and d.status.deletion.awaited_operation_id is None
    assert decide(advance(f, d)).action == ObserveCluster(CID)


def test_409_loop_is_bounded() -> None:
    def world(action: Action) -> Observation:
        if isinstance(action, DeleteCluster):
            return ApiFailed(conflict(etag=f"e{action.idempotency_key[-2:]}"), action)
        return ClusterObserved(cluster())

    actions, last, _ = run(facts(status={"etag": "e0"}), world)
    assert isinstance(last.action, Requeue)
    assert sum(isinstance(a, DeleteCluster) for a in actions) == 6


def test_409_other_operation_running_waits_then_deletes() -> None:
    f = facts(status={"etag": "e1"})
    d = decide(f)
    f = advance(f, d)
    d = decide(f, ApiFailed(conflict(active_operation_id="op_susp"), d.action))
    assert d.action == FollowOperation("op_susp", wait=False)
    f = advance(f, d)
    susp = operation(
        "op_susp", op_type="cluster.suspend", steps=[step("drain_workloads", "running")]
    )
    d = decide(f, OperationObserved(susp))
    assert d.action == FollowOperation("op_susp", wait=True, workspace="ws_1")
    assert d.status.progress == "suspend 1/1 drain_workloads"
    f = advance(f, d)
    done = operation(
        "op_susp",
        op_type="cluster.suspend",
        state="SUCCEEDED",
        steps=[step("drain_workloads", "completed")],
    )
    d = decide(f, OperationObserved(done))
    assert d.action == ObserveCluster(CID, workspace="ws_1")
    f = advance(f, d)
    d = decide(f, ClusterObserved(cluster(etag="e9", state="suspended")))
    assert d.action == DeleteCluster(CID, "e9", f"{UID}-delete-1-2", workspace="ws_1")


def test_409_running_delete_is_attached() -> None:
    f = facts(status={"etag": "e1"})
    d = decide(f)
    f = advance(f, d)
    d = decide(f, ApiFailed(conflict(active_operation_id="op_other_del"), d.action))
    f = advance(f, d)
    d = decide(f, OperationObserved(operation("op_other_del", steps=delete_steps(2))))
    assert d.action == FollowOperation("op_other_del", wait=True, workspace="ws_1")
    assert d.status.deletion is not None
    assert d.status.deletion.operation_id == "op_other_del"
    assert "Attached" in next(e.message for e in d.events if e.reason == "DeleteAttached")
    assert "DeleteStarted" not in [e.reason for e in d.events]


def test_delete_answered_with_an_already_running_delete_says_attached() -> None:
    # Akua answers a DELETE on a cluster being deleted with 202 and the running operation.
    f = facts(status={"etag": "e1"})
    d = decide(f)
    assert isinstance(d.action, DeleteCluster)
    assert d.status.deletion is not None
    assert d.status.deletion.requested_at == "2026-11-28T12:00:00Z"
    f = advance(f, d)
    running = operation("op_ui_del", steps=delete_steps(2), started_at=NOW_UNIX - 600)
    d = decide(f, OperationObserved(running, accepted=True))
    assert d.action == FollowOperation("op_ui_del", wait=True, workspace="ws_1")
    (event,) = [e for e in d.events if e.reason in ("DeleteStarted", "DeleteAttached")]
    assert event.reason == "DeleteAttached"
    assert "already running" in event.message and "op_ui_del" in event.message
    # Our own, fresh operation (a few seconds of clock skew allowed) is Started.
    f2 = facts(status={"etag": "e1"})
    f2 = advance(f2, decide(f2))
    fresh = operation("op_mine", steps=delete_steps(0), started_at=NOW_UNIX - 2)
    d2 = decide(f2, OperationObserved(fresh, accepted=True))
    assert d2.events[0].reason == "DeleteStarted"
    assert d2.events[0].message.startswith("Started delete")


# --- credentials and transient failures ----------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (AkuaUnauthorized("invalid token", status=401), "CredentialsRejected"),
        (AkuaForbidden("not an owner", status=403), "CredentialsForbidden"),
    ],
)
def test_credential_errors_stall_with_long_backoff_and_keep_finalizer(
    error: Exception, reason: str
) -> None:
    f = facts(
        spec={"clusterId": CID, "credentials": {"secretRef": {"name": "akua-creds"}}},
        status={"etag": "e1"},
    )
    d = decide(f)
    f = advance(f, d)
    assert isinstance(d.action, DeleteCluster)
    d2 = decide(f, ApiFailed(error, d.action))  # type: ignore[arg-type]
    # The 60 s backoff is recorded; kopf is asked back within 10 s (annotations act then).
    assert d2.action == Requeue(10.0, reason)
    assert d2.status.deletion is not None
    assert d2.status.deletion.next_attempt_at == "2026-11-28T12:01:00Z"
    status, why, message = cond(d2, "Stalled")
    assert (status, why) == ("True", reason)
    assert "Secret akua-creds" in message
    assert [e.reason for e in d2.events] == [reason]
    # within the backoff: no Akua call, nothing written
    early = decide(advance(f, d2))
    assert isinstance(early.action, Requeue) and early.action.delay <= 10
    assert early.status_patch is None
    # the DELETE stays pending: the next try resends it unchanged
    d3 = decide(later(advance(f, d2), 61))
    assert d3.action == resent(d.action)
    # the same failure again does not emit a second Event
    d4 = decide(later(advance(advance(f, d2), d3), 61), ApiFailed(error, d.action))  # type: ignore[arg-type]
    assert d4.events == ()


def test_missing_credentials_stall() -> None:
    d = decide(facts(status={"etag": "e1"}), CredentialsUnavailable("Secret ns/x not found"))
    assert cond(d, "Stalled")[:2] == ("True", "CredentialsUnavailable")
    assert isinstance(d.action, Requeue)


@pytest.mark.parametrize(
    "error",
    [
        AkuaServerError("unavailable", status=503),
        AkuaTimeout("read timeout"),
        AkuaRateLimited("slow down", status=429, retry_after=7),
    ],
)
def test_transient_errors_back_off_and_resend_same_request(error: Exception) -> None:
    f = facts(status={"etag": "e1"})
    d = decide(f)
    f = advance(f, d)
    d2 = decide(f, ApiFailed(error, d.action))  # type: ignore[arg-type]
    assert isinstance(d2.action, Requeue)
    assert d2.action.delay >= (7 if isinstance(error, AkuaRateLimited) else 2)
    assert cond(d2, "Stalled")[0] == "False"
    assert cond(d2, "Reconciling")[0] == "True"
    f = advance(f, d2)
    assert decide(f).action == resent(d.action)  # same etag, same key: never a second operation
    d3 = decide(f, ApiFailed(error, d.action))  # type: ignore[arg-type]
    assert isinstance(d3.action, Requeue)
    assert d3.status.api_errors == 2


def later(f: Facts, seconds: float) -> Facts:
    return Facts(
        meta=f.meta,
        spec=f.spec,
        status=f.status,
        now=NOW + timedelta(seconds=seconds),
        tuning=f.tuning,
    )


def backoff_of(d: Decision) -> float:
    """The backoff a decision imposes: its requeue, or the recorded nextAttemptAt."""
    assert isinstance(d.action, Requeue)
    assert d.action.delay <= 10.0
    assert d.status.deletion is not None
    until = d.status.deletion.next_attempt_at
    if until is None or d.action.delay < 10.0:
        return d.action.delay
    return (datetime.fromisoformat(until.replace("Z", "+00:00")) - NOW).total_seconds()


def test_backoff_grows_and_is_capped() -> None:
    f = facts(status={"etag": "e1"})
    d = decide(f)
    delays = []
    current = d
    for _ in range(12):
        f = advance(f, current)
        current = decide(f, ApiFailed(AkuaServerError("x", status=500), d.action))
        delays.append(backoff_of(current))
    assert delays[:4] == [2, 4, 8, 16]
    assert max(delays) == 300


def test_every_deletion_requeue_is_short_and_long_backoffs_are_recorded() -> None:
    # kopf does not rerun the delete handler inside its delay, not even for an annotation:
    # akua.dev/orphan must act within max_requeue (10 s) even during a 120 s Retry-After.
    f = facts(status={"etag": "e1"})
    d = decide(f)
    f = advance(f, d)
    d2 = decide(f, ApiFailed(AkuaRateLimited("slow", status=429, retry_after=120), d.action))
    assert d2.action == Requeue(10.0, "RateLimited")
    assert d2.status.deletion is not None
    assert d2.status.deletion.next_attempt_at == "2026-11-28T12:02:00Z"
    f = advance(f, d2)
    for t in (10, 50, 115):
        wait = decide(later(f, t))
        assert isinstance(wait.action, Requeue) and wait.action.delay <= 10
        assert wait.status_patch is None and wait.events == ()
    assert decide(later(f, 115)).action == Requeue(5.0, "backing off")
    # an annotation set during the backoff acts on the next (short) requeue
    orphan = Facts(
        meta=replace(f.meta, annotations={"akua.dev/orphan": "true"}),
        spec=f.spec,
        status=f.status,
        now=NOW + timedelta(seconds=10),
        tuning=f.tuning,
    )
    assert isinstance(decide(orphan).action, Release)
    # after the backoff: the same DELETE is resent
    assert decide(later(f, 121)).action == resent(d.action)


def test_retained_deletion_requeues_within_max_requeue() -> None:
    spec = {"clusterId": CID, "deletion": {"onFailure": "Retain", "maxRetries": 0}}
    f = started(facts(spec=spec, status={"etag": "e1"}))
    d = decide(f, failed())
    assert isinstance(d.action, Requeue) and d.action.delay <= 10
    again = decide(advance(f, d))
    assert isinstance(again.action, Requeue) and again.action.delay <= 10


def test_max_requeue_is_a_tuning() -> None:
    f = facts(status={"etag": "e1"}, tuning=Tuning(max_requeue=3.0))
    d = decide(f)
    d2 = decide(advance(f, d), ApiFailed(AkuaServerError("x", status=500), d.action))
    assert d2.action == Requeue(2.0, "ApiUnavailable")
    d3 = decide(advance(advance(f, d), d2), ApiFailed(AkuaServerError("x", status=500), d.action))
    assert d3.action == Requeue(3.0, "ApiUnavailable")


def test_malformed_response_sets_condition_keeps_finalizer() -> None:
    f = facts(status={"etag": "e1"})
    d = decide(f)
    f = advance(f, d)
    d2 = decide(f, ApiFailed(AkuaResponseError("invalid JSON"), d.action))
    assert isinstance(d2.action, Requeue)
    assert cond(d2, "Stalled")[:2] == ("True", "InvalidApiResponse")


def test_422_on_delete_is_not_resent_with_same_key() -> None:
    f = facts(status={"etag": "e1"})
    d = decide(f)
    f = advance(f, d)
    d2 = decide(f, ApiFailed(AkuaUnprocessable("installs exist", status=422), d.action))
    assert isinstance(d2.action, Requeue)
    assert cond(d2, "Stalled")[:2] == ("True", "ApiRejected")
    d3 = decide(advance(f, d2))
    assert d3.action == ObserveCluster(CID)


def test_operation_vanished_rereads_cluster() -> None:
    f = started(facts(status={"etag": "e1"}))
    d = decide(f, ApiFailed(AkuaNotFound("no such op", status=404), FollowOperation("op_del1")))
    assert d.action == ObserveCluster(CID, workspace="ws_1")
    assert d.status.operation is None


@pytest.mark.parametrize("status_code", [400, 405, 422, 501])
def test_wait_not_served_falls_back_to_polling_without_stalling(status_code: int) -> None:
    f = started(facts(status={"etag": "e1"}))
    error = AkuaHTTPError("no long poll here", status=status_code)
    d = decide(f, ApiFailed(error, FollowOperation("op_del1", wait=True)))
    assert isinstance(d.action, Requeue)
    assert d.action.delay <= 5.0
    assert not any(c.type == "Stalled" and str(c.status) == "True" for c in d.status.conditions)
    assert d.status.operation is not None and d.status.operation.id == "op_del1"  # kept
    assert isinstance(decide(advance(f, d)).action, FollowOperation)  # resumes following


TOKEN = "sk_akua_supersecret123"


@pytest.mark.parametrize(
    "error",
    [
        AkuaUnauthorized(f"invalid credentials: {TOKEN}", status=401),
        AkuaUnprocessable(f"bad request, Authorization: Bearer {TOKEN}", status=422),
        AkuaServerError(f'upstream said {{"token": "{TOKEN}"}}', status=503),
    ],
    ids=["401", "422-bearer", "503-json"],
)
def test_a_token_in_an_error_message_never_reaches_status_or_events(error: Exception) -> None:
    f = facts(status={"etag": "e1"})
    d = decide(f)
    f = advance(f, d)
    d2 = decide(f, ApiFailed(error, d.action))  # type: ignore[arg-type]
    assert "supersecret123" in str(error)  # the core did see it
    assert "supersecret123" not in str(d2.status.dump())
    assert all("supersecret123" not in e.message for e in d2.events)
    assert "[REDACTED]" in str(d2.status.dump())


def test_a_token_in_operation_text_never_reaches_status_or_events() -> None:
    steps = [
        step("drain_workloads", "completed"),
        step("delete_workers", "failed", error_message=f"used token={TOKEN}", retryable=False),
    ]
    f = started(facts(status={"etag": "e1"}))
    op = operation(state="FAILED", steps=steps, error=f"denied for {TOKEN}")
    d = decide(f, OperationObserved(op))
    assert isinstance(d.action, Release)
    assert "supersecret123" not in str(d.status.dump())
    assert all("supersecret123" not in e.message for e in d.events)
    assert "DeleteFailed" in [e.reason for e in d.events]


def test_scenario_happy_path_exactly_one_delete() -> None:
    ops = iter(
        [operation(steps=delete_steps(i)) for i in range(4)]
        + [operation(state="SUCCEEDED", steps=delete_steps(4, False))]
    )

    def world(action: Action) -> Observation:
        if isinstance(action, DeleteCluster):
            return OperationObserved(operation(steps=delete_steps(0)), accepted=True)
        if isinstance(action, FollowOperation):
            return OperationObserved(next(ops))
        return ClusterObserved(cluster())

    actions, last, reasons = run(facts(), world)
    assert isinstance(last.action, Release)
    assert sum(isinstance(a, DeleteCluster) for a in actions) == 1
    assert reasons[0] == "DeleteStarted"
    assert reasons[-1] == "Deleted"


# --- a 404 is trusted only from the credentials that saw the cluster -------------------------


def creds_spec(
    secret: str | None = "akua-creds", workspace: str | None = None
) -> dict[str, object]:
    creds: dict[str, object] = {}
    if secret is not None:
        creds["secretRef"] = {"name": secret}
    if workspace is not None:
        creds["workspaceId"] = workspace
    return {"clusterId": CID, "credentials": creds}


def test_an_observation_records_which_credentials_saw_the_cluster() -> None:
    f = facts(spec=creds_spec(workspace="ws_1"))
    d = decide(f)
    d = decide(advance(f, d), ClusterObserved(cluster(etag="e1")))
    assert d.status.credentials_identity == "Secret akua-creds key token, workspace ws_1"
    default = facts()
    d = decide(advance(default, decide(default)), ClusterObserved(cluster(etag="e1")))
    assert d.status.credentials_identity == "operator default"


@pytest.mark.parametrize("via", ["GET", "DELETE"])
@pytest.mark.parametrize(
    "now",
    [creds_spec("other-creds"), creds_spec(workspace="ws_2"), {"clusterId": CID}],
    ids=["other-secret", "other-workspace", "operator-default"],
)
def test_changed_credentials_still_ask_the_recorded_workspace_and_its_404_releases(
    via: str, now: dict[str, object]
) -> None:
    # Issue 10 item 3: what proves "gone" is the workspace the request named (akua-context),
    # not the Secret's name: with other credentials the calls still name the cluster's
    # workspace (a token that cannot see it gets 403), so their 404 is the cluster's.
    # (Before: CredentialsChanged whenever the Secret's name/key or the spec's workspace
    # changed, and any 404 trusted when they had not, e.g. a rotated Secret.)
    seen = facts(spec=creds_spec())
    d = decide(advance(seen, decide(seen)), ClusterObserved(cluster(etag="e1")))
    f = facts(spec=now, status=d.status.dump())
    d = decide(f)
    assert isinstance(d.action, DeleteCluster) and d.action.workspace == "ws_1"
    d = decide(advance(f, d), ClusterGone(CID, via=via, workspace=d.action.workspace))
    assert isinstance(d.action, Release)
    assert d.events[-1].reason == "AlreadyGone"


@pytest.mark.parametrize("via", ["GET", "DELETE"])
def test_404_not_sent_to_the_recorded_workspace_stalls_and_never_releases(via: str) -> None:
    seen = facts(spec=creds_spec())
    d = decide(advance(seen, decide(seen)), ClusterObserved(cluster(etag="e1")))
    f = facts(spec=creds_spec("other-creds"), status=d.status.dump())
    d = decide(f)
    d = decide(advance(f, d), ClusterGone(CID, via=via, workspace=None))
    assert isinstance(d.action, Requeue) and d.action.delay <= 10
    stalled = cond(d, "Stalled")
    assert stalled[:2] == ("True", "NotFoundUnverified")
    assert "Secret akua-creds key token" in stalled[2]  # the credentials changed: said so
    assert "akua.dev/orphan" in stalled[2]
    assert [e.reason for e in d.events] == ["NotFoundUnverified"]
    assert d.status.deletion is not None and d.status.deletion.next_attempt_at is not None
    # No Akua call during the backoff; the escape hatch still works.
    f = advance(f, d)
    wait = decide(f)
    assert isinstance(wait.action, Requeue) and wait.status_patch is None
    orphan = Facts(
        meta=replace(f.meta, annotations={"akua.dev/orphan": "true"}),
        spec=f.spec,
        status=f.status,
        now=f.now,
        tuning=f.tuning,
    )
    assert isinstance(decide(orphan).action, Release)
    # After the backoff Akua is asked again (the pending DELETE, unchanged, in ws_1).
    back = facts(spec=creds_spec(), status=f.status.dump(), now=NOW + timedelta(seconds=61))
    assert decide(back).action == DeleteCluster(CID, "e1", f"{UID}-delete-1-1", workspace="ws_1")


def test_the_handler_may_supply_the_identity() -> None:
    seen = replace(facts(), credentials_identity="operator default (token file A)")
    d = decide(advance(seen, decide(seen)), ClusterObserved(cluster(etag="e1")))
    assert d.status.credentials_identity == "operator default (token file A)"
    f = replace(
        facts(status=d.status.dump()), credentials_identity="operator default (token file B)"
    )
    d = decide(advance(f, decide(f)), ClusterGone(CID, workspace="ws_9"))
    assert cond(d, "Stalled")[:2] == ("True", "NotFoundUnverified")
    assert "token file B" in cond(d, "Stalled")[2]
