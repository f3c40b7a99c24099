"""Guards against mass deletion, through decide(): the CRD guard and the deletion budget."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from akc_factories import CID, NOW, UID, cluster, facts, operation, step

from akua_operator.core import Decision, Facts, Tuning, advance, decide
from akua_operator.core.guards import crd_read_needed, released_record
from akua_operator.core.types import (
    ApiFailed,
    ClusterObserved,
    DeleteCluster,
    DeleteDeferred,
    EventType,
    ObserveCluster,
    OperationObserved,
    Release,
    Requeue,
)
from akua_operator.resource.models import ANNOTATION_APPROVE_DELETE


def cond(decision: Decision, type_: str) -> tuple[str, str, str]:
    for c in decision.status.conditions:
        if c.type == type_:
            return (str(c.status), c.reason, c.message)
    raise AssertionError(f"no {type_} condition")


def crd_deleting(f: Facts, *, delete: bool = False) -> Facts:
    return replace(f, crd_deleting=True, tuning=replace(f.tuning, delete_on_crd_deletion=delete))


# --- the CRD guard -------------------------------------------------------------------------


def test_crd_deletion_releases_without_deleting_and_says_so() -> None:
    d = decide(crd_deleting(facts(status={"etag": "e1", "clusterId": CID})))
    assert isinstance(d.action, Release)
    assert d.action.cause == "crd-guard"
    assert [(e.type, e.reason) for e in d.events] == [(EventType.WARNING, "ReleasedByCRDDeletion")]
    message = d.events[0].message
    assert CID in message
    assert "NOT deleted" in message
    assert "akuaclusters.akua.dev" in message
    # nothing about a DELETE was recorded
    assert d.status.deletion is None or d.status.deletion.attempt == 0


def test_without_crd_deletion_the_guard_does_nothing() -> None:
    d = decide(facts(status={"etag": "e1", "clusterId": CID}))
    assert isinstance(d.action, DeleteCluster)
    assert "ReleasedByCRDDeletion" not in [e.reason for e in d.events]


def test_on_crd_deletion_delete_deletes() -> None:
    d = decide(crd_deleting(facts(status={"etag": "e1", "clusterId": CID}), delete=True))
    assert isinstance(d.action, DeleteCluster)
    assert d.events == ()


def test_orphan_annotation_and_policy_orphan_come_before_the_crd_guard() -> None:
    by_annotation = decide(crd_deleting(facts(annotations={"akua.dev/orphan": "true"})))
    by_policy = decide(
        crd_deleting(facts(spec={"clusterId": CID, "deletion": {"policy": "Orphan"}}))
    )
    for d in (by_annotation, by_policy):
        assert isinstance(d.action, Release)
        assert d.action.cause != "crd-guard"
        assert [e.reason for e in d.events] == ["Orphaned"]


def test_crd_guard_releases_before_any_akua_call_even_mid_observation() -> None:
    """The guard holds at every step of a cycle, e.g. when a GET was just answered."""
    f = crd_deleting(facts())
    d = decide(f, ClusterObserved(cluster(etag="fresh")))
    assert isinstance(d.action, Release)
    assert d.action.cause == "crd-guard"


def test_a_delete_already_started_goes_on_when_the_crd_is_deleted_afterwards() -> None:
    """The resource was deleted on its own first: that deletion was asked for; it finishes."""
    status = {
        "etag": "e1",
        "clusterId": CID,
        "deletion": {
            "attempt": 1,
            "requests": 1,
            "pending": True,
            "ifMatch": "e1",
            "idempotencyKey": f"{UID}-delete-1-1",
        },
    }
    d = decide(crd_deleting(facts(status=status)))
    assert d.action == DeleteCluster(CID, "e1", f"{UID}-delete-1-1")
    assert "ReleasedByCRDDeletion" not in [e.reason for e in d.events]


def test_crd_guard_without_a_cluster_id_names_the_running_operation() -> None:
    status = {
        "operation": {"id": "op_c1", "type": "cluster.create", "state": "RUNNING", "done": False}
    }
    d = decide(crd_deleting(facts(spec={"name": "prod", "regionId": "r1"}, status=status)))
    assert isinstance(d.action, Release)
    assert d.action.cause == "crd-guard"
    assert "op_c1" in d.events[0].message


# --- the deletion budget: which DELETE is budgeted -------------------------------------------


def test_the_first_delete_is_budgeted_and_an_approved_one_is_not() -> None:
    plain = decide(facts(status={"etag": "e1"}))
    assert isinstance(plain.action, DeleteCluster) and plain.action.budgeted
    approved = decide(facts(status={"etag": "e1"}, annotations={ANNOTATION_APPROVE_DELETE: "true"}))
    assert isinstance(approved.action, DeleteCluster) and not approved.action.budgeted
    other = decide(facts(status={"etag": "e1"}, annotations={ANNOTATION_APPROVE_DELETE: "yes"}))
    assert isinstance(other.action, DeleteCluster) and other.action.budgeted


def test_a_409_retry_within_the_attempt_is_not_budgeted() -> None:
    from akua_operator.akua.errors import AkuaConflict

    f = facts(status={"etag": "stale"})
    d = decide(f)
    assert isinstance(d.action, DeleteCluster) and d.action.budgeted
    conflict = AkuaConflict("etag mismatch", status=409, code=10, metadata={"etag": "cur"})
    d2 = decide(advance(f, d), ApiFailed(conflict, d.action))
    assert isinstance(d2.action, DeleteCluster)
    assert d2.action.if_match == "cur" and not d2.action.budgeted


def test_a_new_attempt_after_a_failed_operation_is_budgeted_again() -> None:
    f = facts(status={"etag": "e1"}, spec={"clusterId": CID, "deletion": {"maxRetries": 2}})
    d = decide(f)
    f = advance(f, d)
    failed = operation(
        state="FAILED",
        error="boom",
        steps=[step("drain_workloads", "failed", retryable=True, error_message="boom")],
    )
    d = decide(f, OperationObserved(failed, accepted=True))
    assert isinstance(d.action, Requeue)
    f = replace(advance(f, d), now=NOW + timedelta(seconds=60))
    d = decide(f)
    assert d.action == ObserveCluster(CID, workspace="ws_1")
    d = decide(advance(f, d), ClusterObserved(cluster(etag="e2")))
    assert isinstance(d.action, DeleteCluster)
    assert d.action.idempotency_key == f"{UID}-delete-2-2"
    assert d.action.budgeted


# --- the deletion budget: deferred -----------------------------------------------------------


def deferred(f: Facts, retry_in: float = 25.0, limit: int = 2) -> Decision:
    """What the runtime does when the budget refuses: decide again from the status before."""
    d = decide(f)
    assert isinstance(d.action, DeleteCluster) and d.action.budgeted
    return decide(f, DeleteDeferred(limit_per_minute=limit, retry_in=retry_in))


def test_a_deferred_delete_waits_with_a_condition_and_one_event() -> None:
    f = facts(status={"etag": "e1"})
    d = deferred(f)
    assert d.action == Requeue(10.0, "WaitingForDeletionBudget")  # min(retry_in, max_requeue)
    status, reason, message = cond(d, "Reconciling")
    assert (status, reason) == ("True", "WaitingForDeletionBudget")
    assert "2 Akua deletions per minute" in message
    assert "starts as soon as a slot is free" in message
    assert "kubectl annotate akuacluster prod -n ns akua.dev/approve-delete=true" in message
    assert cond(d, "Stalled")[0] == "False"
    assert [(e.type, e.reason) for e in d.events] == [(EventType.NORMAL, "DeletionBudgetWait")]
    # the refused DELETE was never recorded: no key, no attempt, nothing pending
    assert d.status.deletion is None or (
        d.status.deletion.attempt == 0 and not d.status.deletion.pending
    )
    assert d.status_patch is not None
    assert "deletion" not in d.status_patch or not d.status_patch["deletion"].get("pending")


def test_a_short_retry_in_requeues_that_soon() -> None:
    d = deferred(facts(status={"etag": "e1"}), retry_in=3.0)
    assert d.action == Requeue(3.0, "WaitingForDeletionBudget")


def test_deferred_again_emits_no_second_event() -> None:
    f = facts(status={"etag": "e1"})
    first = deferred(f)
    again = deferred(replace(advance(f, first), now=NOW + timedelta(seconds=10)), retry_in=15)
    assert again.events == ()
    assert cond(again, "Reconciling")[1] == "WaitingForDeletionBudget"


def test_a_recheck_while_waiting_for_the_budget_writes_nothing() -> None:
    # The message holds no countdown: a recheck 10 s later (another retry_in) changes no status
    # field, so it is no status write and no `kubectl get -w` line.
    f = facts(status={"etag": "e1"})
    first = deferred(f, retry_in=25)
    again = deferred(replace(advance(f, first), now=NOW + timedelta(seconds=10)), retry_in=15)
    assert again.status_patch is None
    assert cond(again, "Reconciling") == cond(first, "Reconciling")


def test_approving_a_waiting_delete_sends_it_unbudgeted() -> None:
    f = facts(status={"etag": "e1"})
    waiting = advance(f, deferred(f))
    approved = replace(
        waiting, meta=replace(waiting.meta, annotations={ANNOTATION_APPROVE_DELETE: "true"})
    )
    d = decide(approved)
    assert d.action == DeleteCluster(CID, "e1", f"{UID}-delete-1-1", budgeted=False)
    assert cond(d, "Reconciling")[1] == "Deleting"


def test_a_waiting_delete_is_released_by_the_crd_guard() -> None:
    f = facts(status={"etag": "e1", "clusterId": CID})
    waiting = advance(f, deferred(f))
    d = decide(crd_deleting(waiting))
    assert isinstance(d.action, Release) and d.action.cause == "crd-guard"


def test_a_waiting_delete_can_be_orphaned() -> None:
    f = facts(status={"etag": "e1"})
    waiting = advance(f, deferred(f))
    orphan = {"akua.dev/orphan": "true"}
    d = decide(replace(waiting, meta=replace(waiting.meta, annotations=orphan)))
    assert isinstance(d.action, Release)
    assert [e.reason for e in d.events] == ["Orphaned"]


def test_tuning_defaults_keep_the_guard_on() -> None:
    assert Tuning().delete_on_crd_deletion is False
    assert facts().crd_deleting is False


def test_the_crd_is_read_only_while_the_guard_can_still_act() -> None:
    assert crd_read_needed(facts(status={"etag": "e1"}))
    assert not crd_read_needed(facts(deleting=False))
    assert not crd_read_needed(crd_deleting(facts(), delete=True))
    started = {"deletion": {"attempt": 1, "requests": 1, "operationId": "op_1"}}
    assert not crd_read_needed(facts(status=started))


def test_a_create_whose_answer_was_lost_is_named_in_the_release_and_the_record() -> None:
    status = {
        "lifecycle": {
            "createAttempt": 1,
            "createRequest": {"provider": "managed_kaas", "name": "prod", "regionId": "r1"},
        }
    }
    f = crd_deleting(facts(spec={"name": "prod", "regionId": "r1"}, status=status))
    d = decide(f)
    assert isinstance(d.action, Release) and d.action.cause == "crd-guard"
    assert f"{UID}-create-1" in d.events[0].message
    record = released_record(f, f.status)
    assert record["createIdempotencyKey"] == f"{UID}-create-1"
    assert record["createName"] == "prod"
    assert "clusterId" not in record


def test_the_record_names_the_cluster_and_the_resource() -> None:
    f = facts(status={"clusterId": CID, "workspaceId": "ws_1"})
    record = released_record(f, f.status)
    assert record["clusterId"] == CID
    assert record["workspaceId"] == "ws_1"
    assert (record["namespace"], record["name"], record["uid"]) == ("ns", "prod", UID)
    assert "createIdempotencyKey" not in record
