"""Deletion protection (spec.deletion.protection) in the decision core, through decide()."""

from __future__ import annotations

from dataclasses import replace

from akc_factories import CID, cluster, delete_steps, facts, operation

from akua_operator.core import Decision, Facts, advance, decide
from akua_operator.core.deletion import Phase, phase_of
from akua_operator.core.types import (
    ClusterObserved,
    DeleteCluster,
    EventType,
    FollowOperation,
    Release,
    Requeue,
)

PROTECTED = {"clusterId": CID, "deletion": {"protection": True}}
RECORDED = {"clusterId": CID, "etag": "e1", "workspaceId": "ws_1"}


def cond(decision: Decision, type_: str) -> tuple[str, str, str]:
    for c in decision.status.conditions:
        if c.type == type_:
            return (str(c.status), c.reason, c.message)
    raise AssertionError(f"no {type_} condition")


def unprotect(f: Facts) -> Facts:
    spec = f.spec.model_copy(
        update={"deletion": f.spec.deletion.model_copy(update={"protection": False})}
    )
    return replace(f, spec=spec)


def test_protected_deletion_holds_without_an_akua_call() -> None:
    f = facts(spec=PROTECTED, status=RECORDED)
    assert phase_of(f, f.status) == Phase.PROTECTED
    d = decide(f)
    assert isinstance(d.action, Requeue)
    stalled = cond(d, "Stalled")
    assert stalled[:2] == ("True", "DeletionProtected")
    assert "spec.deletion.protection" in stalled[2]
    assert "akua.dev/orphan=true" in stalled[2]
    assert [(e.type, e.reason) for e in d.events] == [(EventType.WARNING, "DeletionProtected")]
    assert d.status.deletion is None or d.status.deletion.attempt == 0
    # the next cycle holds again, without a second Warning Event
    d2 = decide(advance(f, d))
    assert isinstance(d2.action, Requeue)
    assert d2.events == ()


def test_turning_protection_off_lets_the_deletion_go_on() -> None:
    f = facts(spec=PROTECTED, status=RECORDED)
    held = advance(f, decide(f))
    free = unprotect(held)
    d = decide(free)
    assert isinstance(d.action, DeleteCluster)
    assert cond(d, "Stalled")[0] == "False"
    assert cond(d, "Reconciling")[:2] == ("True", "Deleting")


def test_orphan_annotation_beats_protection() -> None:
    f = facts(spec=PROTECTED, status=RECORDED, annotations={"akua.dev/orphan": "true"})
    d = decide(f)
    assert isinstance(d.action, Release)
    assert d.action.cause == "orphan"


def test_crd_guard_releases_a_protected_resource_without_deleting() -> None:
    f = replace(facts(spec=PROTECTED, status=RECORDED), crd_deleting=True)
    d = decide(f)
    assert isinstance(d.action, Release)
    assert d.action.cause == "crd-guard"


def test_a_delete_already_sent_goes_on_when_protection_is_set_later() -> None:
    f = facts(status=RECORDED)
    d = decide(f)
    assert isinstance(d.action, DeleteCluster)
    f = advance(f, d)
    # protection set after the DELETE was sent (its answer not recorded yet): resent, not held
    protected = replace(f, spec=facts(spec=PROTECTED).spec)
    assert phase_of(protected, protected.status) == Phase.DELETING
    assert isinstance(decide(protected).action, DeleteCluster)
    # and once its operation is recorded, it is followed
    from akua_operator.core.types import OperationObserved

    d = decide(protected, OperationObserved(operation(steps=delete_steps(1)), accepted=True))
    protected = advance(protected, d)
    assert phase_of(protected, protected.status) == Phase.FOLLOWING
    assert isinstance(decide(protected).action, FollowOperation)


def test_protection_holds_before_the_etag_is_read() -> None:
    # nothing recorded but the cluster id (adopted): no ObserveCluster either
    f = facts(spec=PROTECTED, status={"clusterId": CID, "workspaceId": "ws_1"})
    d = decide(f)
    assert isinstance(d.action, Requeue)
    d = decide(unprotect(advance(f, d)))
    assert not isinstance(d.action, Requeue)
    d2 = decide(unprotect(advance(f, d)), ClusterObserved(cluster()))
    assert isinstance(d2.action, DeleteCluster)


def test_protection_set_on_a_retained_deletion_holds_it_instead_of_retrying() -> None:
    from akc_factories import UID

    from akua_operator.core.types import ClusterObserved, ObserveCluster, OperationObserved

    retain = {"clusterId": CID, "deletion": {"onFailure": "Retain", "maxRetries": 0}}
    f = facts(spec=retain, status=RECORDED)
    f = advance(f, decide(f))  # DELETE sent
    failed = operation(state="FAILED", steps=delete_steps(1, False), error="workers stuck")
    d = decide(f, OperationObserved(failed, accepted=True))
    assert cond(d, "Stalled")[:2] == ("True", "DeleteRetained")
    retained = d.status.dump()
    # setting protection changes the spec (a new generation): held, not retried
    protected = {**retain, "deletion": {**retain["deletion"], "protection": True}}
    d = decide(facts(spec=protected, status=retained, generation=2))
    assert isinstance(d.action, Requeue)
    assert cond(d, "Stalled")[:2] == ("True", "DeletionProtected")
    # turning it off (generation 3) retries the delete
    d = decide(facts(spec=retain, status=d.status.dump(), generation=3))
    assert d.action == ObserveCluster(CID, workspace="ws_1")
    d2 = decide(
        advance(facts(spec=retain, status=d.status.dump(), generation=3), d),
        ClusterObserved(cluster(etag="e3")),
    )
    assert isinstance(d2.action, DeleteCluster)
    assert d2.action.idempotency_key == f"{UID}-delete-2-2"
