"""Observation of a living AkuaCluster (adopt), and the status helpers."""

from __future__ import annotations

from datetime import timedelta

from akc_factories import CID, NOW, cluster, facts, operation, step

from akua_operator.akua.errors import AkuaServerError, AkuaUnauthorized
from akua_operator.core import advance, decide
from akua_operator.core.status import merge_patch, progress
from akua_operator.core.types import (
    ApiFailed,
    ClusterGone,
    ClusterObserved,
    FollowOperation,
    Idle,
    ObserveCluster,
    OperationObserved,
    Requeue,
)
from akua_operator.resource.models import OperationStatus


def conds(d: object) -> dict[str, tuple[str, str, int | None]]:
    return {
        c.type: (str(c.status), c.reason, c.observed_generation)
        for c in d.status.conditions  # type: ignore[attr-defined]
    }


def test_adopt_observes_and_records_etag_state_generation() -> None:
    f = facts(deleting=False, generation=3)
    d = decide(f)
    assert d.action == ObserveCluster(CID)
    d = decide(advance(f, d), ClusterObserved(cluster(etag="e7")))
    assert isinstance(d.action, Idle)
    assert d.status_patch is not None
    assert d.status_patch["etag"] == "e7"
    assert d.status_patch["state"] == "active"
    assert d.status_patch["reconciling"] is False
    assert d.status_patch["observedGeneration"] == 3
    assert d.status_patch["clusterId"] == CID
    assert conds(d) == {
        "Ready": ("True", "Active", 3),
        "Reconciling": ("False", "Active", 3),
        "Stalled": ("False", "Active", 3),
    }
    assert [e.reason for e in d.events] == ["Observed"]


def test_periodic_observation_without_change_writes_nothing() -> None:
    f = facts(deleting=False)
    d = decide(advance(f, decide(f)), ClusterObserved(cluster()))
    f2 = facts(deleting=False, status=d.status.dump(), now=NOW + timedelta(minutes=5))
    again = decide(advance(f2, decide(f2)), ClusterObserved(cluster()))
    assert again.status_patch is None
    assert again.events == ()


def test_reconciling_cluster_is_not_ready() -> None:
    f = facts(deleting=False)
    d = decide(
        advance(f, decide(f)), ClusterObserved(cluster(state="provisioning", reconciling=True))
    )
    assert conds(d)["Ready"][0] == "False"
    assert conds(d)["Reconciling"][0] == "True"


def test_cluster_gone_outside_kubernetes_stalls_without_recreate() -> None:
    f = facts(deleting=False)
    d = decide(advance(f, decide(f)), ClusterGone(CID))
    assert isinstance(d.action, Idle)
    assert conds(d)["Stalled"][:2] == ("True", "ClusterNotFound")
    assert d.events[0].reason == "ClusterNotFound"


def test_condition_transition_time_moves_only_on_flip() -> None:
    f = facts(deleting=False)
    d = decide(advance(f, decide(f)), ClusterObserved(cluster()))
    later = facts(deleting=False, status=d.status.dump(), now=NOW + timedelta(hours=1))
    d2 = decide(advance(later, decide(later)), ClusterObserved(cluster(etag="e2")))
    ready = next(c for c in d2.status.conditions if c.type == "Ready")
    assert ready.last_transition_time == "2026-11-28T12:00:00Z"
    d3 = decide(advance(later, decide(later)), ClusterObserved(cluster(state="provisioning")))
    ready = next(c for c in d3.status.conditions if c.type == "Ready")
    assert ready.last_transition_time == "2026-11-28T13:00:00Z"


def test_running_operation_is_followed_and_reported() -> None:
    status = {
        "clusterId": CID,
        "operation": {"id": "op_s", "type": "cluster.suspend", "state": "RUNNING", "done": False},
    }
    f = facts(deleting=False, status=status)
    d = decide(f)
    assert d.action == FollowOperation("op_s", wait=False)
    op = operation(
        "op_s",
        op_type="cluster.suspend",
        steps=[
            step("drain_workloads", "completed"),
            step("stop_workers", "running"),
            step("suspend_control_plane"),
        ],
    )
    d = decide(advance(f, d), OperationObserved(op))
    assert d.action == FollowOperation("op_s", wait=True, workspace="ws_1")
    assert d.status.progress == "suspend 2/3 stop_workers"
    assert conds(d)["Reconciling"][:2] == ("True", "Suspending")


def test_credentials_rejected_while_observing_stalls() -> None:
    f = facts(deleting=False)
    d = decide(
        advance(f, decide(f)), ApiFailed(AkuaUnauthorized("no", status=401), ObserveCluster(CID))
    )
    assert isinstance(d.action, Requeue)
    assert conds(d)["Stalled"][:2] == ("True", "CredentialsRejected")


def test_server_error_while_observing_backs_off() -> None:
    f = facts(deleting=False)
    d = decide(
        advance(f, decide(f)), ApiFailed(AkuaServerError("x", status=503), ObserveCluster(CID))
    )
    assert isinstance(d.action, Requeue)
    assert d.status.api_errors == 1


def test_no_cluster_id_creates() -> None:
    # The lifecycle (core/lifecycle.py, tests/unit/test_lifecycle.py) creates the cluster.
    d = decide(facts(deleting=False, spec={"name": "n", "regionId": "r"}))
    assert type(d.action).__name__ == "CreateCluster"
    assert conds(d)["Reconciling"][:2] == ("True", "Creating")


def test_progress_texts() -> None:
    def op(state: str, *steps: tuple[str, str], done: bool = False) -> OperationStatus:
        return OperationStatus.model_validate(
            {
                "id": "op",
                "type": "cluster.delete",
                "state": state,
                "done": done,
                "steps": [{"name": n, "status": s} for n, s in steps],
            }
        )

    assert progress(op("RUNNING")) == "delete starting"
    assert progress(op("RUNNING", ("a", "completed"), ("b", "running"))) == "delete 2/2 b"
    assert progress(op("SUCCEEDED", ("a", "completed"), ("b", "completed"), done=True)) == (
        "delete 2/2 SUCCEEDED"
    )
    assert progress(op("FAILED", ("a", "completed"), ("b", "failed"), done=True)) == (
        "delete 2/2 FAILED b"
    )


def test_merge_patch_removes_and_replaces() -> None:
    assert merge_patch({"a": 1, "b": {"c": 1, "d": 2}}, {"b": {"c": 1}, "e": [1]}) == {
        "a": None,
        "b": {"d": None},
        "e": [1],
    }
    assert merge_patch({"a": [1, 2]}, {"a": [1, 2]}) == {}
