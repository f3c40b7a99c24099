"""Documented behaviours of the decision core, each checked through the public ``decide()``.

docs/deletion.md (retries, backoff, Retain, cancelled operations, a step waiting for a person)
and docs/resource.md (suspend/resume drift, ResumeFailed, the region is not drift-checked).
Every test drives the core like the handler does (decide, apply, observe, decide again) and
checks what a user sees: the calls it asks for, the Events, the conditions, the progress text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from akc_factories import CID, UID, cluster, delete_steps, facts, operation, step

from akua_operator.core import Decision, Facts, advance, decide
from akua_operator.core.lifecycle_actions import ResumeCluster, SuspendCluster
from akua_operator.core.types import (
    ClusterObserved,
    DeleteCluster,
    FollowOperation,
    Idle,
    Observation,
    ObserveCluster,
    OperationObserved,
    Release,
    Requeue,
)


def reasons(d: Decision) -> list[str]:
    return [e.reason for e in d.events]


def cond(d: Decision, type_: str) -> tuple[str, str, str]:
    for c in d.status.conditions:
        if c.type == type_:
            return (str(c.status), c.reason, c.message)
    raise AssertionError(f"no {type_} condition")


def at(f: Facts, now: datetime) -> Facts:
    return replace(f, now=now)


def next_attempt(d: Decision) -> datetime:
    assert d.status.deletion is not None and d.status.deletion.next_attempt_at is not None
    return datetime.fromisoformat(d.status.deletion.next_attempt_at.replace("Z", "+00:00"))


def failed_op(op_id: str, *, retryable: bool = True, state: str = "FAILED") -> Any:
    steps = [
        step("drain_workloads", "completed"),
        step("delete_workers", "failed", error_message="workers stuck", retryable=retryable),
        step("delete_control_plane", "skipped" if state == "CANCELLED" else "pending"),
        step("release_network", "skipped" if state == "CANCELLED" else "pending"),
    ]
    return operation(op_id, state=state, steps=steps, error="workers stuck")


class DeletionWorld:
    """Akua as the core sees it: every DELETE starts a new operation, which fails (or ends as
    ``outcome`` says); the clock jumps to ``nextAttemptAt`` whenever the core backs off.

    Records every DELETE (key, etag), every Event reason, and the backoffs in seconds.
    """

    def __init__(self, outcome: Callable[[int], Any]) -> None:
        self.outcome = outcome  # operation id -> the ended operation
        self.deletes: list[DeleteCluster] = []
        self.events: list[str] = []
        self.backoffs: list[float] = []
        self.etags = 0

    def drive(self, f: Facts, limit: int = 200) -> tuple[Facts, Decision]:
        obs: Observation = None
        for _ in range(limit):
            d = decide(f, obs)
            self.events.extend(reasons(d))
            f = advance(f, d)
            match d.action:
                case Release() | Idle():
                    return f, d
                case Requeue():
                    deletion = d.status.deletion
                    if deletion is not None and deletion.retained_generation is not None:
                        return f, d  # Retained: waiting for a person
                    assert deletion is not None and deletion.next_attempt_at is not None
                    moment = next_attempt(d)
                    # Nothing is sent before nextAttemptAt, however often kopf comes back.
                    early = decide(at(f, moment - timedelta(seconds=1)))
                    assert isinstance(early.action, Requeue), early.action
                    self.backoffs.append((moment - f.now).total_seconds())
                    f = at(f, moment)
                    obs = None
                case ObserveCluster():
                    self.etags += 1
                    obs = ClusterObserved(cluster(etag=f"e{self.etags}"))
                case DeleteCluster() as delete:
                    self.deletes.append(delete)
                    op_id = f"op_del{len(self.deletes)}"
                    running = operation(op_id, steps=delete_steps(1))
                    obs = OperationObserved(running, accepted=True)
                case FollowOperation(operation_id=op_id):
                    obs = OperationObserved(self.outcome(int(op_id.removeprefix("op_del"))))
                case other:
                    raise AssertionError(f"unexpected action {other!r}")
        raise AssertionError(f"no end after {limit} steps")


def always_failing(n: int) -> Any:
    return failed_op(f"op_del{n}")


# --- maxRetries and backoff ----------------------------------------------------------------


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_max_retries_new_attempts_then_on_failure(max_retries: int) -> None:
    # maxRetries new DELETE attempts after failed retryable operations: maxRetries + 1 DELETEs
    # in all, one DeleteRetrying per new attempt, then onFailure (Release: DeleteFailed).
    world = DeletionWorld(always_failing)
    spec = {"clusterId": CID, "deletion": {"maxRetries": max_retries}}
    _, last = world.drive(facts(spec=spec, status={"etag": "e0"}))
    assert isinstance(last.action, Release)
    assert len(world.deletes) == max_retries + 1
    assert world.events.count("DeleteRetrying") == max_retries
    assert world.events.count("DeleteFailed") == 1
    assert f"after {max_retries + 1} failed attempts" in last.events[-1].message
    # every attempt carries its own key (attempt, request) and a freshly read etag after the first
    keys = [d.idempotency_key for d in world.deletes]
    assert len(set(keys)) == len(keys)
    assert [k.rsplit("-", 2)[-2] for k in keys] == [str(i + 1) for i in range(max_retries + 1)]
    assert world.deletes[0].if_match == "e0"
    assert all(d.if_match != "e0" for d in world.deletes[1:])


def test_the_last_retry_that_succeeds_releases_as_deleted() -> None:
    # On the boundary: the maxRetries-th new attempt is still made, and its success releases.
    def outcome(n: int) -> Any:
        if n == 3:
            return operation(f"op_del{n}", state="SUCCEEDED", steps=delete_steps(4, False))
        return failed_op(f"op_del{n}")

    world = DeletionWorld(outcome)
    spec = {"clusterId": CID, "deletion": {"maxRetries": 2}}
    _, last = world.drive(facts(spec=spec, status={"etag": "e0"}))
    assert isinstance(last.action, Release)
    assert len(world.deletes) == 3
    assert "Deleted" in world.events
    assert "DeleteFailed" not in world.events


def test_delete_retry_backoff_doubles_from_the_base() -> None:
    world = DeletionWorld(always_failing)
    spec = {"clusterId": CID, "deletion": {"maxRetries": 4}}
    f = facts(spec=spec, status={"etag": "e0"})
    world.drive(replace(f, tuning=replace(f.tuning, delete_retry_base=7.0, backoff_cap=1000.0)))
    assert world.backoffs == [7.0, 14.0, 28.0, 56.0]


def test_delete_retry_backoff_is_capped() -> None:
    world = DeletionWorld(always_failing)
    spec = {"clusterId": CID, "deletion": {"maxRetries": 5}}
    f = facts(spec=spec, status={"etag": "e0"})
    world.drive(replace(f, tuning=replace(f.tuning, delete_retry_base=10.0, backoff_cap=30.0)))
    assert world.backoffs == [10.0, 20.0, 30.0, 30.0, 30.0]


# --- Retain ----------------------------------------------------------------------------------


def test_retain_then_retry_annotation_gets_a_fresh_retry_budget() -> None:
    world = DeletionWorld(always_failing)
    spec = {"clusterId": CID, "deletion": {"onFailure": "Retain", "maxRetries": 1}}
    f, last = world.drive(facts(spec=spec, status={"etag": "e0"}))
    assert cond(last, "Stalled")[:2] == ("True", "DeleteRetained")
    assert (len(world.deletes), world.events.count("DeleteRetrying")) == (2, 1)
    # The person asks again: the budget is maxRetries again, not what is left of it (nothing).
    retry = replace(f, meta=replace(f.meta, annotations={"akua.dev/retry": "1"}))
    f, last = world.drive(retry)
    assert cond(last, "Stalled")[:2] == ("True", "DeleteRetained")
    assert "DeleteRetry" in world.events
    assert (len(world.deletes), world.events.count("DeleteRetrying")) == (4, 2)
    assert world.events.count("DeleteRetained") == 2
    # Retrying restarts the backoff too: the first new attempt waits the base again.
    assert world.backoffs == [10.0, 10.0]


def test_retain_then_spec_change_gets_a_fresh_retry_budget() -> None:
    world = DeletionWorld(always_failing)
    spec = {"clusterId": CID, "deletion": {"onFailure": "Retain", "maxRetries": 2}}
    f, _ = world.drive(facts(spec=spec, status={"etag": "e0"}))
    assert len(world.deletes) == 3
    f, last = world.drive(replace(f, meta=replace(f.meta, generation=2)))
    assert len(world.deletes) == 6
    assert world.events.count("DeleteRetrying") == 4
    assert cond(last, "Stalled")[:2] == ("True", "DeleteRetained")


# --- cancelled operations --------------------------------------------------------------------


def test_cancelled_operation_with_a_retryable_failed_step_is_retried() -> None:
    def outcome(n: int) -> Any:
        if n == 1:
            return failed_op("op_del1", state="CANCELLED")
        return operation(f"op_del{n}", state="SUCCEEDED", steps=delete_steps(4, False))

    world = DeletionWorld(outcome)
    spec = {"clusterId": CID, "deletion": {"onFailure": "Retain"}}
    _, last = world.drive(facts(spec=spec, status={"etag": "e0"}))
    assert isinstance(last.action, Release)
    assert world.events.count("DeleteRetrying") == 1
    assert "DeleteRetained" not in world.events
    assert [d.idempotency_key for d in world.deletes] == [
        f"{UID}-delete-1-1",
        f"{UID}-delete-2-2",
    ]


def test_cancelled_operation_with_a_non_retryable_failed_step_is_not_retried() -> None:
    world = DeletionWorld(lambda n: failed_op(f"op_del{n}", retryable=False, state="CANCELLED"))
    _, last = world.drive(facts(status={"etag": "e0"}))
    assert isinstance(last.action, Release)
    assert len(world.deletes) == 1
    assert "DeleteRetrying" not in world.events
    assert "not retryable" in last.events[-1].message


# --- progress --------------------------------------------------------------------------------


@pytest.mark.parametrize("execution_type", ["user", "approval"])
def test_a_step_waiting_for_a_person_says_so_in_progress_and_reconciling(
    execution_type: str,
) -> None:
    steps = [
        step("drain_workloads", "completed"),
        step("confirm_deletion", "running", execution_type=execution_type),
        step("delete_workers"),
    ]
    f = facts(status={"etag": "e0"})
    d = decide(f)
    assert isinstance(d.action, DeleteCluster)
    d = decide(advance(f, d), OperationObserved(operation(steps=steps), accepted=True))
    assert d.status.progress == "delete 2/3 confirm_deletion (waiting for a person)"
    status, reason, message = cond(d, "Reconciling")
    assert (status, reason) == ("True", "Deleting")
    assert "confirm_deletion (waiting for a person)" in message


def test_a_system_step_does_not_claim_to_wait_for_a_person() -> None:
    steps = [step("drain_workloads", "completed"), step("delete_workers", "running")]
    f = facts(status={"etag": "e0"})
    d = decide(f)
    d = decide(advance(f, d), OperationObserved(operation(steps=steps), accepted=True))
    assert d.status.progress == "delete 2/2 delete_workers"
    assert "person" not in cond(d, "Reconciling")[2]


# --- suspend / resume drift and failures ------------------------------------------------------


def living(**kw: Any) -> Facts:
    return facts(deleting=False, **kw)


def observe(f: Facts, c: Any) -> Decision:
    d = decide(f)
    assert isinstance(d.action, ObserveCluster)
    assert d.action.cluster_id == CID
    return decide(advance(f, d), ClusterObserved(c))


def test_suspended_outside_the_operator_is_reported_once_and_not_undone() -> None:
    enacted = {
        "clusterId": CID,
        "state": "active",
        "etag": "e1",
        "lifecycle": {"enactedGeneration": 3, "enactedSuspended": False},
    }
    spec = {"clusterId": CID, "suspended": False}
    d = observe(living(spec=spec, generation=3, status=enacted), cluster(state="suspended"))
    assert isinstance(d.action, Idle)  # no :resume
    assert reasons(d) == ["SuspendedOutsideOperator"]
    assert d.events[0].type == "Warning"
    assert "suspended outside Kubernetes" in d.events[0].message
    assert d.status.lifecycle is not None
    assert d.status.lifecycle.drift == "SuspendedOutsideOperator"
    assert cond(d, "Ready")[:2] == ("True", "SuspendedOutsideOperator")
    # The next observation: no second Event, nothing written.
    again = observe(
        living(spec=spec, generation=3, status=d.status.dump()), cluster(state="suspended")
    )
    assert isinstance(again.action, Idle)
    assert again.events == ()
    assert again.status_patch is None
    # akua.dev/retry with a new value, or a new generation, resumes it.
    retry = living(
        spec=spec, generation=3, status=d.status.dump(), annotations={"akua.dev/retry": "x"}
    )
    assert isinstance(observe(retry, cluster(state="suspended")).action, ResumeCluster)
    bumped = living(spec=spec, generation=4, status=d.status.dump())
    assert isinstance(observe(bumped, cluster(state="suspended")).action, ResumeCluster)


def resume_op(state: str) -> Any:
    done = state != "RUNNING"
    steps = [
        step("start_control_plane", "completed" if done else "running"),
        step(
            "start_workers",
            "failed" if state == "FAILED" else ("completed" if done else "pending"),
            error_message="no capacity" if state == "FAILED" else None,
        ),
    ]
    return operation(
        "op_r1",
        op_type="cluster.resume",
        state=state,
        steps=steps,
        error="no capacity" if state == "FAILED" else None,
    )


def test_a_failed_resume_stalls_with_resume_failed_until_retry() -> None:
    spec = {"clusterId": CID, "suspended": False}
    f = living(spec=spec, generation=2)
    d = observe(f, cluster(state="suspended", etag="e1"))
    assert d.action == ResumeCluster(CID, "e1", f"{UID}-resume-1", workspace="ws_1")
    f = advance(f, d)
    d = decide(f, OperationObserved(resume_op("RUNNING"), accepted=True))
    assert d.action == FollowOperation("op_r1", wait=True, workspace="ws_1")
    f = advance(f, d)
    d = decide(f, OperationObserved(resume_op("FAILED")))
    assert "ResumeFailed" in reasons(d)
    failed = next(e for e in d.events if e.reason == "ResumeFailed")
    assert failed.type == "Warning"
    assert "no capacity" in failed.message
    f = advance(f, d)
    if isinstance(d.action, ObserveCluster):
        d = decide(f, ClusterObserved(cluster(state="suspended", etag="e2")))
    assert cond(d, "Stalled")[:2] == ("True", "ResumeFailed")
    # Observed again later: still suspended, no new :resume, no new Event.
    later = living(spec=spec, generation=2, status=d.status.dump())
    again = observe(later, cluster(state="suspended", etag="e2"))
    assert isinstance(again.action, Idle)
    assert "ResumeFailed" not in reasons(again)
    assert cond(again, "Stalled")[:2] == ("True", "ResumeFailed")
    # A new akua.dev/retry value tries again, with a new key.
    retry = living(
        spec=spec, generation=2, status=d.status.dump(), annotations={"akua.dev/retry": "1"}
    )
    d = observe(retry, cluster(state="suspended", etag="e2"))
    assert d.action == ResumeCluster(CID, "e2", f"{UID}-resume-2", workspace="ws_1")


def test_the_region_is_not_checked_for_drift() -> None:
    # Akua does not report a cluster's region: a spec.regionId (even a changed one, a new
    # generation) on a managed cluster asks for no call and reports no drift.
    spec = {"clusterId": CID, "regionId": "reg_other"}
    first = observe(living(spec=spec, generation=1), cluster(etag="e1"))
    assert isinstance(first.action, Idle)
    assert reasons(first) == ["Observed"]
    changed = {"clusterId": CID, "regionId": "reg_moved"}
    d = observe(living(spec=changed, generation=2, status=first.status.dump()), cluster(etag="e1"))
    assert isinstance(d.action, Idle)
    assert d.events == ()
    assert cond(d, "Ready")[:2] == ("True", "Active")
    assert cond(d, "Stalled")[0] == "False"
    assert d.status.lifecycle is None or d.status.lifecycle.drift is None


def test_a_real_drift_on_a_resource_with_a_region_is_acted_on() -> None:
    # The counter-check of the test above: the region does not hide other drift.
    spec = {"clusterId": CID, "regionId": "reg_other", "suspended": True}
    d = observe(living(spec=spec), cluster(etag="e1"))
    assert isinstance(d.action, SuspendCluster)
