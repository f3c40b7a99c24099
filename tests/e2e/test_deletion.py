"""Deletion end to end: the real control plane, the simulator on loopback, the operator as a
process. Issue 4, behaviours 1-9."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

import pytest
from e2e_helpers import (
    Arrivals,
    Operator,
    Sim,
    akc,
    condition,
    event_reasons,
    events,
    get_akc,
    wait_for,
)

from akua_operator.sim.clock import FakeClock
from akua_operator.sim.config import SimConfig
from oracles import assert_exactly_once, in_flight_at

DELETE_STEPS = ["drain_workloads", "delete_workers", "delete_control_plane", "release_network"]


def adopt(kubectl: Any, sim: Sim, namespace: str, name: str = "prod", **spec: Any) -> str:
    """Seed a cluster in the simulator and adopt it with an AkuaCluster; wait until observed."""
    cluster_id: str = sim.seed(f"{name}-{namespace}")["id"]
    kubectl.apply(akc(name, namespace, clusterId=cluster_id, **spec))
    return cluster_id


def observed(kubectl: Any, name: str, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = wait_for(
        "the first observation",
        lambda: (
            (o := get_akc(kubectl, name, namespace))
            and (o.get("status") or {}).get("etag")
            and condition(o, "Ready").get("status") == "True"
            and o
        ),
    )
    return obj


def finalizers(kubectl: Any, name: str, namespace: str) -> list[str]:
    obj = get_akc(kubectl, name, namespace)
    return list(((obj or {}).get("metadata") or {}).get("finalizers") or [])


class Watch:
    """`kubectl get akc NAME -w -o json`: every version of the object the API server sends."""

    def __init__(self, kubectl: Any, name: str, namespace: str) -> None:
        self.proc = subprocess.Popen(
            [str(kubectl.binary), "get", "akc", name, "-n", namespace, "-w", "-o", "json"],
            env=kubectl.control_plane.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.objects: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder = json.JSONDecoder()
        buf = ""
        for line in self.proc.stdout:
            buf += line
            while buf.strip():
                try:
                    obj, end = decoder.raw_decode(buf.lstrip())
                except json.JSONDecodeError:
                    break
                self.objects.append(obj)
                buf = buf.lstrip()[end:]

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(0.5)
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        return self.objects


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(step_seconds=0.5)


def test_observe_on_create_records_etag_state_and_conditions(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace)
    obj = observed(kubectl, "prod", namespace)
    status = obj["status"]
    assert status["clusterId"] == cluster_id
    assert status["state"] == "active"
    assert status["reconciling"] is False
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    for type_ in ("Ready", "Reconciling", "Stalled"):
        assert condition(obj, type_)["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Stalled")["status"] == "False"
    assert obj["metadata"]["finalizers"] == ["akua.dev/finalizer"]
    # the printer columns show it
    table = kubectl("get", "akc", "-n", namespace).stdout
    assert "CLUSTER ID" in table
    assert cluster_id in table
    assert "active" in table


class TestDeleteFlow:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig(step_seconds=20.0)

    @pytest.fixture
    def sim_clock(self) -> FakeClock:
        # The simulator's time moves only when the operator's :wait long polls sleep (or the
        # test says so). The operation tracker sends at most one call per 5 s per operation: a
        # :wait of 5 s, or of 10 s with a GET for the steps in between when :wait answers carry
        # none (the contract profile): steps are read about every 10 s then. Each 20 s step
        # spans at least one answer with steps even with a loaded machine's lag (12.5 s steps
        # missed the last one about one run in two under load), so the operator is told about
        # every step and the watch must show it.
        return FakeClock(start=time.time())

    def test_kubectl_delete_blocks_until_the_operation_ended_and_status_shows_every_step(
        self,
        kubectl: Any,
        sim: Sim,
        sim_clock: FakeClock,
        namespace: str,
        operator: Operator,
        k8s_audit: Any,
    ) -> None:
        operator.start()
        cluster_id = adopt(kubectl, sim, namespace)
        etag = observed(kubectl, "prod", namespace)["status"]["etag"]
        watch = Watch(kubectl, "prod", namespace)
        sim_clock.advance(max(0.0, time.time() - sim_clock.now()))  # Akua's clock = ours
        before = len(k8s_audit.writes(namespace))
        kubectl("delete", "akc", "prod", "-n", namespace, "--timeout=120s", timeout=150)
        seen = watch.stop()
        operator.assert_alive()

        # kubectl returned only once the object was gone, i.e. after the operation ended
        assert get_akc(kubectl, "prod", namespace) is None
        ops = sim.delete_operations(cluster_id)
        assert len(ops) == 1
        assert ops[0]["state"] == "SUCCEEDED"
        assert not sim.cluster_exists(cluster_id)
        assert_exactly_once(sim.journal(), sim.state()["operations"], [cluster_id])
        # the finalizer stayed while the operation ran: the watch saw it RUNNING, deleting,
        # with the finalizer on
        assert any(
            o["metadata"].get("deletionTimestamp")
            and o["metadata"].get("finalizers")
            and ((o.get("status") or {}).get("operation") or {}).get("state") == "RUNNING"
            for o in seen
        )

        # exactly one DELETE, with the stored etag and a uid-derived idempotency key
        (delete,) = sim.deletes(cluster_id)
        assert delete["if_match"] == etag
        assert delete["idempotency_key"].startswith(seen[0]["metadata"]["uid"])

        # the watch saw every step running, in order, in status.operation and the progress column
        progress = [(o.get("status") or {}).get("progress") for o in seen]
        wanted = [f"delete {i}/4 {n}" for i, n in enumerate(DELETE_STEPS, start=1)]
        got = [p for p in dict.fromkeys(progress) if p in wanted]
        assert got == wanted, progress
        last = next(o for o in reversed(seen) if (o.get("status") or {}).get("operation"))
        op = last["status"]["operation"]
        assert op["id"] == ops[0]["id"]
        assert op["type"] == "cluster.delete"
        assert op["htmlUrl"].startswith("https://")
        assert [s["name"] for s in op["steps"]] == DELETE_STEPS
        for s in op["steps"]:
            assert set(s) >= {
                "name",
                "status",
                "executionType",
                "startedAt",
                "retryable",
                "skippable",
            }
        # the operation id was in status before the operation ended
        running = [
            o
            for o in seen
            if ((o.get("status") or {}).get("operation") or {}).get("state") == "RUNNING"
        ]
        assert running and running[0]["status"]["operation"]["id"] == ops[0]["id"]
        # Reconciling carried the progress
        assert any(
            "delete 2/4 delete_workers" in condition(o, "Reconciling").get("message", "")
            for o in seen
        )

        # the STATE column followed the cluster: deleting from the DELETE's answer on
        assert seen[0]["status"]["state"] == "active"
        assert {o["status"].get("state") for o in running} == {"deleting"}

        # Events at the start and the end (the steps are in status; --step-events adds them)
        reasons = event_reasons(kubectl, "prod", namespace)
        assert sorted(reasons) == ["DeleteStarted", "Deleted", "Observed"], reasons
        deleted = next(e for e in events(kubectl, "prod", namespace) if e["reason"] == "Deleted")
        assert ops[0]["html_url"] in deleted["message"]

        # no Kubernetes write was refused: kopf's finalizer patch (a JSON patch testing the
        # resourceVersion) came right after the final status, which kopf wrote itself
        writes = k8s_audit.writes(namespace)
        assert any(w["verb"] == "patch" and w["resource"] == "akuaclusters" for w in writes)
        assert [w for w in writes if w["code"] >= 400] == []
        # kopf's re-runs cost no PATCH of the object: its progress record rides in the status
        # PATCH of each change shown (status.kopf); the one object PATCH is the finalizer's
        deleting = writes[before:]
        object_patches = [
            w for w in deleting if w["resource"] == "akuaclusters" and w["verb"] == "patch"
        ]
        assert len(object_patches) == 1, deleting
        # and that final status said when it released
        final = seen[-1]["status"]
        assert final["deletion"]["releasedAt"]
        assert final["operation"]["state"] == "SUCCEEDED"


class TestQuickDelete:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        # An operation that ends within the first :wait: the whole deletion is one handler run.
        return SimConfig(step_seconds=0.2)

    def test_a_deletion_done_in_one_run_removes_the_finalizer_without_a_refused_write(
        self, kubectl: Any, sim: Sim, namespace: str, operator: Operator, k8s_audit: Any
    ) -> None:
        # kopf removes the finalizer with a JSON patch that tests metadata.resourceVersion; the
        # status writes of the same run must not leave it testing a stale one (a 422, retried
        # on every queued event of those writes).
        operator.start()
        cluster_id = adopt(kubectl, sim, namespace)
        observed(kubectl, "prod", namespace)
        kubectl("delete", "akc", "prod", "-n", namespace, "--timeout=60s")
        assert [op["state"] for op in sim.delete_operations(cluster_id)] == ["SUCCEEDED"]
        writes = k8s_audit.writes(namespace)
        assert [w for w in writes if w["code"] >= 400] == []
        kopf_patches = [w for w in writes if w["user_agent"].startswith("kopf/")]
        assert kopf_patches and kopf_patches[-1]["resource"] == "akuaclusters"  # the finalizer
        assert sorted(event_reasons(kubectl, "prod", namespace)) == [
            "DeleteStarted",
            "Deleted",
            "Observed",
        ]


# --- 4. release: Orphan policy, already gone ----------------------------------------------------


def test_orphan_policy_releases_at_once_without_any_api_call(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace, deletion={"policy": "Orphan"})
    observed(kubectl, "prod", namespace)
    sim.admin("DELETE", "/journal")
    kubectl("delete", "akc", "prod", "-n", namespace, "--timeout=60s")
    assert sim.calls_for(cluster_id) == []
    assert sim.cluster_exists(cluster_id)
    assert "Orphaned" in event_reasons(kubectl, "prod", namespace)


def test_cluster_already_gone_releases(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace)
    etag = observed(kubectl, "prod", namespace)["status"]["etag"]
    # someone deletes the cluster in Akua directly
    resp = sim.api("DELETE", f"/clusters/{cluster_id}", headers={"if-match": etag})
    assert resp.status_code == 202
    wait_for("the outside delete", lambda: not sim.cluster_exists(cluster_id))
    kubectl("delete", "akc", "prod", "-n", namespace, "--timeout=60s")
    assert "AlreadyGone" in event_reasons(kubectl, "prod", namespace)
    assert len(sim.delete_operations(cluster_id)) == 1  # only the outside one


# --- 5. FAILED / CANCELLED --------------------------------------------------------------------


def test_retryable_failure_is_retried_with_a_fresh_etag_and_a_new_key(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace)
    observed(kubectl, "prod", namespace)
    sim.scenario(
        operation_type="cluster.delete",
        cluster_id=cluster_id,
        mode="fail",
        step="delete_workers",
        retryable=True,
        error_message="workers did not drain",
        times=1,
    )
    kubectl("delete", "akc", "prod", "-n", namespace, "--timeout=120s", timeout=150)
    ops = sim.delete_operations(cluster_id)
    assert [op["state"] for op in ops] == ["FAILED", "SUCCEEDED"]
    accepted = [d for d in sim.deletes(cluster_id) if d["status"] == 202]
    assert len(accepted) == 2
    assert accepted[0]["idempotency_key"] != accepted[1]["idempotency_key"]
    assert accepted[0]["if_match"] != accepted[1]["if_match"]
    assert_exactly_once(sim.journal(), sim.state()["operations"], [cluster_id], attempts=2)
    reasons = event_reasons(kubectl, "prod", namespace)
    assert "DeleteRetrying" in reasons
    assert "Deleted" in reasons


def test_on_failure_release_records_the_error_and_leaves_the_cluster(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace, deletion={"maxRetries": 0})
    observed(kubectl, "prod", namespace)
    sim.scenario(
        operation_type="cluster.delete",
        cluster_id=cluster_id,
        mode="fail",
        step="delete_control_plane",
        retryable=False,
        error_message="control plane is protected",
    )
    kubectl("delete", "akc", "prod", "-n", namespace, "--timeout=120s", timeout=150)
    assert sim.cluster_exists(cluster_id)
    failed = [e for e in events(kubectl, "prod", namespace) if e["reason"] == "DeleteFailed"]
    assert len(failed) == 1
    assert "control plane is protected" in failed[0]["message"]
    assert failed[0]["type"] == "Warning"
    assert "DeleteFailed" in operator.logs()


def test_on_failure_retain_keeps_the_finalizer_until_akua_dev_retry_changes(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace, deletion={"onFailure": "Retain"})
    observed(kubectl, "prod", namespace)
    sim.scenario(
        operation_type="cluster.delete",
        cluster_id=cluster_id,
        mode="fail",
        step="drain_workloads",
        retryable=False,
        error_message="a PodDisruptionBudget blocks the drain",
        times=1,
    )
    kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
    obj = wait_for(
        "Stalled=True",
        lambda: (
            (o := get_akc(kubectl, "prod", namespace))
            and condition(o, "Stalled").get("status") == "True"
            and o
        ),
    )
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] == "DeleteRetained"
    assert "PodDisruptionBudget" in stalled["message"]
    assert obj["metadata"]["finalizers"] == ["akua.dev/finalizer"]
    time.sleep(3)  # several retain re-checks (1 s): no new DELETE without a trigger
    assert len(sim.deletes(cluster_id)) == 1
    assert get_akc(kubectl, "prod", namespace) is not None
    kubectl("annotate", "akc", "prod", "-n", namespace, "akua.dev/retry=1")
    wait_for("the object to go", lambda: get_akc(kubectl, "prod", namespace) is None)
    assert [op["state"] for op in sim.delete_operations(cluster_id)] == ["FAILED", "SUCCEEDED"]
    assert "DeleteRetry" in event_reasons(kubectl, "prod", namespace)


# --- 6. 409 -----------------------------------------------------------------------------------


def test_stale_etag_409_takes_the_current_etag_and_deletes(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace)
    etag = observed(kubectl, "prod", namespace)["status"]["etag"]
    # the cluster changes in Akua after the operator observed it
    resp = sim.api(
        "PATCH", f"/clusters/{cluster_id}", headers={"if-match": etag}, json={"name": "renamed"}
    )
    assert resp.status_code == 200, resp.text
    current = resp.json()["etag"]
    kubectl("delete", "akc", "prod", "-n", namespace, "--timeout=120s", timeout=150)
    deletes = sim.deletes(cluster_id)
    assert [(d["if_match"], d["status"]) for d in deletes] == [(etag, 409), (current, 202)]
    assert_exactly_once(sim.journal(), sim.state()["operations"], [cluster_id])
    assert "ClusterChanged" in event_reasons(kubectl, "prod", namespace)


class TestOtherOperation:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig(step_seconds=0.5)

    def test_a_running_suspend_is_waited_for_then_deleted(
        self, kubectl: Any, sim: Sim, sim_profile: str, namespace: str, operator: Operator
    ) -> None:
        operator.start()
        cluster_id = adopt(kubectl, sim, namespace)
        etag = observed(kubectl, "prod", namespace)["status"]["etag"]
        # The suspend stops at its last step until the test approves it: the DELETE finds it
        # running however slow the machine is (no race with a window of a few seconds).
        sim.scenario(
            operation_type="cluster.suspend",
            cluster_id=cluster_id,
            mode="approval",
            step="suspend_control_plane",
        )
        resp = sim.api("POST", f"/clusters/{cluster_id}:suspend", headers={"if-match": etag})
        assert resp.status_code == 202, resp.text
        suspend_id = resp.json()["id"]
        kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
        waiting = "suspend 3/3 suspend_control_plane (waiting for a person)"
        obj = wait_for(
            "the deletion following the suspend that waits for approval",
            lambda: (
                (o := get_akc(kubectl, "prod", namespace))
                and (o.get("status") or {}).get("progress") == waiting
                and o
            ),
        )
        # the deletion follows the suspend, and says a person is needed
        assert obj["status"]["operation"]["id"] == suspend_id
        assert waiting in condition(obj, "Reconciling")["message"]
        assert obj["metadata"]["finalizers"] == ["akua.dev/finalizer"]
        assert [d["status"] for d in sim.deletes(cluster_id)] == [409]
        sim.admin("POST", f"/operations/{suspend_id}:approve", {"step": "suspend_control_plane"})
        wait_for("the object to go", lambda: get_akc(kubectl, "prod", namespace) is None)
        deletes = sim.deletes(cluster_id)
        statuses = [d["status"] for d in deletes]
        if sim_profile == "default":
            assert statuses == [409, 202]
        else:
            # Stale reads (the contract promises fresh ones nowhere): the first read after the
            # suspend may still show the etag before it, so one more 409 is allowed; an etag
            # refused with 409 is never sent again, and the last DELETE is the accepted one.
            assert statuses[0] == 409 and statuses[-1] == 202 and set(statuses[:-1]) == {409}
            refused = [d["if_match"] for d in deletes[1:-1]]
            assert len(refused) == len(set(refused)) and deletes[-1]["if_match"] not in refused
        assert_exactly_once(sim.journal(), sim.state()["operations"], [cluster_id])
        ops = {op["id"]: op for op in sim.state()["operations"]}
        assert ops[suspend_id]["state"] == "SUCCEEDED"
        assert_exactly_once(sim.journal(), sim.state()["operations"], [cluster_id])
        assert "WaitingForOperation" in event_reasons(kubectl, "prod", namespace)


# --- 7. credentials and transient failures ----------------------------------------------------


def put_secret(kubectl: Any, namespace: str, token: str) -> None:
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


def test_rejected_credentials_stall_and_a_corrected_secret_is_picked_up(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    wrong = "sk_akua_wrong_token_value"
    put_secret(kubectl, namespace, wrong)
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace, credentials={"secretRef": {"name": "akua-creds"}})
    obj = wait_for(
        "Stalled=True (credentials)",
        lambda: (
            (o := get_akc(kubectl, "prod", namespace))
            and condition(o, "Stalled").get("reason") == "CredentialsRejected"
            and o
        ),
    )
    kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
    time.sleep(3)
    obj = get_akc(kubectl, "prod", namespace)
    assert obj is not None
    assert obj["metadata"]["finalizers"] == ["akua.dev/finalizer"]
    stalled = condition(obj, "Stalled")
    assert stalled["status"] == "True"
    assert stalled["reason"] == "CredentialsRejected"
    assert "Secret akua-creds" in stalled["message"]
    assert sim.cluster_exists(cluster_id)
    # fix the Secret: no restart needed
    put_secret(kubectl, namespace, "sk_akua_test")
    wait_for("the object to go", lambda: get_akc(kubectl, "prod", namespace) is None)
    assert not sim.cluster_exists(cluster_id)
    assert operator.starts == 1
    operator.assert_alive()
    # the token is nowhere
    assert wrong not in operator.logs()
    assert wrong not in json.dumps(obj)
    assert all(wrong not in e["message"] for e in events(kubectl, "prod", namespace))


def test_a_secret_pruned_before_the_resource_still_lets_the_deletion_finish(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    # A GitOps prune or a namespace deletion may delete the token Secret first.
    put_secret(kubectl, namespace, "sk_akua_test")
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace, credentials={"secretRef": {"name": "akua-creds"}})
    observed(kubectl, "prod", namespace)
    kubectl("delete", "secret", "akua-creds", "-n", namespace)
    kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
    wait_for("the object to go", lambda: get_akc(kubectl, "prod", namespace) is None)
    assert not sim.cluster_exists(cluster_id)  # deleted in Akua, not orphaned
    reasons = event_reasons(kubectl, "prod", namespace)
    assert reasons.count("CachedCredentials") == 1
    assert "Deleted" in reasons
    operator.assert_alive()


def test_after_a_restart_a_pruned_secret_stalls_until_orphaned(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    put_secret(kubectl, namespace, "sk_akua_test")
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace, credentials={"secretRef": {"name": "akua-creds"}})
    observed(kubectl, "prod", namespace)
    operator.stop()  # the copy of the token goes with the process
    kubectl("delete", "secret", "akua-creds", "-n", namespace)
    kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
    operator.start()  # it has AKUA_TOKEN, which must not stand in for the Secret
    obj = wait_for(
        "Stalled=True (CredentialsUnavailable)",
        lambda: (
            (o := get_akc(kubectl, "prod", namespace))
            and condition(o, "Stalled").get("reason") == "CredentialsUnavailable"
            and o
        ),
    )
    message = condition(obj, "Stalled")["message"]
    assert "akua-creds" in message and "akua.dev/orphan" in message
    assert obj["metadata"]["finalizers"] == ["akua.dev/finalizer"]
    assert sim.cluster_exists(cluster_id)
    assert sim.deletes(cluster_id) == []
    kubectl("annotate", "akc", "prod", "-n", namespace, "akua.dev/orphan=true")
    wait_for("the object to go", lambda: get_akc(kubectl, "prod", namespace) is None)
    assert sim.cluster_exists(cluster_id)  # orphaned: the user deletes it in Akua


def test_errors_and_lost_responses_never_start_a_second_operation(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace)
    observed(kubectl, "prod", namespace)
    # the first DELETE is processed but its response is lost; then 503s and 429s
    sim.admin("POST", "/faults", {"drop_rate": 1.0, "methods": ["DELETE"], "count": 1})
    kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
    wait_for("the dropped DELETE", lambda: len(sim.deletes(cluster_id)) >= 1)
    sim.admin(
        "POST",
        "/faults",
        {"error_rate_503": 1.0, "methods": ["POST", "GET"], "count": 4, "retry_after_seconds": 1},
    )
    wait_for("the object to go", lambda: get_akc(kubectl, "prod", namespace) is None, timeout=90)
    assert len(sim.delete_operations(cluster_id)) == 1
    keys = {d["idempotency_key"] for d in sim.deletes(cluster_id)}
    assert len(keys) == 1  # every resend was the same request
    records = assert_exactly_once(sim.journal(), sim.state()["operations"], [cluster_id])
    assert records[cluster_id].resends >= 1  # the lost answer was asked for again


# --- 8. restarts --------------------------------------------------------------------------------


class TestRestart:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig(step_seconds=2.0)

    def test_killed_mid_operation_the_next_operator_resumes_it(
        self, kubectl: Any, sim: Sim, namespace: str, operator: Operator
    ) -> None:
        operator.start()
        cluster_id = adopt(kubectl, sim, namespace)
        observed(kubectl, "prod", namespace)
        kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
        wait_for(
            "the operation id in status",
            lambda: (
                ((get_akc(kubectl, "prod", namespace) or {}).get("status") or {})
                .get("operation", {})
                .get("state")
                == "RUNNING"
            ),
        )
        operator.kill()
        time.sleep(1)
        operator.start()
        wait_for("the object to go", lambda: get_akc(kubectl, "prod", namespace) is None)
        assert len(sim.deletes(cluster_id)) == 1
        (op,) = sim.delete_operations(cluster_id)
        assert op["state"] == "SUCCEEDED"
        assert_exactly_once(sim.journal(), sim.state()["operations"], [cluster_id])

    def test_killed_between_the_intent_and_the_delete_answer_one_operation(
        self, kubectl: Any, sim: Sim, namespace: str, operator: Operator
    ) -> None:
        # The window of a crash that could start a second operation: the intent (key, etag)
        # is in status, the DELETE has reached Akua, its answer (the operation id) has not
        # come back. The simulator holds every DELETE 3 s before it handles and answers it;
        # the operator is SIGKILLed as soon as the DELETE has arrived.
        arrivals = Arrivals(sim)
        operator.start()
        cluster_id = adopt(kubectl, sim, namespace)
        observed(kubectl, "prod", namespace)
        sim.admin("POST", "/faults", {"latency_ms": 3000, "methods": ["DELETE"]})
        # The operation waits at its last step until approved, so it still runs when the
        # restarted operator decides (however long the restart takes): a second DELETE would
        # be answered with it (202) and only the key would tell.
        sim.scenario(
            operation_type="cluster.delete",
            cluster_id=cluster_id,
            mode="approval",
            step="release_network",
        )
        kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
        obj = wait_for(
            "the intent recorded in status",
            lambda: (
                (o := get_akc(kubectl, "prod", namespace))
                and ((o.get("status") or {}).get("deletion") or {}).get("pending")
                and o
            ),
        )
        key = obj["status"]["deletion"]["idempotencyKey"]
        assert key.startswith(obj["metadata"]["uid"])
        path = f"/v1/clusters/{cluster_id}"
        wait_for("the DELETE at the simulator", lambda: arrivals.count("DELETE", path) >= 1)
        killed_at = time.time()
        operator.kill()
        operator.start()
        following = wait_for(
            "the restarted operator following the operation",
            lambda: (
                (o := get_akc(kubectl, "prod", namespace))
                and "(waiting for a person)" in ((o.get("status") or {}).get("progress") or "")
                and o
            ),
        )
        op_id = following["status"]["operation"]["id"]
        sim.admin("POST", f"/operations/{op_id}:approve", {"step": "release_network"})
        wait_for("the object to go", lambda: get_akc(kubectl, "prod", namespace) is None)

        # The kill landed in the window: the first DELETE was still being handled then.
        deletes = sim.deletes(cluster_id)
        (pending,) = in_flight_at(deletes, killed_at)
        assert pending["idempotency_key"] == key
        assert pending["status"] == 202  # handled and answered to a dead process
        # The restarted operator resent the same request (same key, same if-match) ...
        assert len(deletes) >= 2
        assert {(d["idempotency_key"], d["if_match"]) for d in deletes} == {
            (key, obj["status"]["deletion"]["ifMatch"])
        }
        # ... and Akua ran one operation.
        records = assert_exactly_once(sim.journal(), sim.state()["operations"], [cluster_id])
        assert records[cluster_id].resends >= 1
        (op,) = sim.delete_operations(cluster_id)
        assert (op["id"], op["state"]) == (op_id, "SUCCEEDED")
        assert operator.starts == 2
        assert "Deleted" in event_reasons(kubectl, "prod", namespace)


# --- 9. escape hatch ------------------------------------------------------------------------------


def test_orphan_annotation_releases_a_stuck_deletion_without_deleting(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    put_secret(kubectl, namespace, "sk_akua_revoked")
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace, credentials={"secretRef": {"name": "akua-creds"}})
    wait_for("the finalizer", lambda: finalizers(kubectl, "prod", namespace))
    kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
    wait_for(
        "a stuck deletion",
        lambda: (
            (o := get_akc(kubectl, "prod", namespace))
            and o["metadata"].get("deletionTimestamp")
            and condition(o, "Stalled").get("reason") == "CredentialsRejected"
        ),
    )
    kubectl("annotate", "akc", "prod", "-n", namespace, "akua.dev/orphan=true")
    wait_for("the object to go", lambda: get_akc(kubectl, "prod", namespace) is None)
    assert sim.cluster_exists(cluster_id)
    assert [d for d in sim.deletes(cluster_id) if d["status"] == 202] == []
    orphaned = [e for e in events(kubectl, "prod", namespace) if e["reason"] == "Orphaned"]
    assert orphaned and "akua.dev/orphan" in orphaned[0]["message"]


class TestOrphanWhileFollowing:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        # A delete operation of 4 x 60 s: followed by handler runs of up to 20 s each.
        return SimConfig(step_seconds=60)

    def test_orphan_acts_while_a_long_delete_operation_is_followed(
        self, kubectl: Any, sim: Sim, namespace: str, operator: Operator, k8s_audit: Any
    ) -> None:
        # A handler run that follows an operation reads the annotations only when it starts:
        # the runs are bounded (about 20 s), so akua.dev/orphan acts long before the operation
        # (240 s) ends.
        operator.start()
        cluster_id = adopt(kubectl, sim, namespace)
        observed(kubectl, "prod", namespace)
        kubectl("delete", "akc", "prod", "-n", namespace, "--wait=false")
        wait_for(
            "the delete operation followed",
            lambda: (
                (o := get_akc(kubectl, "prod", namespace))
                and (o["status"].get("operation") or {}).get("state") == "RUNNING"
                and o["status"].get("state") == "deleting"
            ),
        )
        kubectl("annotate", "akc", "prod", "-n", namespace, "akua.dev/orphan=true")
        wait_for(
            "the release by akua.dev/orphan",
            lambda: get_akc(kubectl, "prod", namespace) is None,
        )
        assert "Orphaned" in event_reasons(kubectl, "prod", namespace)
        assert [op["state"] for op in sim.delete_operations(cluster_id)] == ["RUNNING"]
        assert [w for w in k8s_audit.writes(namespace) if w["code"] >= 400] == []
        operator.assert_alive()
