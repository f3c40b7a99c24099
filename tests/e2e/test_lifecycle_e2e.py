"""The lifecycle end to end (issue 5): the real control plane, the simulator on loopback, and
`akua-operator run` as a subprocess. Create (and a crash in the middle of it), import, adopt,
name drift repaired through a 409, a cluster deleted outside Kubernetes, suspend/resume with
Akua's own resume, pause; the Argo CD health check runs on the statuses the operator wrote."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from e2e_argocd_lua import argocd_health
from e2e_helpers import Operator, Sim, condition, event_reasons, events, get_akc, wait_for

from akua_operator.sim.clock import FakeClock
from akua_operator.sim.config import SimConfig

CREATE_STEPS = ["validate_request", "provision_network", "provision_control_plane"]


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(step_seconds=0.5)


def res(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "akua.dev/v1alpha1",
        "kind": "AkuaCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


class Recorder:
    """Polls the object (from the test) and keeps every distinct version it saw."""

    def __init__(self, kubectl: Any, name: str, namespace: str, interval: float = 0.1) -> None:
        self.kubectl = kubectl
        self.name = name
        self.namespace = namespace
        self.interval = interval
        self.objects: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = None
        while not self._stop.is_set():
            try:
                obj = get_akc(self.kubectl, self.name, self.namespace)
            except AssertionError:  # the control plane is going away
                return
            if obj is not None and obj["metadata"]["resourceVersion"] != last:
                last = obj["metadata"]["resourceVersion"]
                self.objects.append(obj)
            self._stop.wait(self.interval)

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.objects


def wait_obj(
    kubectl: Any, name: str, namespace: str, what: str, check: Callable[[dict[str, Any]], Any]
) -> dict[str, Any]:
    obj: dict[str, Any] = wait_for(
        what, lambda: (o := get_akc(kubectl, name, namespace)) and check(o) and o, timeout=90
    )
    return obj


def ready(obj: dict[str, Any], reason: str | None = None) -> bool:
    cond = condition(obj, "Ready")
    return (
        cond.get("status") == "True"
        and (reason is None or cond.get("reason") == reason)
        and (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]
    )


def stalled(obj: dict[str, Any], reason: str) -> bool:
    cond = condition(obj, "Stalled")
    return cond.get("status") == "True" and cond.get("reason") == reason


def operator_posts(sim: Sim, path: str) -> list[dict[str, Any]]:
    return [e for e in sim.journal() if e["method"] == "POST" and e["path"] == path]


def sim_clusters(sim: Sim) -> list[dict[str, Any]]:
    clusters: list[dict[str, Any]] = sim.state()["clusters"]
    return clusters


def sim_ops(sim: Sim, op_type: str) -> list[dict[str, Any]]:
    return [op for op in sim.state()["operations"] if op["metadata"].get("type") == op_type]


def etag_of(sim: Sim, cluster_id: str) -> str:
    etag: str = sim.api("GET", f"/clusters/{cluster_id}").json()["etag"]
    return etag


def wait_op_done(sim: Sim, op_id: str) -> None:
    wait_for(f"operation {op_id}", lambda: sim.api("GET", f"/operations/{op_id}").json()["done"])


# --- create ------------------------------------------------------------------------------------


def test_create_mirrors_the_operation_and_sets_the_cluster_id(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.env["AKUA_STEP_EVENTS"] = "true"  # per-step Events (off by default)
    operator.start()
    # The create waits at its last step until the test has seen it running in status (no
    # race between a 2 s operation and the polling of a loaded machine).
    sim.scenario(
        operation_type="cluster.create",
        cluster_name=f"web-{namespace}",
        mode="approval",
        step="provision_workers",
    )
    rec = Recorder(kubectl, "web", namespace)
    kubectl.apply(res("web", namespace, {"name": f"web-{namespace}", "regionId": "reg_eu"}))
    held = wait_obj(
        kubectl,
        "web",
        namespace,
        "the create operation waiting at its last step",
        lambda o: "(waiting for a person)" in ((o.get("status") or {}).get("progress") or ""),
    )
    sim.admin(
        "POST",
        f"/operations/{held['status']['operation']['id']}:approve",
        {"step": "provision_workers"},
    )
    obj = wait_obj(kubectl, "web", namespace, "the created cluster Ready", ready)
    seen = rec.stop()
    operator.assert_alive()
    uid = obj["metadata"]["uid"]

    # Akua: exactly one cluster with that name, one create operation, one key derived from uid.
    mine = [c for c in sim_clusters(sim) if c["name"] == f"web-{namespace}"]
    assert len(mine) == 1
    assert obj["status"]["clusterId"] == mine[0]["id"]
    assert obj["status"]["state"] == "active"
    # kstatus: every condition carries the generation it was computed for.
    for type_ in ("Ready", "Reconciling", "Stalled"):
        assert condition(obj, type_)["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Reconciling")["status"] == "False"
    assert condition(obj, "Stalled")["status"] == "False"
    posts = operator_posts(sim, "/clusters")
    assert posts
    assert {p["idempotency_key"] for p in posts} == {f"{uid}-create-1"}
    assert len(sim_ops(sim, "cluster.create")) == 1

    # The operation and its steps were mirrored while it ran, and it ended SUCCEEDED.
    running = [
        o for o in seen if ((o.get("status") or {}).get("operation") or {}).get("done") is False
    ]
    assert running, "no status showed the running create operation"
    op = running[-1]["status"]["operation"]
    assert op["type"] == "cluster.create"
    assert [s["name"] for s in op["steps"]][:3] == CREATE_STEPS
    assert obj["status"]["operation"]["state"] == "SUCCEEDED"
    assert obj["status"]["operation"]["id"] == op["id"]
    reasons = event_reasons(kubectl, "web", namespace)
    for reason in ("Creating", "CreateStarted", "OperationStep", "Created", "Observed"):
        assert reason in reasons, reasons
    created = next(e for e in events(kubectl, "web", namespace) if e["reason"] == "Created")
    assert mine[0]["id"] in created["message"]
    assert "https://" in created["message"]

    # Argo CD's health, on what the operator really wrote: Progressing while the operation ran,
    # Healthy once Ready.
    assert argocd_health(running[-1])["status"] == "Progressing"
    assert "create" in argocd_health(running[-1])["message"]
    assert argocd_health(obj)["status"] == "Healthy"
    # The printer columns show the phase.
    table = kubectl("get", "akc", "web", "-n", namespace).stdout
    assert "REASON" in table
    assert "Active" in table
    assert mine[0]["id"] in table


def test_crash_between_the_post_and_the_record_creates_exactly_one_cluster(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    # The first POST /clusters is processed by Akua, but the answer never reaches the operator
    # (connection cut after processing); the operator is SIGKILLed right then.
    sim.admin(
        "POST",
        "/faults",
        {"drop_rate": 1.0, "methods": ["POST"], "path_contains": "/clusters", "count": 1},
    )
    operator.env["AKUA_API_MAX_RETRIES"] = "0"  # no in-call retry: the kill comes first
    operator.env["AKUA_BACKOFF_BASE"] = "5"  # nor an early retry of the cycle
    operator.start()
    kubectl.apply(res("crash", namespace, {"name": f"crash-{namespace}", "regionId": "reg_eu"}))
    dropped = wait_for(
        "the dropped POST /clusters",
        lambda: [p for p in operator_posts(sim, "/clusters") if p["fault"] == "drop_after"],
        interval=0.02,
    )
    operator.kill()
    # Akua did create it: one cluster exists, provisioning, and the operator never learned of it.
    assert len([c for c in sim_clusters(sim) if c["name"] == f"crash-{namespace}"]) == 1
    obj = get_akc(kubectl, "crash", namespace)
    assert obj is not None
    uid = obj["metadata"]["uid"]
    assert dropped[0]["idempotency_key"] == f"{uid}-create-1"
    # The intent (attempt 1) was recorded before the POST; no operation id was.
    assert obj["status"]["lifecycle"]["createAttempt"] == 1
    assert "operation" not in obj["status"]

    operator.start()
    obj = wait_obj(kubectl, "crash", namespace, "Ready after the restart", ready)
    operator.assert_alive()
    mine = [c for c in sim_clusters(sim) if c["name"] == f"crash-{namespace}"]
    assert len(mine) == 1, mine
    assert obj["status"]["clusterId"] == mine[0]["id"]
    assert len(sim_ops(sim, "cluster.create")) == 1
    posts = operator_posts(sim, "/clusters")
    assert len(posts) >= 2  # the lost one and the resend after the restart
    assert {p["idempotency_key"] for p in posts} == {f"{uid}-create-1"}
    assert [p["status"] for p in posts][1:] == [202] * (len(posts) - 1)


def test_deleted_while_the_create_answer_was_lost_the_cluster_is_found_and_deleted(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    # As above: Akua made the cluster, the answer was lost, the operator died. Then the user
    # deletes the resource before any operator runs again.
    sim.admin(
        "POST",
        "/faults",
        {"drop_rate": 1.0, "methods": ["POST"], "path_contains": "/clusters", "count": 1},
    )
    operator.env["AKUA_API_MAX_RETRIES"] = "0"
    operator.env["AKUA_BACKOFF_BASE"] = "5"
    operator.start()
    name = f"lost-{namespace}"
    kubectl.apply(res("lost", namespace, {"name": name, "regionId": "reg_eu"}))
    wait_for(
        "the dropped POST /clusters",
        lambda: [p for p in operator_posts(sim, "/clusters") if p["fault"] == "drop_after"],
        interval=0.02,
    )
    operator.kill()
    (made,) = [c for c in sim_clusters(sim) if c["name"] == name]
    kubectl("delete", "akc", "lost", "-n", namespace, "--wait=false")

    operator.start()
    wait_for("the resource gone", lambda: get_akc(kubectl, "lost", namespace) is None, timeout=90)
    operator.assert_alive()
    # The cluster Akua made was deleted, not orphaned; one create, one delete.
    assert not sim.cluster_exists(made["id"])
    creates = [op for op in sim_ops(sim, "cluster.create") if op["metadata"]["name"] == name]
    assert len(creates) == 1
    deletes = [
        op for op in sim_ops(sim, "cluster.delete") if op["metadata"]["cluster_id"] == made["id"]
    ]
    assert [op["state"] for op in deletes] == ["SUCCEEDED"]
    keys = {p["idempotency_key"] for p in operator_posts(sim, "/clusters")}
    assert len(keys) == 1


def test_failed_create_stalls_and_akua_dev_retry_creates_again_with_a_new_key(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    name = f"unlucky-{namespace}"
    sim.scenario(
        operation_type="cluster.create",
        cluster_name=name,
        mode="fail",
        step="provision_network",
        retryable=False,
        error_message="no capacity in region reg_eu",
    )
    operator.start()
    kubectl.apply(res("unlucky", namespace, {"name": name, "regionId": "reg_eu"}))
    obj = wait_obj(
        kubectl, "unlucky", namespace, "CreateFailed", lambda o: stalled(o, "CreateFailed")
    )
    uid = obj["metadata"]["uid"]
    message = condition(obj, "Stalled")["message"]
    assert "no capacity in region reg_eu" in message
    assert "akua.dev/retry" in message
    assert obj["status"]["operation"]["state"] == "FAILED"
    assert "clusterId" not in obj["status"]
    failed = [e for e in events(kubectl, "unlucky", namespace) if e["reason"] == "CreateFailed"]
    assert len(failed) == 1
    assert failed[0]["type"] == "Warning"
    # Argo CD: Degraded, with the reason, on the status the operator wrote.
    health = argocd_health(obj)
    assert health["status"] == "Degraded"
    assert health["message"].startswith("CreateFailed: ")
    # No automatic second attempt.
    assert [p["idempotency_key"] for p in operator_posts(sim, "/clusters")] == [f"{uid}-create-1"]

    kubectl("annotate", "akc", "unlucky", "-n", namespace, "akua.dev/retry=1")
    obj = wait_obj(kubectl, "unlucky", namespace, "created on the retry", ready)
    keys = [p["idempotency_key"] for p in operator_posts(sim, "/clusters")]
    assert keys == [f"{uid}-create-1", f"{uid}-create-2"]
    mine = [c for c in sim_clusters(sim) if c["name"] == name]
    assert len(mine) == 1
    assert obj["status"]["clusterId"] == mine[0]["id"]
    assert obj["status"]["lifecycle"]["createAttempt"] == 2
    assert argocd_health(obj)["status"] == "Healthy"


# --- import --------------------------------------------------------------------------------


def test_import_reads_the_kubeconfig_secret_and_it_goes_nowhere_else(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    marker = "kc-marker-6f1d2e"
    kubeconfig = f"apiVersion: v1\nkind: Config\nclusters: []\n# {marker}\n"
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "edge-kubeconfig", "namespace": namespace},
            "data": {"config": base64.b64encode(kubeconfig.encode()).decode()},
        }
    )
    operator.start()
    spec = {
        "name": f"edge-{namespace}",
        "regionId": "reg_eu",
        "provider": "imported_byoc",
        "kubeconfigSecretRef": {"name": "edge-kubeconfig", "key": "config"},
    }
    kubectl.apply(res("edge", namespace, spec))
    obj = wait_obj(kubectl, "edge", namespace, "the imported cluster Ready", ready)
    operator.assert_alive()
    mine = [c for c in sim_clusters(sim) if c["name"] == f"edge-{namespace}"]
    assert len(mine) == 1
    assert mine[0]["provider"] == "imported_byoc"
    assert obj["status"]["clusterId"] == mine[0]["id"]
    assert obj["status"]["provider"] == "imported_byoc"
    assert "Imported" in event_reasons(kubectl, "edge", namespace)
    assert len(operator_posts(sim, "/clusters:import")) == 1
    assert operator_posts(sim, "/clusters") == []
    # The kubeconfig is nowhere but the request body.
    assert marker not in json.dumps(obj)
    assert marker not in json.dumps(events(kubectl, "edge", namespace))
    assert marker not in operator.logs()


def test_import_with_a_missing_secret_stalls_with_a_clear_reason(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    spec = {
        "name": "edge",
        "regionId": "reg_eu",
        "provider": "imported_byoc",
        "kubeconfigSecretRef": {"name": "nope"},
    }
    kubectl.apply(res("edge", namespace, spec))
    obj = wait_obj(
        kubectl, "edge", namespace, "Stalled", lambda o: stalled(o, "KubeconfigUnavailable")
    )
    assert f"Secret {namespace}/nope not found" in condition(obj, "Stalled")["message"]
    assert argocd_health(obj)["status"] == "Degraded"
    assert operator_posts(sim, "/clusters:import") == []


# --- adopt, drift, gone ------------------------------------------------------------------------


class TestNameDrift:
    @pytest.fixture
    def sim_clock(self) -> FakeClock:
        # The simulator's stale-read window lasts until the test moves its clock: the
        # operator's first read falls in it however long the operator takes to get there.
        return FakeClock(start=time.time())

    def test_adopt_repairs_name_drift_through_a_409(
        self, kubectl: Any, sim: Sim, namespace: str, operator: Operator
    ) -> None:
        operator.start()
        # Reads of the cluster return the pre-write state for 5 s (of the simulator's
        # clock) after a write: the operator's PATCHes carry the stale etag and get 409s.
        sim.admin("PATCH", "/faults", {"stale_read_seconds": 5.0})
        cluster = sim.seed(f"renamed-in-ui-{namespace}")
        cid = cluster["id"]
        patched = sim.api(
            "PATCH",
            f"/clusters/{cid}",
            json={"region_id": "reg_b"},
            headers={"if-match": cluster["etag"]},
        )
        assert patched.status_code == 200, patched.text
        fresh = patched.json()["etag"]
        kubectl.apply(res("prod", namespace, {"clusterId": cid, "name": f"prod-{namespace}"}))

        def operator_patches() -> list[dict[str, Any]]:
            return [
                e
                for e in sim.journal()
                if e["method"] == "PATCH"
                and e["path"] == f"/clusters/{cid}"
                and e["idempotency_key"]
            ]

        wait_for("the operator's first PATCH (409)", operator_patches, timeout=90)
        # End the window: no new one after later writes, and the clock past the old one.
        sim.admin("PATCH", "/faults", {"stale_read_seconds": 0.0})
        sim.admin("POST", "/clock", {"seconds": 6.0})
        obj = wait_obj(
            kubectl,
            "prod",
            namespace,
            "the name repaired",
            lambda o: ready(o) and o["status"].get("name") == f"prod-{namespace}",
        )
        operator.assert_alive()
        uid = obj["metadata"]["uid"]
        assert next(c for c in sim_clusters(sim) if c["id"] == cid)["name"] == f"prod-{namespace}"
        mine = operator_patches()
        assert all(e["idempotency_key"].startswith(uid) for e in mine)
        statuses = [e["status"] for e in mine]
        # 409s while the reads were stale, then the rename with the fresh etag (a resend of
        # that same request, same key, would be fine), and no PATCH after it.
        assert statuses[0] == 409, statuses
        assert mine[0]["if_match"] == cluster["etag"]
        assert statuses[-1] == 200, statuses
        renames = [e for e in mine if e["status"] == 200]
        assert len({e["idempotency_key"] for e in renames}) == 1, renames
        assert {e["if_match"] for e in renames} == {fresh}
        refused = {e["idempotency_key"] for e in mine if e["status"] == 409}
        assert not refused & {e["idempotency_key"] for e in renames}
        # The stale etag went out again only after a re-read that returned it (a stale read; a
        # list sweep's page is a read too), never as a resend straight after its 409.
        read_since_patch = False
        for e in sim.journal():
            if e["path"] != f"/clusters/{cid}" and (e["method"], e["path"]) != ("GET", "/clusters"):
                continue
            if e["method"] == "GET":
                read_since_patch = True
            elif e["method"] == "PATCH" and e["idempotency_key"]:
                if e["if_match"] == cluster["etag"]:
                    assert read_since_patch, e
                read_since_patch = False
        reasons = event_reasons(kubectl, "prod", namespace)
        for reason in ("NameDrift", "ClusterChanged", "Renamed"):
            assert reason in reasons, reasons
        assert operator_posts(sim, "/clusters") == []  # adopting never creates


def test_cluster_deleted_outside_kubernetes_stalls_and_is_not_recreated(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.env["AKUA_OBSERVE_INTERVAL"] = "1"
    operator.start()
    cid = sim.seed(f"doomed-{namespace}")["id"]
    kubectl.apply(res("doomed", namespace, {"clusterId": cid, "name": f"doomed-{namespace}"}))
    obj = wait_obj(kubectl, "doomed", namespace, "adopted", ready)
    assert argocd_health(obj)["status"] == "Healthy"
    gone = sim.api("DELETE", f"/clusters/{cid}", headers={"if-match": etag_of(sim, cid)})
    assert gone.status_code == 202, gone.text
    wait_op_done(sim, gone.json()["id"])
    obj = wait_obj(kubectl, "doomed", namespace, "Stalled", lambda o: stalled(o, "ClusterNotFound"))
    message = condition(obj, "Stalled")["message"]
    assert f"Akua cluster {cid} does not exist" in message
    assert "Nothing is re-created" in message
    assert condition(obj, "Ready")["status"] == "False"
    assert "ClusterNotFound" in event_reasons(kubectl, "doomed", namespace)
    assert argocd_health(obj)["status"] == "Degraded"
    assert operator_posts(sim, "/clusters") == []
    # The resource can still be deleted: nothing to delete, the finalizer is released.
    kubectl("delete", "akc", "doomed", "-n", namespace, "--timeout=60s", timeout=90)
    assert get_akc(kubectl, "doomed", namespace) is None


# --- suspend and resume --------------------------------------------------------------------------


def test_suspend_resume_and_akuas_own_resume(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.env["AKUA_OBSERVE_INTERVAL"] = "1"
    operator.start()
    cid = sim.seed(f"sleepy-{namespace}")["id"]
    kubectl.apply(res("sleepy", namespace, {"clusterId": cid}))
    wait_obj(kubectl, "sleepy", namespace, "adopted", ready)
    rec = Recorder(kubectl, "sleepy", namespace)
    # The suspend waits at its last step until the test has seen it running in status.
    sim.scenario(
        operation_type="cluster.suspend",
        cluster_id=cid,
        mode="approval",
        step="suspend_control_plane",
    )

    kubectl("patch", "akc", "sleepy", "-n", namespace, "--type=merge", "-p",
            '{"spec":{"suspended":true}}')  # fmt: skip
    held = wait_obj(
        kubectl,
        "sleepy",
        namespace,
        "the suspend waiting at its last step",
        lambda o: "(waiting for a person)" in ((o.get("status") or {}).get("progress") or ""),
    )
    sim.admin(
        "POST",
        f"/operations/{held['status']['operation']['id']}:approve",
        {"step": "suspend_control_plane"},
    )
    obj = wait_obj(
        kubectl,
        "sleepy",
        namespace,
        "suspended",
        lambda o: ready(o, "Suspended") and o["status"]["state"] == "suspended",
    )
    seen = rec.stop()
    assert obj["status"]["operation"]["type"] == "cluster.suspend"
    assert obj["status"]["operation"]["state"] == "SUCCEEDED"
    running = [
        o
        for o in seen
        if ((o.get("status") or {}).get("operation") or {}).get("type") == "cluster.suspend"
        and not o["status"]["operation"]["done"]
    ]
    assert running, "the running suspend never showed in status"
    assert condition(running[-1], "Reconciling")["reason"] == "Suspending"
    assert argocd_health(running[-1])["status"] == "Progressing"
    assert argocd_health(obj)["status"] == "Healthy"
    # Events are emitted right after the status write that shows them: wait for them.
    reasons = wait_for(
        "the Suspended Event",
        lambda: (r := event_reasons(kubectl, "sleepy", namespace)) and "Suspended" in r and r,
    )
    assert "SuspendStarted" in reasons
    wide = kubectl("get", "akc", "sleepy", "-n", namespace, "-o", "wide").stdout.split("\n")
    assert wide[0].split()[:9] == [
        "NAME", "CLUSTER", "ID", "STATE", "OPERATION", "READY", "REASON", "SUSPENDED", "REGION",
    ]  # fmt: skip
    assert wide[1].split()[2:8] == ["suspended", "suspend", "3/3", "SUCCEEDED", "True", "Suspended"]
    suspends = [e for e in sim.journal() if e["path"] == f"/clusters/{cid}:suspend"]
    assert [e["status"] for e in suspends] == [202]

    # Akua resumes the cluster by itself (a machine was requested): reported, not fought.
    resumed = sim.api("POST", f"/clusters/{cid}:resume", headers={"if-match": etag_of(sim, cid)})
    assert resumed.status_code == 202, resumed.text
    wait_op_done(sim, resumed.json()["id"])
    obj = wait_obj(
        kubectl,
        "sleepy",
        namespace,
        "the drift reported",
        lambda o: ready(o, "ResumedOutsideOperator"),
    )
    assert obj["status"]["state"] == "active"
    assert obj["status"]["lifecycle"]["drift"] == "ResumedOutsideOperator"
    health = argocd_health(obj)
    assert health["status"] == "Healthy"
    assert health["message"].startswith("ResumedOutsideOperator: ")

    def drift_events() -> list[dict[str, Any]]:
        return [
            e
            for e in events(kubectl, "sleepy", namespace)
            if e["reason"] == "ResumedOutsideOperator"
        ]

    drift = wait_for("the drift Event", drift_events)
    assert drift[0]["type"] == "Warning"
    assert "akua.dev/retry" in drift[0]["message"]
    # Several observations (list sweeps) later, still no second :suspend, and told once.
    seq = len(sim.journal())
    wait_for("three more observations", lambda: len(
        [e for e in sim.journal()[seq:] if e["method"] == "GET" and e["path"] == "/clusters"]
    ) >= 3)  # fmt: skip
    assert len([e for e in sim.journal() if e["path"] == f"/clusters/{cid}:suspend"]) == 1
    assert len(drift_events()) == 1

    # A new akua.dev/retry value suspends it again.
    kubectl("annotate", "akc", "sleepy", "-n", namespace, "akua.dev/retry=1")
    wait_obj(
        kubectl,
        "sleepy",
        namespace,
        "suspended again",
        lambda o: ready(o, "Suspended") and o["status"]["state"] == "suspended",
    )
    assert len([e for e in sim.journal() if e["path"] == f"/clusters/{cid}:suspend"]) == 2

    # suspended: false resumes it.
    kubectl("patch", "akc", "sleepy", "-n", namespace, "--type=merge", "-p",
            '{"spec":{"suspended":false}}')  # fmt: skip
    obj = wait_obj(
        kubectl,
        "sleepy",
        namespace,
        "active again",
        lambda o: ready(o, "Active") and o["status"]["state"] == "active",
    )
    assert obj["status"]["operation"]["type"] == "cluster.resume"
    assert "Resumed" in event_reasons(kubectl, "sleepy", namespace)
    operator.assert_alive()


# --- pause ---------------------------------------------------------------------------------


def test_pause_stops_reconciling_but_deletion_still_deletes(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    manifest = res("calm", namespace, {"name": f"calm-{namespace}", "regionId": "reg_eu"})
    # Read as the operator reads it (trimmed, any case), by the operator and by the Argo CD check.
    manifest["metadata"]["annotations"] = {"akua.dev/paused": " True\n"}
    kubectl.apply(manifest)
    obj = wait_obj(
        kubectl,
        "calm",
        namespace,
        "paused",
        lambda o: condition(o, "Reconciling").get("reason") == "Paused",
    )
    assert "Paused" in event_reasons(kubectl, "calm", namespace)
    assert argocd_health(obj)["status"] == "Suspended"
    assert operator_posts(sim, "/clusters") == []

    kubectl("annotate", "akc", "calm", "-n", namespace, "akua.dev/paused-")
    obj = wait_obj(kubectl, "calm", namespace, "created after unpausing", ready)
    assert "Unpaused" in event_reasons(kubectl, "calm", namespace)
    cid = obj["status"]["clusterId"]
    assert len(operator_posts(sim, "/clusters")) == 1

    # Paused again, then deleted: the finalizer and deletion.policy (Delete) are still honoured.
    kubectl("annotate", "akc", "calm", "-n", namespace, "akua.dev/paused=true")
    wait_obj(
        kubectl,
        "calm",
        namespace,
        "paused again",
        lambda o: condition(o, "Reconciling").get("reason") == "Paused",
    )
    kubectl("delete", "akc", "calm", "-n", namespace, "--timeout=90s", timeout=120)
    assert get_akc(kubectl, "calm", namespace) is None
    assert not sim.cluster_exists(cid)
    deletes = [
        e for e in sim.journal() if e["method"] == "DELETE" and e["path"] == f"/clusters/{cid}"
    ]
    assert deletes
    operator.assert_alive()
