"""The lifecycle decisions (core/lifecycle.py): create, import, adopt, drift, suspend, pause."""

from __future__ import annotations

from typing import Any

from akc_factories import CID, UID, cluster, facts, operation, step

from akua_operator.akua.errors import AkuaConflict, AkuaNotFound, AkuaServerError, AkuaUnprocessable
from akua_operator.core import Decision, Facts, advance, decide
from akua_operator.core.lifecycle_actions import (
    ClusterAnswered,
    CreateCluster,
    ImportCluster,
    KubeconfigUnavailable,
    RenameCluster,
    ResumeCluster,
    SuspendCluster,
)
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
from akua_operator.resource.models import SecretKeyRef

CREATE = {"name": "prod", "regionId": "reg_eu"}
CREATE_STEPS = ["validate_request", "provision_network", "provision_control_plane", "workers"]
SUSPEND_STEPS = ["drain_workloads", "stop_workers", "suspend_control_plane"]
NEW = "clu_new1"


def conds(d: Decision) -> dict[str, tuple[str, str, int | None]]:
    return {c.type: (str(c.status), c.reason, c.observed_generation) for c in d.status.conditions}


def reasons(d: Decision) -> list[str]:
    return [e.reason for e in d.events]


def living(**kw: Any) -> Facts:
    return facts(deleting=False, **kw)


def create_op(state: str = "RUNNING", **over: Any) -> Any:
    done = state != "RUNNING"
    steps = [step(n, "completed" if done else "pending") for n in CREATE_STEPS]
    if state == "FAILED":
        steps[2] = step(CREATE_STEPS[2], "failed", error_message="no capacity", retryable=True)
    return operation(
        "op_create1",
        op_type="cluster.create",
        state=state,
        steps=steps,
        owner_id=NEW,
        response={"type": "cluster.create", "cluster_id": NEW} if state == "SUCCEEDED" else None,
        error="no capacity" if state == "FAILED" else None,
        **over,
    )


def then(f: Facts, d: Decision) -> Facts:
    return advance(f, d)


# --- create --------------------------------------------------------------------------------


def test_create_records_attempt_before_the_post_with_uid_key() -> None:
    f = living(spec=CREATE, generation=2)
    d = decide(f)
    assert d.action == CreateCluster("prod", "reg_eu", None, f"{UID}-create-1")
    # The attempt is in the status patch, written before the action is performed.
    assert d.status_patch is not None
    assert d.status_patch["lifecycle"]["createAttempt"] == 1
    assert conds(d)["Reconciling"] == ("True", "Creating", 2)
    assert reasons(d) == ["Creating"]


def test_create_operation_recorded_then_followed() -> None:
    f = living(spec={**CREATE, "networkProfile": "mixed_os_calico"})
    d = decide(f)
    assert isinstance(d.action, CreateCluster)
    assert d.action.network_profile == "mixed_os_calico"
    d = decide(then(f, d), OperationObserved(create_op(), accepted=True))
    assert d.action == FollowOperation("op_create1", wait=True, workspace="ws_1")
    assert d.status_patch is not None
    assert d.status_patch["operation"]["id"] == "op_create1"
    assert d.status.progress == "create 1/4 validate_request"
    assert "CreateStarted" in reasons(d)
    assert conds(d)["Ready"][:2] == ("False", "Creating")


def test_restart_after_post_before_record_resends_the_same_key() -> None:
    # The POST went out (attempt 1 was recorded first), the operator died before the
    # operation id reached the status: the next cycle sends the very same key.
    f = living(spec=CREATE, status={"lifecycle": {"createAttempt": 1}})
    d = decide(f)
    assert d.action == CreateCluster("prod", "reg_eu", None, f"{UID}-create-1", resend=True)
    assert reasons(d) == []  # not a new attempt


def test_create_success_sets_cluster_id_from_the_response() -> None:
    status = {
        "lifecycle": {"createAttempt": 1},
        "operation": {"id": "op_create1", "type": "cluster.create", "state": "RUNNING"}
        | {"done": False},
    }
    f = living(spec=CREATE, status=status)
    d = decide(f)
    assert d.action == FollowOperation("op_create1", wait=False)
    d = decide(then(f, d), OperationObserved(create_op("SUCCEEDED")))
    assert d.status.cluster_id == NEW
    assert d.action == ObserveCluster(NEW, workspace="ws_1")
    assert "Created" in reasons(d)
    d = decide(then(f, d), ClusterObserved(cluster(id=NEW, etag="e1")))
    assert isinstance(d.action, Idle)
    assert conds(d)["Ready"][:2] == ("True", "Active")
    assert d.status.etag == "e1"


def test_create_failure_stalls_until_spec_or_retry_changes() -> None:
    f = living(spec=CREATE, status={"lifecycle": {"createAttempt": 1}})
    d = decide(then(f, decide(f)), OperationObserved(create_op("FAILED"), accepted=True))
    assert isinstance(d.action, Idle)
    assert conds(d)["Stalled"][:2] == ("True", "CreateFailed")
    assert "no capacity" in conds_message(d, "Stalled")
    assert "CreateFailed" in reasons(d)
    # Same generation, same annotations: nothing is sent.
    same = living(spec=CREATE, status=d.status.dump())
    again = decide(same)
    assert isinstance(again.action, Idle)
    assert again.status_patch is None
    # A spec change (new generation) starts attempt 2 with a new key.
    bumped = living(spec=CREATE, status=d.status.dump(), generation=2)
    retry = decide(bumped)
    assert retry.action == CreateCluster("prod", "reg_eu", None, f"{UID}-create-2")
    # So does a new akua.dev/retry value.
    token = living(spec=CREATE, status=d.status.dump(), annotations={"akua.dev/retry": "1"})
    assert decide(token).action == CreateCluster("prod", "reg_eu", None, f"{UID}-create-2")


def conds_message(d: Decision, type_: str) -> str:
    return next(c.message for c in d.status.conditions if c.type == type_)


def test_create_rejected_by_akua_stalls() -> None:
    f = living(spec=CREATE)
    d = decide(f)
    assert isinstance(d.action, CreateCluster)
    err = AkuaUnprocessable("INVALID_ARGUMENT: unknown region", status=422)
    d = decide(then(f, d), ApiFailed(err, d.action))
    assert isinstance(d.action, Idle)
    assert conds(d)["Stalled"][:2] == ("True", "CreateFailed")
    assert "unknown region" in conds_message(d, "Stalled")


def test_create_server_error_backs_off_and_keeps_the_key() -> None:
    f = living(spec=CREATE)
    d = decide(f)
    assert isinstance(d.action, CreateCluster)
    d = decide(then(f, d), ApiFailed(AkuaServerError("boom", status=503), d.action))
    assert isinstance(d.action, Requeue)
    again = decide(living(spec=CREATE, status=d.status.dump()))
    assert again.action == CreateCluster("prod", "reg_eu", None, f"{UID}-create-1", resend=True)


def test_a_resend_repeats_the_recorded_body_not_the_current_spec() -> None:
    # Akua answers a reused key with a different body with 422: the resend must be identical.
    first = {**CREATE, "networkProfile": "linux_cilium"}
    f = living(spec=first)
    d = decide(f)
    assert d.action == CreateCluster("prod", "reg_eu", "linux_cilium", f"{UID}-create-1")
    assert d.status_patch is not None
    assert d.status_patch["lifecycle"]["createRequest"] == {
        "provider": "managed_kaas",
        "name": "prod",
        "regionId": "reg_eu",
        "networkProfile": "linux_cilium",
    }
    d = decide(then(f, d), ApiFailed(AkuaServerError("boom", status=503), d.action))
    assert isinstance(d.action, Requeue)
    # The user edits the spec while the answer is unknown.
    edited = {"name": "prod-renamed", "regionId": "reg_us", "networkProfile": "mixed_os_calico"}
    again = decide(living(spec=edited, status=d.status.dump(), generation=2))
    assert again.action == CreateCluster(
        "prod", "reg_eu", "linux_cilium", f"{UID}-create-1", resend=True
    )


def test_a_refused_resend_is_an_unknown_outcome_and_never_a_new_create() -> None:
    f = living(spec=CREATE)
    d = decide(f)
    d = decide(then(f, d), ApiFailed(AkuaServerError("boom", status=503), d.action))
    f = living(spec=CREATE, status=d.status.dump())
    d = decide(f)
    assert isinstance(d.action, CreateCluster) and d.action.resend
    err = AkuaUnprocessable("INVALID_ARGUMENT: idempotency key reused", status=422)
    d = decide(then(f, d), ApiFailed(err, d.action))
    assert isinstance(d.action, Idle)
    assert conds(d)["Stalled"][:2] == ("True", "CreateOutcomeUnknown")
    message = conds_message(d, "Stalled")
    assert "spec.clusterId" in message and "akua.dev/retry" in message
    assert "'prod' in region reg_eu" in message
    assert reasons(d) == ["CreateOutcomeUnknown"]
    assert d.status.lifecycle is not None and d.status.lifecycle.failed is None
    # Neither a new cycle nor a spec change sends anything.
    same = decide(living(spec=CREATE, status=d.status.dump()))
    assert isinstance(same.action, Idle) and same.status_patch is None
    bumped = decide(living(spec={**CREATE, "name": "x"}, status=d.status.dump(), generation=2))
    assert isinstance(bumped.action, Idle)
    assert conds(bumped)["Stalled"][:2] == ("True", "CreateOutcomeUnknown")
    # The user found the cluster: adopting it observes it.
    adopt = decide(living(spec={**CREATE, "clusterId": NEW}, status=d.status.dump()))
    assert adopt.action == ObserveCluster(NEW)
    # The user found nothing: a new akua.dev/retry value starts attempt 2 with a new key.
    retry = decide(
        living(spec=CREATE, status=d.status.dump(), annotations={"akua.dev/retry": "checked"})
    )
    assert retry.action == CreateCluster("prod", "reg_eu", None, f"{UID}-create-2")
    assert "Creating" in reasons(retry)


def test_a_rejected_first_send_is_a_failure_not_an_unknown_outcome() -> None:
    f = living(spec=CREATE)
    d = decide(f)
    assert isinstance(d.action, CreateCluster) and not d.action.resend
    d = decide(then(f, d), ApiFailed(AkuaConflict("already exists", status=409), d.action))
    assert conds(d)["Stalled"][:2] == ("True", "CreateFailed")


# --- import --------------------------------------------------------------------------------


IMPORT = {
    "name": "edge",
    "regionId": "reg_eu",
    "provider": "imported_byoc",
    "kubeconfigSecretRef": {"name": "edge-kubeconfig", "key": "config"},
}


def test_import_reads_the_secret_ref_and_records_the_cluster() -> None:
    f = living(spec=IMPORT)
    d = decide(f)
    assert d.action == ImportCluster(
        "edge",
        "reg_eu",
        "ns",
        SecretKeyRef(name="edge-kubeconfig", key="config"),
        f"{UID}-create-1",
    )
    # The Secret reference is recorded with the attempt, never the kubeconfig.
    assert d.status.lifecycle is not None and d.status.lifecycle.create_request is not None
    assert d.status.lifecycle.create_request.dump() == {
        "provider": "imported_byoc",
        "name": "edge",
        "regionId": "reg_eu",
        "kubeconfigSecretRef": {"name": "edge-kubeconfig", "key": "config"},
    }
    lost = living(
        spec={**IMPORT, "name": "edge2", "kubeconfigSecretRef": {"name": "other"}},
        status=d.status.dump(),
        generation=2,
    )
    assert decide(lost).action == ImportCluster(
        "edge",
        "reg_eu",
        "ns",
        SecretKeyRef(name="edge-kubeconfig", key="config"),
        f"{UID}-create-1",
        resend=True,
    )
    assert conds(d)["Reconciling"][:2] == ("True", "Importing")
    imported = cluster(id=NEW, name="edge", provider="imported_byoc", etag="e9")
    d = decide(then(f, d), ClusterAnswered(imported, "import"))
    assert d.status.cluster_id == NEW
    assert d.status.provider == "imported_byoc"
    assert "Imported" in reasons(d)
    assert conds(d)["Ready"][:2] == ("True", "Active")


def test_import_with_unreadable_kubeconfig_stalls() -> None:
    f = living(spec=IMPORT)
    d = decide(f)
    d = decide(then(f, d), KubeconfigUnavailable("Secret ns/edge-kubeconfig not found"))
    assert isinstance(d.action, Requeue)
    assert conds(d)["Stalled"][:2] == ("True", "KubeconfigUnavailable")
    assert "not found" in conds_message(d, "Stalled")


# --- adopt ---------------------------------------------------------------------------------


def test_adopt_never_creates_even_with_name_and_region() -> None:
    f = living(spec={"clusterId": CID, "name": "prod", "regionId": "reg_eu"})
    d = decide(f)
    assert d.action == ObserveCluster(CID)
    d = decide(then(f, d), ClusterGone(CID))
    assert isinstance(d.action, Idle)
    assert conds(d)["Stalled"][:2] == ("True", "ClusterNotFound")
    assert "Nothing is re-created" in conds_message(d, "Stalled")
    # The next cycle still only observes.
    assert decide(
        living(spec={"clusterId": CID, "name": "prod"}, status=d.status.dump())
    ).action == (ObserveCluster(CID))


def test_created_cluster_gone_is_not_recreated() -> None:
    status = {"clusterId": NEW, "etag": "e1", "lifecycle": {"createAttempt": 1}}
    f = living(spec=CREATE, status=status)
    d = decide(f)
    assert d.action == ObserveCluster(NEW)
    d = decide(then(f, d), ClusterGone(NEW))
    assert isinstance(d.action, Idle)
    assert reasons(d) == ["ClusterNotFound"]
    again = decide(living(spec=CREATE, status=d.status.dump()))
    assert again.action == ObserveCluster(NEW)


# --- drift ---------------------------------------------------------------------------------


def test_name_drift_is_patched_with_if_match_and_a_409_rereads() -> None:
    f = living(spec={"clusterId": CID, "name": "prod"})
    d = decide(f)
    d = decide(then(f, d), ClusterObserved(cluster(name="renamed-in-ui", etag="e1")))
    assert d.action == RenameCluster(CID, "prod", "e1", f"{UID}-rename-1", workspace="ws_1")
    assert "NameDrift" in reasons(d)
    assert conds(d)["Reconciling"][:2] == ("True", "Renaming")
    conflict = AkuaConflict("ABORTED: etag mismatch", status=409, metadata={"etag": "e2"})
    d = decide(then(f, d), ApiFailed(conflict, d.action))
    assert d.action == ObserveCluster(CID, workspace="ws_1")
    assert "ClusterChanged" in reasons(d)
    d = decide(then(f, d), ClusterObserved(cluster(name="renamed-in-ui", etag="e2")))
    assert d.action == RenameCluster(CID, "prod", "e2", f"{UID}-rename-2", workspace="ws_1")
    d = decide(then(f, d), ClusterAnswered(cluster(name="prod", etag="e3"), "rename"))
    assert isinstance(d.action, Idle)
    assert "Renamed" in reasons(d)
    assert d.status.etag == "e3"
    assert d.status.lifecycle is not None and d.status.lifecycle.pending is None
    assert conds(d)["Ready"][:2] == ("True", "Active")


def test_a_409_without_etag_and_a_stale_reread_never_resend_the_refused_etag() -> None:
    # No etag in the 409 (the contract promises none) and a re-read that still shows the etag
    # just refused (no read-your-writes): read again after a backoff, never PATCH with it.
    f = living(spec={"clusterId": CID, "name": "prod"})
    d = decide(f)
    d = decide(then(f, d), ClusterObserved(cluster(name="renamed-in-ui", etag="e1")))
    assert isinstance(d.action, RenameCluster)
    d = decide(then(f, d), ApiFailed(AkuaConflict("ABORTED", status=409), d.action))
    assert d.action == ObserveCluster(CID, workspace="ws_1")
    d = decide(then(f, d), ClusterObserved(cluster(name="renamed-in-ui", etag="e1")))
    assert isinstance(d.action, Requeue) and "stale read" in d.action.reason
    d = decide(then(f, d))
    assert d.action == ObserveCluster(CID, workspace="ws_1")
    d = decide(then(f, d), ClusterObserved(cluster(name="renamed-in-ui", etag="e2")))
    assert d.action == RenameCluster(CID, "prod", "e2", f"{UID}-rename-2", workspace="ws_1")


def test_endless_conflicts_back_off() -> None:
    f = living(spec={"clusterId": CID, "name": "prod"})
    d = decide(f)
    for i in range(1, 7):
        d = decide(then(f, d), ClusterObserved(cluster(name="x", etag=f"e{i}")))
        assert isinstance(d.action, RenameCluster)
        err = AkuaConflict("ABORTED", status=409, metadata={"etag": f"e{i + 1}"})
        d = decide(then(f, d), ApiFailed(err, d.action))
    assert isinstance(d.action, Requeue)


def test_periodic_observation_updates_etag_and_state() -> None:
    f = living(spec={"clusterId": CID})
    d = decide(then(f, decide(f)), ClusterObserved(cluster(etag="e1")))
    f2 = living(spec={"clusterId": CID}, status=d.status.dump())
    d2 = decide(then(f2, decide(f2)), ClusterObserved(cluster(etag="e5", state="provisioning")))
    assert d2.status_patch is not None
    assert d2.status_patch["etag"] == "e5"
    assert d2.status_patch["state"] == "provisioning"
    assert conds(d2)["Reconciling"][0] == "True"


def test_pending_rename_is_resent_unchanged_after_restart() -> None:
    f = living(spec={"clusterId": CID, "name": "prod"})
    d = decide(then(f, decide(f)), ClusterObserved(cluster(name="renamed-in-ui", etag="e1")))
    assert d.action == RenameCluster(CID, "prod", "e1", f"{UID}-rename-1", workspace="ws_1")
    assert d.status_patch is not None
    assert d.status_patch["lifecycle"]["pendingName"] == "prod"
    # The answer was lost; meanwhile the user changed spec.name. The resend under the old key
    # carries exactly the first name (a different body under a reused key is a 422).
    edited = living(spec={"clusterId": CID, "name": "prod-2"}, status=d.status.dump(), generation=2)
    again = decide(edited)
    assert again.action == RenameCluster(CID, "prod", "e1", f"{UID}-rename-1", workspace="ws_1")
    # Answered: the new name is then a new drift, with a new key.
    d = decide(then(edited, again), ClusterAnswered(cluster(name="prod", etag="e2"), "rename"))
    assert d.action == RenameCluster(CID, "prod-2", "e2", f"{UID}-rename-2", workspace="ws_1")
    assert d.status.lifecycle is not None and d.status.lifecycle.pending_name == "prod-2"


def test_a_pending_rename_without_its_name_is_not_guessed() -> None:
    # A status written before pendingName existed: re-read the cluster instead of sending the
    # current spec.name under the old key.
    status = {
        "clusterId": CID,
        "etag": "e1",
        "lifecycle": {"pending": "rename", "pendingKey": "k-1", "pendingIfMatch": "e1"},
    }
    d = decide(living(spec={"clusterId": CID, "name": "prod"}, status=status))
    assert d.action == ObserveCluster(CID)
    assert d.status.lifecycle is not None and d.status.lifecycle.pending is None


# --- suspend and resume ---------------------------------------------------------------------


def suspend_op(state: str = "RUNNING", op_id: str = "op_s1", kind: str = "suspend") -> Any:
    done = state != "RUNNING"
    names = SUSPEND_STEPS if kind == "suspend" else ["start_control_plane", "start_workers"]
    return operation(
        op_id,
        op_type=f"cluster.{kind}",
        state=state,
        steps=[step(n, "completed" if done else "pending") for n in names],
        error="drain timed out" if state == "FAILED" else None,
    )


def test_suspend_is_mirrored_and_enacted_once() -> None:
    spec = {"clusterId": CID, "suspended": True}
    f = living(spec=spec, generation=4)
    d = decide(f)
    d = decide(then(f, d), ClusterObserved(cluster(etag="e1")))
    assert d.action == SuspendCluster(CID, "e1", f"{UID}-suspend-1", workspace="ws_1")
    assert d.status_patch is not None and d.status_patch["lifecycle"]["pending"] == "suspend"
    d = decide(then(f, d), OperationObserved(suspend_op(), accepted=True))
    assert d.action == FollowOperation("op_s1", wait=True, workspace="ws_1")
    assert "SuspendStarted" in reasons(d)
    assert d.status.lifecycle is not None and d.status.lifecycle.pending is None
    assert conds(d)["Reconciling"] == ("True", "Suspending", 4)
    d = decide(then(f, d), OperationObserved(suspend_op("SUCCEEDED")))
    assert d.action == ObserveCluster(CID, workspace="ws_1")
    assert "Suspended" in reasons(d)
    d = decide(then(f, d), ClusterObserved(cluster(state="suspended", etag="e2")))
    assert isinstance(d.action, Idle)
    assert conds(d)["Ready"] == ("True", "Suspended", 4)
    assert d.status.lifecycle is not None
    assert d.status.lifecycle.enacted_generation == 4
    assert d.status.lifecycle.enacted_suspended is True


def test_a_read_lagging_our_accepted_suspend_is_read_again_not_acted_on() -> None:
    # Akua promises no read-your-writes: right after our suspend succeeded, a read may still
    # show the cluster as it was before (active, the etag the :suspend was sent with). Acting
    # on it would send :suspend again (a 409); it is read again after a backoff instead.
    spec = {"clusterId": CID, "suspended": True}
    f = living(spec=spec, generation=4)
    d = decide(f)
    d = decide(then(f, d), ClusterObserved(cluster(etag="e1")))
    assert isinstance(d.action, SuspendCluster)
    d = decide(then(f, d), OperationObserved(suspend_op(), accepted=True))
    d = decide(then(f, d), OperationObserved(suspend_op("SUCCEEDED")))
    assert d.action == ObserveCluster(CID, workspace="ws_1")
    for _ in range(2):  # stale, twice
        d = decide(then(f, d), ClusterObserved(cluster(state="active", etag="e1")))
        assert isinstance(d.action, Requeue) and "stale read" in d.action.reason
        assert d.events == ()
        assert set(d.status_patch or {}) == {"lifecycle"}  # the stale read is not recorded
        d = decide(then(f, d))
        assert d.action == ObserveCluster(CID, workspace="ws_1")
    d = decide(then(f, d), ClusterObserved(cluster(state="suspended", etag="e2")))
    assert isinstance(d.action, Idle)
    assert conds(d)["Ready"] == ("True", "Suspended", 4)
    assert d.status.lifecycle is not None and d.status.lifecycle.stale_etag is None


def test_a_read_that_keeps_the_written_etag_is_taken_after_max_conflicts() -> None:
    # An Akua that does not change the etag on an accepted write cannot stall the lifecycle.
    spec = {"clusterId": CID, "suspended": True}
    status = {"clusterId": CID, "etag": "e1", "lifecycle": {"staleEtag": "e1"}}
    f = living(spec=spec, generation=4, status=status)
    d = decide(f)
    seen = []
    for _ in range(f.tuning.max_conflicts + 1):
        d = decide(then(f, d), ClusterObserved(cluster(state="suspended", etag="e1")))
        seen.append(type(d.action).__name__)
        f = then(f, d)
        d = decide(f)
    assert seen == ["Requeue"] * f.tuning.max_conflicts + ["Idle"]


def test_resume_when_spec_says_not_suspended() -> None:
    f = living(spec={"clusterId": CID, "suspended": False})
    d = decide(then(f, decide(f)), ClusterObserved(cluster(state="suspended", etag="e1")))
    assert d.action == ResumeCluster(CID, "e1", f"{UID}-resume-1", workspace="ws_1")
    assert conds(d)["Reconciling"][:2] == ("True", "Resuming")


def test_akua_auto_resume_is_reported_not_fought() -> None:
    enacted = {
        "clusterId": CID,
        "state": "suspended",
        "etag": "e2",
        "lifecycle": {"enactedGeneration": 4, "enactedSuspended": True},
    }
    spec = {"clusterId": CID, "suspended": True}
    f = living(spec=spec, generation=4, status=enacted)
    d = decide(then(f, decide(f)), ClusterObserved(cluster(state="active", etag="e3")))
    assert isinstance(d.action, Idle)
    assert reasons(d) == ["ResumedOutsideOperator"]
    assert d.events[0].type == "Warning"
    assert conds(d)["Ready"][:2] == ("True", "ResumedOutsideOperator")
    assert d.status.lifecycle is not None and d.status.lifecycle.drift == "ResumedOutsideOperator"
    # The next observation: no second Event, no write.
    f2 = living(spec=spec, generation=4, status=d.status.dump())
    d2 = decide(then(f2, decide(f2)), ClusterObserved(cluster(state="active", etag="e3")))
    assert d2.events == ()
    assert d2.status_patch is None
    # A new generation, or a new akua.dev/retry value, suspends again.
    f3 = living(spec=spec, generation=5, status=d.status.dump())
    d3 = decide(then(f3, decide(f3)), ClusterObserved(cluster(state="active", etag="e3")))
    assert isinstance(d3.action, SuspendCluster)
    f4 = living(
        spec=spec, generation=4, status=d.status.dump(), annotations={"akua.dev/retry": "a"}
    )
    d4 = decide(then(f4, decide(f4)), ClusterObserved(cluster(state="active", etag="e3")))
    assert isinstance(d4.action, SuspendCluster)


def test_failed_suspend_stalls_until_retry() -> None:
    spec = {"clusterId": CID, "suspended": True}
    f = living(spec=spec)
    d = decide(then(f, decide(f)), ClusterObserved(cluster(etag="e1")))
    d = decide(then(f, d), OperationObserved(suspend_op(), accepted=True))
    d = decide(then(f, d), OperationObserved(suspend_op("FAILED")))
    assert "SuspendFailed" in reasons(d)
    d = decide(then(f, d), ClusterObserved(cluster(etag="e4")))
    assert isinstance(d.action, Idle)
    assert conds(d)["Stalled"][:2] == ("True", "SuspendFailed")
    assert "drain timed out" in conds_message(d, "Stalled")


def test_suspend_while_another_operation_runs_waits_for_it() -> None:
    f = living(spec={"clusterId": CID, "suspended": True})
    d = decide(then(f, decide(f)), ClusterObserved(cluster(etag="e1")))
    busy = AkuaConflict(
        "ABORTED: running", status=409, metadata={"active_operation_id": "op_other", "etag": "e1"}
    )
    d = decide(then(f, d), ApiFailed(busy, d.action))
    assert d.action == FollowOperation("op_other", wait=False, workspace="ws_1")
    assert "WaitingForOperation" in reasons(d)


def test_suspend_on_a_vanished_cluster_stalls() -> None:
    f = living(spec={"clusterId": CID, "suspended": True})
    d = decide(then(f, decide(f)), ClusterObserved(cluster(etag="e1")))
    d = decide(then(f, d), ApiFailed(AkuaNotFound("gone", status=404), d.action))
    assert conds(d)["Stalled"][:2] == ("True", "ClusterNotFound")


# --- pause ---------------------------------------------------------------------------------


def test_pause_stops_all_calls_and_says_so_once() -> None:
    paused = {"akua.dev/paused": "true"}
    f = living(spec=CREATE, annotations=paused)
    d = decide(f)
    assert isinstance(d.action, Idle)
    assert reasons(d) == ["Paused"]
    assert conds(d)["Reconciling"][:2] == ("False", "Paused")
    again = decide(living(spec=CREATE, annotations=paused, status=d.status.dump()))
    assert isinstance(again.action, Idle)
    assert again.events == ()
    resumed = decide(living(spec=CREATE, status=d.status.dump()))
    assert reasons(resumed)[0] == "Unpaused"
    assert isinstance(resumed.action, CreateCluster)


def test_paused_while_an_operation_runs_does_not_follow_it() -> None:
    status = {
        "clusterId": CID,
        "operation": {"id": "op_s1", "type": "cluster.suspend", "state": "RUNNING", "done": False},
    }
    d = decide(living(status=status, annotations={"akua.dev/paused": "TRUE"}))
    assert isinstance(d.action, Idle)


def test_every_condition_carries_the_generation() -> None:
    f = living(spec={"clusterId": CID}, generation=7)
    d = decide(then(f, decide(f)), ClusterObserved(cluster()))
    assert d.status.observed_generation == 7
    assert {c.observed_generation for c in d.status.conditions} == {7}


# --- deletion of a resource whose create was never answered ---------------------------------


def test_deleting_after_an_unanswered_create_finds_and_deletes_the_cluster() -> None:
    status = {"lifecycle": {"createAttempt": 1}}
    f = facts(deleting=True, spec=CREATE, status=status)
    d = decide(f)
    assert d.action == CreateCluster("prod", "reg_eu", None, f"{UID}-create-1", resend=True)
    assert "CreateUnanswered" in reasons(d)
    d = decide(then(f, d), OperationObserved(create_op(), accepted=True))
    assert d.action == FollowOperation("op_create1", wait=True, workspace="ws_1")
    d = decide(then(f, d), OperationObserved(create_op("SUCCEEDED")))
    assert d.status.cluster_id == NEW
    assert d.action == ObserveCluster(NEW, workspace="ws_1")
    d = decide(then(f, d), ClusterObserved(cluster(id=NEW, etag="e1")))
    assert type(d.action).__name__ == "DeleteCluster"


def test_deleting_after_a_refused_resent_create_stalls_and_never_releases() -> None:
    # The resent create is refused (e.g. 422 for the reused key): the first request may have
    # made a cluster. Releasing would orphan it; creating anew would make a second one.
    f = facts(deleting=True, spec=CREATE, status={"lifecycle": {"createAttempt": 1}})
    d = decide(f)
    assert isinstance(d.action, CreateCluster) and d.action.resend
    d = decide(then(f, d), ApiFailed(AkuaUnprocessable("mismatch", status=422), d.action))
    assert isinstance(d.action, Requeue)
    assert conds(d)["Stalled"][:2] == ("True", "CreateOutcomeUnknown")
    message = conds_message(d, "Stalled")
    assert "akua.dev/orphan" in message and "spec.clusterId" in message
    assert "Released" not in reasons(d)
    # Later cycles: no Akua call, no release.
    later = decide(facts(deleting=True, spec=CREATE, status=d.status.dump()))
    assert isinstance(later.action, Requeue)
    assert later.status_patch is None and later.events == ()
    # The user found the cluster: it is deleted.
    found = decide(facts(deleting=True, spec={**CREATE, "clusterId": NEW}, status=d.status.dump()))
    assert found.action == ObserveCluster(NEW)
    # Or releases it on purpose.
    orphan = decide(
        facts(
            deleting=True,
            spec=CREATE,
            status=d.status.dump(),
            annotations={"akua.dev/orphan": "true"},
        )
    )
    assert type(orphan.action).__name__ == "Release"
    # Or asks Akua again (same key, same body).
    ask = decide(
        facts(
            deleting=True,
            spec=CREATE,
            status=d.status.dump(),
            annotations={"akua.dev/retry": "2"},
        )
    )
    assert ask.action == CreateCluster("prod", "reg_eu", None, f"{UID}-create-1", resend=True)


def test_deleting_after_a_failed_create_releases() -> None:
    failed = {"lifecycle": {"createAttempt": 1, "failed": "create", "failedGeneration": 1}}
    assert type(decide(facts(deleting=True, spec=CREATE, status=failed)).action).__name__ == (
        "Release"
    )
    # Never created anything: nothing to ask.
    assert type(decide(facts(deleting=True, spec=CREATE)).action).__name__ == "Release"


def test_a_busy_cluster_is_observed_again_soon_then_the_spec_is_enacted() -> None:
    spec = {"clusterId": CID, "suspended": True}
    f = living(spec=spec)
    d = decide(then(f, decide(f)), ClusterObserved(cluster(state="active", reconciling=True)))
    assert isinstance(d.action, Requeue)
    assert d.action.delay <= 10.0
    assert conds(d)["Reconciling"][:2] == ("True", "Progressing")
    f2 = living(spec=spec, status=d.status.dump())
    d2 = decide(then(f2, decide(f2)), ClusterObserved(cluster(state="active", etag="e9")))
    assert d2.action == SuspendCluster(CID, "e9", f"{UID}-suspend-1", workspace="ws_1")


def test_deleting_after_a_retry_whose_answer_was_lost_asks_with_the_new_key() -> None:
    # Attempt 1 failed (its operation is still mirrored), the user retried: attempt 2 was sent
    # and its answer lost; then the resource is deleted.
    f = living(spec=CREATE, status={"lifecycle": {"createAttempt": 1}})
    d = decide(then(f, decide(f)), OperationObserved(create_op("FAILED"), accepted=True))
    retry = living(spec=CREATE, status=d.status.dump(), generation=2)
    d = decide(retry)
    assert d.action == CreateCluster("prod", "reg_eu", None, f"{UID}-create-2")
    gone = facts(deleting=True, spec=CREATE, status=d.status.dump(), generation=2)
    assert decide(gone).action == CreateCluster(
        "prod", "reg_eu", None, f"{UID}-create-2", resend=True
    )


def test_a_wait_the_server_does_not_serve_falls_back_to_polling() -> None:
    f = living(spec=CREATE)
    d = decide(f)
    d = decide(then(f, d), OperationObserved(create_op(), accepted=True))
    assert d.action == FollowOperation("op_create1", wait=True, workspace="ws_1")
    d = decide(then(f, d), ApiFailed(AkuaUnprocessable("no :wait", status=422), d.action))
    assert isinstance(d.action, Requeue)
    assert d.status.operation is not None and d.status.operation.id == "op_create1"
    again = decide(living(spec=CREATE, status=d.status.dump()))
    assert again.action == FollowOperation("op_create1", wait=False, workspace="ws_1")


# --- spec.clusterId naming another cluster than the one recorded -----------------------------


def test_spec_cluster_id_differing_from_the_created_cluster_stalls_and_does_nothing() -> None:
    # The CRD rejects this; an older CRD may have let it through.
    status = {"clusterId": NEW, "etag": "e1", "lifecycle": {"createAttempt": 1}}
    d = decide(living(spec={**CREATE, "clusterId": "clu_other"}, status=status))
    assert isinstance(d.action, Idle)
    assert conds(d)["Stalled"][:2] == ("True", "ClusterIdMismatch")
    assert f"spec.clusterId clu_other differs from Akua cluster {NEW}" in conds_message(
        d, "Stalled"
    )
    assert reasons(d) == ["ClusterIdMismatch"]
    assert d.status.cluster_id == NEW
    again = decide(living(spec={**CREATE, "clusterId": "clu_other"}, status=d.status.dump()))
    assert isinstance(again.action, Idle) and again.events == () and again.status_patch is None
    # Deleting: neither cluster is touched; akua.dev/orphan releases.
    dying = facts(deleting=True, spec={**CREATE, "clusterId": "clu_other"}, status=status)
    d = decide(dying)
    assert isinstance(d.action, Requeue)
    assert conds(d)["Stalled"][:2] == ("True", "ClusterIdMismatch")
    assert "akua.dev/orphan" in conds_message(d, "Stalled")
    orphan = facts(
        deleting=True,
        spec={**CREATE, "clusterId": "clu_other"},
        status=status,
        annotations={"akua.dev/orphan": "true"},
    )
    assert type(decide(orphan).action).__name__ == "Release"


def test_spec_cluster_id_equal_to_the_created_cluster_is_fine() -> None:
    status = {"clusterId": NEW, "etag": "e1", "lifecycle": {"createAttempt": 1}}
    d = decide(living(spec={**CREATE, "clusterId": NEW}, status=status))
    assert d.action == ObserveCluster(NEW)


def test_a_refused_resent_import_stalls_the_deletion_too() -> None:
    f = living(spec=IMPORT)
    d = decide(f)
    d = decide(then(f, d), ApiFailed(AkuaServerError("boom", status=503), d.action))
    f = living(spec=IMPORT, status=d.status.dump())
    d = decide(f)
    assert isinstance(d.action, ImportCluster) and d.action.resend
    d = decide(then(f, d), ApiFailed(AkuaConflict("key reused", status=409), d.action))
    assert conds(d)["Stalled"][:2] == ("True", "CreateOutcomeUnknown")
    assert "resent import" in conds_message(d, "Stalled")
    dying = decide(facts(deleting=True, spec=IMPORT, status=d.status.dump()))
    assert isinstance(dying.action, Requeue)
    assert conds(dying)["Stalled"][:2] == ("True", "CreateOutcomeUnknown")
    # Issue 10 item 2: a new akua.dev/retry value no longer releases (an import cannot be asked
    # again safely); only akua.dev/orphan does, and the message says so.
    assert "set the annotation akua.dev/orphan=true to release this resource" in conds_message(
        dying, "Stalled"
    )
    retried = facts(
        deleting=True, spec=IMPORT, status=d.status.dump(), annotations={"akua.dev/retry": "2"}
    )
    assert type(decide(retried).action).__name__ == "Requeue"
