"""The reconcile runtime with the real Akua client against the in-process simulator.

Kubernetes is replaced by a recorder of status patches and Events (the e2e tests run the real
thing); what is checked here is the order of writes and calls, and that nothing escapes.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import kopf
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from akua_operator import telemetry
from akua_operator.akua.client import AkuaClient, ClientConfig, Credentials
from akua_operator.akua.models import Cluster
from akua_operator.core.status import merge_patch
from akua_operator.core.types import Action, ClusterObserved, Event, Idle, Release, Requeue
from akua_operator.handlers import akuacluster as akuacluster_mod
from akua_operator.handlers import runtime as runtime_mod
from akua_operator.handlers.akuacluster import register
from akua_operator.handlers.runtime import ResourceState, Runtime
from akua_operator.kube import ObjectRef, SecretNotFound, TokenSource
from akua_operator.resource.models import CredentialsSpec
from akua_operator.settings import Settings
from akua_operator.sim.app import SimApp, create_app
from akua_operator.sim.config import Scenario, SimConfig
from akua_operator.sim.server import SimServer
from akua_operator.sim.transport import SimTransport

UID = "5d1c7f0e-0000-4000-8000-000000000001"
TOKEN = "sk_akua_test"


def operations_counted(op_type: str, outcome: str) -> float:
    """``akua_operator_operations_total{type, outcome}`` of the process's telemetry."""
    text = telemetry.current().metrics.exposition().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "akua_operator_operations_total"
                and sample.labels.get("type") == op_type
                and sample.labels.get("outcome") == outcome
            ):
                return float(sample.value)
    return 0.0


def apply_merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = apply_merge(out[key], value)
        else:
            out[key] = value
    return out


class RecordingKube:
    """Stands in for KubeIO: applies merge patches to a status dict, records Events."""

    def __init__(self, sim: SimApp, token: str = TOKEN) -> None:
        self.sim = sim
        self.token = token
        self.status: dict[str, Any] = {}
        self.rv = 1
        self.writes: list[tuple[dict[str, Any], list[str]]] = []  # (patch, journal paths then)
        self.kopf_writes: list[dict[str, Any]] = []  # status parts of kopf's patches
        self.events: list[Event] = []
        self.crd_is_deleting = False  # the AkuaCluster CRD (see test_runtime_guards.py)
        self.crd_reads = 0
        self.records: dict[tuple[str, str], dict[str, str]] = {}  # ConfigMap (ns, name) -> data

    async def crd_deleting(self, name: str) -> bool:
        self.crd_reads += 1
        return self.crd_is_deleting

    async def record_released(self, namespace: str, name: str, key: str, value: str) -> None:
        self.records.setdefault((namespace, name), {})[key] = value

    async def credentials(
        self, namespace: str, spec: CredentialsSpec | None, default: TokenSource
    ) -> Credentials:
        return Credentials(token=SecretStr(self.token))

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        seen = [f"{e['method']} {e['path']}" for e in self.sim.journal.read(0)]
        self.writes.append((patch, seen))
        self.status = apply_merge(self.status, patch)
        self.rv += 1
        return {"metadata": {"resourceVersion": str(self.rv)}, "status": self.status}

    async def emit_event(self, ref: ObjectRef, event: Event) -> None:
        self.events.append(event)


class Garbage(httpx.AsyncBaseTransport):
    """Answers 200 with a body that is not JSON."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>oops</html>")


def make_runtime(kube: RecordingKube, transport: httpx.AsyncBaseTransport) -> Runtime:
    client = AkuaClient(
        ClientConfig(base_url="http://sim/v1", rate=0, max_retries=0), transport=transport
    )
    settings = Settings(namespaces=("ns",), wait_timeout=1)
    return Runtime(
        settings,
        token_source=TokenSource(token=SecretStr(TOKEN)),
        kube=kube,  # type: ignore[arg-type]
        client=client,
    )


def body(cluster_id: str, status: dict[str, Any], *, deleting: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "prod", "namespace": "ns", "uid": UID, "generation": 1}
    if deleting:
        meta["deletionTimestamp"] = datetime.now(tz=UTC).isoformat()
    return {"metadata": meta, "spec": {"clusterId": cluster_id}, "status": status}


async def seed(sim: SimApp) -> str:
    transport = SimTransport(sim)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
        resp = await http.post("/_sim/clusters", json={"name": "prod"})
        cluster_id: str = resp.json()["id"]
    return cluster_id


async def test_intent_is_recorded_before_each_call_and_the_delete_releases() -> None:
    sim = create_app(SimConfig(step_seconds=0.05))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    state = ResourceState()
    action = await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    assert kube.status["etag"]
    for _ in range(20):
        action = await runtime.cycle(
            body(cluster_id, kube.status, deleting=True), state, deleting=True
        )
        if isinstance(action, Release):
            break
        assert isinstance(action, Requeue)
    assert isinstance(action, Release)
    delete_path = f"DELETE /clusters/{cluster_id}"
    pending = next(
        seen for patch, seen in kube.writes if (patch.get("deletion") or {}).get("pending") is True
    )
    assert delete_path not in pending  # the key was written before the DELETE went out
    recorded = next(seen for patch, seen in kube.writes if "id" in (patch.get("operation") or {}))
    assert recorded.count(delete_path) == 1
    assert not any(":wait" in p or "/operations/" in p for p in recorded)  # before any wait
    assert [e.reason for e in kube.events][-1] == "Deleted"
    assert sum(1 for e in sim.journal.read(0) if e["method"] == "DELETE") == 1
    await runtime.stop()


class Crash(Exception):
    """The operator process dies (here: while writing a status patch)."""


class CrashOnOperationRecord(RecordingKube):
    """Dies on the status write that records the DELETE's operation: the DELETE was answered,
    its operation id never reached the status."""

    def __init__(self, sim: SimApp) -> None:
        super().__init__(sim)
        self.crashed = False

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        if not self.crashed and "id" in (patch.get("operation") or {}):
            self.crashed = True
            raise Crash("killed between the DELETE's answer and the status write")
        return await super().patch_status(namespace, name, patch)


async def test_crash_after_the_delete_answer_replays_the_request_and_follows_one_op() -> None:
    sim = create_app(SimConfig(step_seconds=0.05, seed=31))  # ids unlike the other tests'
    cluster_id = await seed(sim)
    counted_before = operations_counted("cluster.delete", "succeeded")
    kube = CrashOnOperationRecord(sim)
    first = make_runtime(kube, SimTransport(sim))
    state = ResourceState()
    await first.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    with pytest.raises(Crash):
        await first.cycle(body(cluster_id, kube.status, deleting=True), state, deleting=True)
    await first.client.aclose()
    assert "id" not in (kube.status.get("operation") or {})  # the operation was never recorded
    assert kube.status["deletion"]["pending"] is True  # only the intent (and its key) survived

    # A new process: fresh memory and client, the status as it was last written.
    second = make_runtime(kube, SimTransport(sim))
    state = ResourceState()
    action: Release | Requeue | None = None
    for _ in range(40):
        result = await second.cycle(
            body(cluster_id, kube.status, deleting=True), state, deleting=True
        )
        assert isinstance(result, Release | Requeue)
        action = result
        if isinstance(action, Release):
            break
    assert isinstance(action, Release)
    await second.client.aclose()

    deletes = [
        e
        for e in sim.journal.read(0)
        if e["method"] == "DELETE" and e["path"] == f"/clusters/{cluster_id}"
    ]
    assert len(deletes) == 2  # the original and the replay after the crash...
    assert deletes[0]["idempotency_key"] == deletes[1]["idempotency_key"]  # ...identical
    assert deletes[0]["if_match"] == deletes[1]["if_match"]
    assert [e["status"] for e in deletes] == [202, 202]
    operations = [
        op for op in sim.state.dump()["operations"] if op["metadata"]["type"] == "cluster.delete"
    ]
    assert len(operations) == 1  # the replay created no second operation
    (operation,) = operations
    assert kube.status["operation"]["id"] == operation["id"]  # the resource followed it
    assert operation["state"] == "SUCCEEDED"
    assert cluster_id in sim.state.dump()["deleted_cluster_ids"]
    assert [e.reason for e in kube.events].count("Deleted") == 1
    # The operation is counted once in akua_operator_operations_total.
    assert operations_counted("cluster.delete", "succeeded") - counted_before == 1


async def test_malformed_response_is_a_condition_not_a_crash() -> None:
    sim = create_app(SimConfig())
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, Garbage())
    action = await runtime.cycle(
        body("clu_x", {"etag": "e1"}, deleting=True), ResourceState(), deleting=True
    )
    assert isinstance(action, Requeue)
    stalled = next(c for c in kube.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidApiResponse")
    assert kube.status["deletion"]["pending"] is True  # resent unchanged next time
    await runtime.stop()


async def test_rejected_token_never_reaches_status_or_events() -> None:
    sim = create_app(SimConfig())
    cluster_id = await seed(sim)
    secret = "sk_akua_not_the_right_one"
    kube = RecordingKube(sim, token=secret)
    runtime = make_runtime(kube, SimTransport(sim))
    action = await runtime.cycle(
        body(cluster_id, {}, deleting=True), ResourceState(), deleting=True
    )
    assert isinstance(action, Requeue)
    # The credentials backoff is recorded in status; kopf comes back within max_requeue so
    # that akua.dev/orphan acts during it.
    assert action.delay == runtime.tuning.max_requeue
    assert kube.status["deletion"]["nextAttemptAt"]
    assert secret not in repr(kube.status)
    assert all(secret not in e.message for e in kube.events)
    assert [e.reason for e in kube.events] == ["CredentialsRejected"]
    await runtime.stop()


def test_merge_helper_roundtrip() -> None:
    old = {"a": {"b": 1, "c": 2}, "d": [1]}
    new = {"a": {"b": 1}, "e": 3}
    assert apply_merge(old, merge_patch(old, new)) == new


async def test_an_observe_only_cycle_leaves_a_deleting_resource_to_the_delete_handler() -> None:
    # The periodic observation may have waited for the per-resource lock while the resource
    # was marked for deletion: it must not run the deletion flow itself (no DELETE, no
    # status write, no Deleted/Orphaned Event, no early finalizer_released metric).
    sim = create_app(SimConfig(step_seconds=0.05))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    calls_before = len(sim.journal.read(0))
    writes_before, events_before = len(kube.writes), len(kube.events)

    action = await runtime.cycle(
        body(cluster_id, kube.status, deleting=True), state, deleting=False, observe_only=True
    )
    assert isinstance(action, Idle)
    assert len(sim.journal.read(0)) == calls_before  # no Akua call at all
    assert (len(kube.writes), len(kube.events)) == (writes_before, events_before)

    # The same body, outside the observe-only mode, still deletes (the check is not vacuous).
    action = await runtime.cycle(body(cluster_id, kube.status, deleting=True), state, deleting=True)
    assert not isinstance(action, Idle)
    assert any(e["method"] == "DELETE" for e in sim.journal.read(0))
    await runtime.stop()


class ScriptedRuntime(Runtime):
    """A Runtime whose cycle answers from a script (the kopf handler is what is tested)."""

    def __init__(self, *actions: Action) -> None:
        super().__init__(
            Settings(namespaces=("ns",), observe_interval=300.0),
            token_source=TokenSource(token=SecretStr(TOKEN)),
        )
        self.actions = list(actions)
        self.calls: list[dict[str, Any]] = []

    async def cycle(self, body: Any, state: ResourceState, **kwargs: Any) -> Action:
        self.calls.append(kwargs)
        return self.actions.pop(0)


async def test_a_long_retry_after_is_left_to_the_requeue_instead_of_slept_in_the_call() -> None:
    # A Retry-After beyond --api-retry-after-cap is not waited for in the call, nor is the
    # request resent early: the core's requeue (status.deletion.nextAttemptAt) serves it, so no
    # handler sleeps minutes holding the resource's lock.
    with SimServer(SimConfig()) as server:
        async with httpx.AsyncClient() as admin:
            faults = {"error_rate_429": 1.0, "retry_after_seconds": 600}
            (await admin.post(f"{server.admin_url}/faults", json=faults)).raise_for_status()
        kube = RecordingKube(server.sim)
        settings = Settings(
            namespaces=("ns",), api_url=server.url, api_rate=0, api_retry_after_cap=0.2
        )
        runtime = Runtime(settings, token_source=TokenSource(token=SecretStr(TOKEN)), kube=kube)  # type: ignore[arg-type]
        await runtime.start()
        try:
            action = await asyncio.wait_for(
                runtime.cycle(body("clu_busy", {}, deleting=True), ResourceState(), deleting=True),
                timeout=120,
            )
        finally:
            await runtime.stop()
        assert isinstance(action, Requeue)
        answers = [
            e["status"] for e in server.sim.journal.read(0) if e["path"].startswith("/clusters")
        ]
        assert answers == [429]  # never resent before the Retry-After has passed
        next_attempt = datetime.fromisoformat(kube.status["deletion"]["nextAttemptAt"])
        assert (next_attempt - datetime.now(tz=UTC)).total_seconds() > 500  # Retry-After honoured


SECRET_SPEC = {"secretRef": {"name": "akua-token", "key": "token"}}


class SecretKube(RecordingKube):
    """Reads the token from a Secret that a GitOps prune or a namespace deletion can delete
    before the AkuaCluster."""

    def __init__(self, sim: SimApp) -> None:
        super().__init__(sim)
        self.secret_exists = True

    async def credentials(
        self, namespace: str, spec: CredentialsSpec | None, default: TokenSource
    ) -> Credentials:
        assert spec is not None and spec.secret_ref is not None
        if not self.secret_exists:
            raise SecretNotFound(f"Secret {namespace}/{spec.secret_ref.name} not found")
        return Credentials(token=SecretStr(self.token), context=spec.workspace_id)


def secret_body(cluster_id: str, status: dict[str, Any], *, deleting: bool) -> dict[str, Any]:
    out = body(cluster_id, status, deleting=deleting)
    out["spec"]["credentials"] = SECRET_SPEC
    return out


async def test_a_deletion_whose_secret_was_pruned_first_finishes_with_the_last_good_token() -> None:
    sim = create_app(SimConfig(step_seconds=0.05, seed=41))
    cluster_id = await seed(sim)
    kube = SecretKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    state = ResourceState()
    await runtime.cycle(secret_body(cluster_id, {}, deleting=False), state, deleting=False)
    kube.secret_exists = False  # pruned together with the resource, and first
    action: Any = None
    for _ in range(40):
        action = await runtime.cycle(
            secret_body(cluster_id, kube.status, deleting=True), state, deleting=True
        )
        if isinstance(action, Release):
            break
    assert isinstance(action, Release)
    assert cluster_id in sim.state.dump()["deleted_cluster_ids"]  # deleted, not orphaned
    reasons = [e.reason for e in kube.events]
    assert reasons.count("CachedCredentials") == 1  # said once, not on every cycle
    assert reasons[-1] == "Deleted"
    cached = next(e for e in kube.events if e.reason == "CachedCredentials")
    assert "akua-token" in cached.message
    assert all(TOKEN not in e.message for e in kube.events)
    assert TOKEN not in repr(kube.status)
    await runtime.stop()


async def test_after_a_restart_a_pruned_secret_stalls_and_says_how_to_unstick() -> None:
    # No copy of the token survives a restart, and the operator's own default token is not a
    # silent substitute: the deletion stalls with a message naming the two ways out.
    sim = create_app(SimConfig(step_seconds=0.05, seed=43))
    cluster_id = await seed(sim)
    kube = SecretKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))  # it has a default token (AKUA_TOKEN)
    await runtime.cycle(
        secret_body(cluster_id, {}, deleting=False), ResourceState(), deleting=False
    )
    kube.secret_exists = False
    calls_before = len(sim.journal.read(0))
    for _ in range(3):
        action = await runtime.cycle(
            secret_body(cluster_id, kube.status, deleting=True), ResourceState(), deleting=True
        )
        assert isinstance(action, Requeue)
    assert len(sim.journal.read(0)) == calls_before  # no Akua call, with any token
    stalled = next(c for c in kube.status["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True"
    assert "akua-token" in stalled["message"]
    assert "recreate" in stalled["message"].lower()
    assert "akua.dev/orphan" in stalled["message"]
    assert "CachedCredentials" not in [e.reason for e in kube.events]
    await runtime.stop()


async def test_every_call_about_the_cluster_names_its_recorded_workspace() -> None:
    # Issue 10 item 3: once Akua showed the cluster, every call about it carries akua-context
    # (the token's credentials have none), and the 404 after the delete is reported with it.
    sim = create_app(SimConfig(step_seconds=0.05, seed=47))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    workspace = kube.status["workspaceId"]
    assert workspace == sim.config.workspace_id
    start = len(sim.journal.read(0))
    action: Action = Requeue(0.0)
    for _ in range(20):
        action = await runtime.cycle(
            body(cluster_id, kube.status, deleting=True), state, deleting=True
        )
        if isinstance(action, Release):
            break
    assert isinstance(action, Release)
    calls = sim.journal.read(0)[start:]
    assert calls and {e["akua_context"] for e in calls} == {workspace}
    await runtime.stop()


async def test_a_new_create_asks_for_the_tokens_workspace_and_is_sent_there() -> None:
    # Issue 10 item 1: before recording a new create attempt, the runtime reads the token's one
    # workspace (GET /workspaces); the request records it and names it (akua-context), so a
    # resend after a lost answer cannot land in another workspace after a rotation.
    sim = create_app(SimConfig(step_seconds=0.05, seed=48))
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    manifest = body("unused", {}, deleting=False)
    manifest["spec"] = {"name": "prod", "regionId": "reg_eu"}
    await runtime.cycle(manifest, ResourceState(), deleting=False)
    calls = sim.journal.read(0)
    assert [(e["method"], e["path"]) for e in calls[:2]] == [
        ("GET", "/workspaces"),
        ("POST", "/clusters"),
    ]
    workspace = sim.config.workspace_id
    assert calls[1]["akua_context"] == workspace
    assert kube.status["lifecycle"]["createRequest"]["workspaceId"] == workspace
    await runtime.stop()


async def test_an_unreadable_status_holds_the_deletion_without_any_call() -> None:
    # Issue 10 item 8: a status that does not parse is not read as a fresh one.
    sim = create_app(SimConfig())
    kube = RecordingKube(sim)
    kube.status = {"deletion": {"attempt": "not a number"}}
    runtime = make_runtime(kube, SimTransport(sim))
    spec_only = body("clu_x", kube.status, deleting=True)
    spec_only["spec"] = {"name": "prod", "regionId": "reg_eu"}
    action = await runtime.cycle(spec_only, ResourceState(), deleting=True)
    assert isinstance(action, Requeue)
    assert sim.journal.read(0) == []
    stalled = next(c for c in kube.status["conditions"] if c["type"] == "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "RecordsLost")
    assert "deletion.attempt" in stalled["message"]
    assert kube.status["deletion"] == {"attempt": "not a number"}  # left as it was
    await runtime.stop()


async def test_a_wait_answer_without_steps_is_completed_from_get_operation() -> None:
    # The contract does not promise steps in :wait's answer; the runtime reads
    # GET /operations/{id} for them instead of reporting "no steps" (a FAILED operation whose
    # failed step is unknown must not look like one without a retryable step).
    from akua_operator.core.types import FollowOperation, OperationObserved

    failing = Scenario(
        operation_type="cluster.delete", mode="fail", step="delete_workers", retryable=True
    )
    sim = create_app(SimConfig(step_seconds=0.05, wait_includes_steps=False, scenarios=[failing]))
    cluster_id = await seed(sim)
    transport = SimTransport(sim)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim/v1") as http:
        headers = {"authorization": f"Bearer {TOKEN}"}
        etag = (await http.get(f"/clusters/{cluster_id}", headers=headers)).json()["etag"]
        headers["if-match"] = etag
        op_id = (await http.delete(f"/clusters/{cluster_id}", headers=headers)).json()["id"]
    runtime = make_runtime(RecordingKube(sim), transport)
    creds = Credentials(token=SecretStr(TOKEN))
    seen = None
    for _ in range(50):
        seen = await runtime.perform(FollowOperation(op_id, wait=True), creds)
        assert isinstance(seen, OperationObserved)
        if seen.operation.done:
            break
    assert isinstance(seen, OperationObserved)
    assert seen.operation.state == "FAILED"
    assert seen.operation.steps_reported
    failed = seen.operation.failed_step
    assert failed is not None and failed.name == "delete_workers" and failed.retryable
    paths = [(e["method"], e["path"]) for e in sim.journal.read(0)]
    assert ("GET", f"/operations/{op_id}") in paths  # read because :wait left the steps out
    await runtime.stop()


# --- the write diet (issue 12): the release through kopf, re-runs ----------------------------


def kopf_writes(kube: RecordingKube, kopf_patch: kopf.Patch) -> None:
    """What kopf does with a run's patch: its status part is one PATCH of /status."""
    if "status" in kopf_patch:
        kube.status = apply_merge(kube.status, kopf_patch["status"])
        kube.rv += 1
        kube.kopf_writes.append(dict(kopf_patch["status"]))


async def delete_runs(
    runtime: Runtime, kube: RecordingKube, cluster_id: str, state: ResourceState
) -> list[tuple[Action, kopf.Patch]]:
    """Delete-handler runs, kopf's patch applied after each, until the release."""
    runs: list[tuple[Action, kopf.Patch]] = []
    for _ in range(40):
        kopf_patch = kopf.Patch()
        action = await runtime.cycle(
            body(cluster_id, kube.status, deleting=True),
            state,
            deleting=True,
            kopf_patch=kopf_patch,
        )
        kopf_writes(kube, kopf_patch)
        runs.append((action, kopf_patch))
        if isinstance(action, Release):
            break
        assert isinstance(action, Requeue)
    return runs


async def test_the_release_status_is_handed_to_kopf_and_so_is_every_change_a_run_ends_on() -> None:
    # kopf removes the finalizer with a JSON patch that tests metadata.resourceVersion. The
    # release's status goes into kopf's patch (kopf PATCHes /status first, and tests the version
    # that PATCH returned), never written by the runtime itself. So does every change an Akua
    # answer brings while the operation is followed: the run ends on it and kopf writes it with
    # its progress record (one PATCH). Only the intent, before the DELETE, is written here.
    sim = create_app(SimConfig(step_seconds=0.3, seed=47))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    observed = len(kube.writes)
    runs = await delete_runs(runtime, kube, cluster_id, state)
    action, kopf_patch = runs[-1]
    assert isinstance(action, Release)
    final = kopf_patch["status"]
    assert final["deletion"]["releasedAt"].endswith("Z")
    assert final["operation"]["state"] == "SUCCEEDED"
    assert final["progress"] == "delete 4/4 SUCCEEDED"
    own = [patch for patch, _ in kube.writes[observed:]]
    assert not any("releasedAt" in (patch.get("deletion") or {}) for patch in own)
    # the runtime itself wrote the intent (before the DELETE went out) and nothing else
    assert [(p.get("deletion") or {}).get("pending") for p in own] == [True]
    # every other run ended on a change it handed to kopf: the DELETE's answer, STATE deleting
    assert all(a == Requeue(0.0, runtime_mod.RERUN_SHOWN) for a, _ in runs[:-1])
    assert runs[0][1]["status"]["state"] == "deleting"
    assert runs[0][1]["status"]["operation"]["state"] == "RUNNING"
    shown = [p["status"].get("progress") for _, p in runs]
    assert len(shown) == len(set(shown))  # each change written once
    assert [e.reason for e in kube.events] == ["Observed", "DeleteStarted", "Deleted"]
    # a run that starts right after the change it ended on long-polls at once: no GET first
    gets = [e for e in sim.journal.read(0) if e["method"] == "GET" and "/operations/" in e["path"]]
    assert gets == []
    await runtime.stop()


async def test_a_run_after_the_release_hands_the_same_release_and_decides_nothing() -> None:
    # kopf may run the delete handler again on an event older than its own release (the
    # watch lags under load; the object may be gone), or retry a patch of its own that
    # failed: the run hands kopf the same release, with no Akua call, status write or Event.
    sim = create_app(SimConfig(step_seconds=0.05, seed=67))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    stale = body(cluster_id, dict(kube.status), deleting=True)  # an event before any of it
    runs = await delete_runs(runtime, kube, cluster_id, state)
    action, released = runs[-1]
    assert isinstance(action, Release)
    calls, writes, events = len(sim.journal.read(0)), len(kube.writes), len(kube.events)
    again = kopf.Patch()
    action = await runtime.cycle(stale, state, deleting=True, kopf_patch=again)
    assert isinstance(action, Release)
    assert again["status"] == released["status"]
    assert (len(sim.journal.read(0)), len(kube.writes), len(kube.events)) == (
        calls,
        writes,
        events,
    )
    await runtime.stop()


async def test_an_observation_on_a_body_older_than_the_deletion_decides_nothing() -> None:
    # The list sweep's follow-up read the object before its deletion began, then waited for
    # the resource's lock while a delete run held it: its cycle must not write status into
    # an object that is being deleted (or already gone) nor call Akua.
    sim = create_app(SimConfig(step_seconds=0.05, seed=71))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    before = body(cluster_id, dict(kube.status), deleting=False)
    await delete_runs(runtime, kube, cluster_id, state)
    calls, writes = len(sim.journal.read(0)), len(kube.writes)
    action = await runtime.cycle(before, state, deleting=False, observe_only=True)
    assert isinstance(action, Idle)
    assert (len(sim.journal.read(0)), len(kube.writes)) == (calls, writes)
    await runtime.stop()


async def test_a_read_stamp_alone_does_not_end_the_run_and_rides_in_its_last_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # operation.lastReadAt moves (at most every 30 s) while nothing else does: no write of its
    # own, it goes with kopf's progress record at the end of the run.
    decide_mod = importlib.import_module("akua_operator.core.decide")
    monkeypatch.setattr(decide_mod, "READ_STAMP_INTERVAL", timedelta(seconds=1))
    monkeypatch.setattr(runtime_mod, "FOLLOW_SECONDS", 4.0)
    sim = create_app(SimConfig(step_seconds=30.0, seed=59))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))  # wait_timeout 1 s
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    runs = await delete_runs_until(runtime, kube, cluster_id, state, runs=2)
    before = len(kube.writes)
    kopf_patch = kopf.Patch()
    action = await runtime.cycle(
        body(cluster_id, kube.status, deleting=True), state, deleting=True, kopf_patch=kopf_patch
    )
    assert action == Requeue(0.0, "continue following")  # a whole run: no change to show
    assert len(kube.writes) == before  # nothing written by the runtime
    assert set(kopf_patch["status"]) == {"operation"}
    assert set(kopf_patch["status"]["operation"]) == {"lastReadAt"}
    assert runs
    await runtime.stop()


async def delete_runs_until(
    runtime: Runtime, kube: RecordingKube, cluster_id: str, state: ResourceState, *, runs: int
) -> list[Action]:
    done: list[Action] = []
    for _ in range(runs):
        kopf_patch = kopf.Patch()
        done.append(
            await runtime.cycle(
                body(cluster_id, kube.status, deleting=True),
                state,
                deleting=True,
                kopf_patch=kopf_patch,
            )
        )
        kopf_writes(kube, kopf_patch)
    return done


async def test_a_status_patch_that_changes_nothing_is_not_written() -> None:
    sim = create_app(SimConfig())
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    ref = ObjectRef("ns", "prod", UID)
    known = {"state": "deleting", "operation": {"id": "op_1", "state": "RUNNING"}}
    same = {"state": "deleting", "operation": {"state": "RUNNING"}}
    assert await runtime._write_status(ref, same, ResourceState(), known) == known
    assert kube.writes == []
    changed = {"operation": {"state": "SUCCEEDED"}}
    after = await runtime._write_status(ref, changed, ResourceState(), known)
    assert [patch for patch, _ in kube.writes] == [changed]
    assert after is not None and after["operation"]["state"] == "SUCCEEDED"
    await runtime.stop()


async def test_a_run_follows_an_operation_for_a_bounded_time_then_asks_to_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The run waits for the operation's next change until FOLLOW_SECONDS: then Requeue(0), so
    # the next run (and the annotations it reads) comes within about that long.
    monkeypatch.setattr(runtime_mod, "FOLLOW_SECONDS", 4.0)
    sim = create_app(SimConfig(step_seconds=30.0, seed=53))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))  # wait_timeout 1 s
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    # the first run ends on the DELETE's answer (handed to kopf), the second follows
    (first,) = await delete_runs_until(runtime, kube, cluster_id, state, runs=1)
    assert first == Requeue(0.0, runtime_mod.RERUN_SHOWN)
    action = await runtime.cycle(
        body(cluster_id, kube.status, deleting=True), state, deleting=True, kopf_patch={}
    )
    assert action == Requeue(0.0, "continue following")
    await runtime.stop()
    about_it = [e for e in sim.journal.read(0) if e["path"].startswith("/operations/")]
    # the operation tracker's one long poll (5 s, cancelled by stop()): at most one call per
    # 5 s per running operation; the DELETE's answer was its first news, no GET needed
    assert all(e["path"].endswith(":wait") for e in about_it) and len(about_it) <= 1, about_it


def delete_handler(runtime: Runtime) -> Any:
    registry = kopf.OperatorRegistry()
    register(registry, runtime)
    (handler,) = [h for h in registry._changing.get_all_handlers() if h.id == "delete"]
    return handler


async def test_the_delete_handler_comes_back_at_once_only_after_a_run_that_took_time() -> None:
    # ComeBack(0) costs kopf one write (its progress record); a delay > 0 usually two (the
    # record, then its touch-dummy once the delay is over). A run that is quick comes back
    # after the rest of MIN_RUN_SECONDS: never a spin.
    runtime = ScriptedRuntime(Requeue(0.0, "continue following"), Requeue(7.0, "backoff"))
    handler = delete_handler(runtime)
    kwargs = {
        "body": body("clu_x", {}, deleting=True),
        "memo": kopf.Memo(runtime=runtime),
        "patch": kopf.Patch(),
        "logger": logging.getLogger("test"),
    }
    with pytest.raises(kopf.TemporaryError) as raised:
        await handler.fn(**kwargs)
    assert 0.0 < (raised.value.delay or 0.0) <= akuacluster_mod.MIN_RUN_SECONDS
    assert runtime.calls[0]["kopf_patch"] is kwargs["patch"]
    with pytest.raises(kopf.TemporaryError) as raised:
        await handler.fn(**kwargs)
    assert raised.value.delay == 7.0


def test_a_run_that_took_time_comes_back_with_no_delay() -> None:
    long_ago = time.monotonic() - akuacluster_mod.MIN_RUN_SECONDS
    assert akuacluster_mod._rerun_delay(0.0, long_ago) == 0.0
    assert akuacluster_mod._rerun_delay(0.05, long_ago) == 0.1  # a real delay stays one
    assert 0.1 <= akuacluster_mod._rerun_delay(0.0, time.monotonic()) <= 1.0


class RecordingClaims:
    """Stands in for ClaimsIO: records each claim with the Akua calls made before it."""

    def __init__(self, sim: SimApp, owner: str | None = None) -> None:
        self.sim = sim
        self.owner = owner  # another resource holding every claim (None: ours)
        self.claims: list[tuple[str, list[str]]] = []
        self.released: list[str] = []

    async def claim(self, cluster_id: str, me: Any) -> str | None:
        self.claims.append(
            (cluster_id, [f"{e['method']} {e['path']}" for e in self.sim.journal.read(0)])
        )
        return self.owner

    async def release(self, cluster_id: str, me: Any) -> None:
        self.released.append(cluster_id)


@pytest.mark.parametrize("owner", [None, "team-b/first"])
async def test_a_created_cluster_is_claimed_before_the_first_call_about_it(
    owner: str | None,
) -> None:
    """The id of a created cluster is learned from its create operation: the claim comes
    before any call about the cluster; refused (another owner), no such call is made."""
    sim = create_app(SimConfig(step_seconds=0.01))
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    claims = RecordingClaims(sim, owner)
    runtime._claims = claims  # type: ignore[assignment]
    state = ResourceState()
    spec = {"name": "made", "regionId": "reg_eu"}
    meta = {"name": "prod", "namespace": "ns", "uid": UID, "generation": 1}
    for _ in range(20):
        action = await runtime.cycle(
            {"metadata": meta, "spec": spec, "status": kube.status}, state, deleting=False
        )
        if kube.status.get("clusterId") and claims.claims:
            break
        await asyncio.sleep(0.05)
    cluster_id = kube.status["clusterId"]
    claimed_id, before = claims.claims[0]
    assert claimed_id == cluster_id
    assert not any(cluster_id in path for path in before)
    paths = [e["path"] for e in sim.journal.read(0)]
    if owner is None:
        await runtime.cycle(
            {"metadata": meta, "spec": spec, "status": kube.status}, state, deleting=False
        )
        assert f"/clusters/{cluster_id}" in [e["path"] for e in sim.journal.read(0)]
    else:
        assert isinstance(action, Idle)
        assert not any(cluster_id in p for p in paths)
        stalled = next(c for c in kube.status["conditions"] if c["type"] == "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "ClusterClaimed")
        assert owner in stalled["message"]
    await runtime.stop()


def test_the_status_copy_is_used_for_an_older_body_and_dropped_once_the_watch_caught_up() -> None:
    # Memory: an idle resource keeps no copy of its status; a stale body still loses to our write.
    runtime = Runtime(Settings(namespaces=("ns",)), token_source=TokenSource(token=None))
    state = ResourceState(resource_version="10", status={"etag": "e-new"})

    def at(rv: str, etag: str) -> dict[str, Any]:
        b = body("clu_x", {"etag": etag}, deleting=False)
        b["metadata"]["resourceVersion"] = rv
        return b

    assert runtime._facts(at("9", "e-old"), state, deleting=False).status.etag == "e-new"
    assert state.status is not None  # still needed: the watch has not shown our write yet
    assert runtime._facts(at("10", "e-new"), state, deleting=False).status.etag == "e-new"
    assert state.status is None
    assert runtime._facts(at("11", "e-later"), state, deleting=False).status.etag == "e-later"


async def test_a_body_older_than_kopfs_write_of_the_last_run_is_not_trusted() -> None:
    # Under load kopf may run the handler again before its watch shows its own write of the
    # last run's patch (the DELETE's answer here): kopf's retry count tells. Deciding on that
    # older body would resend the DELETE (the same key: Akua replays it, but it is a call, an
    # Event and a status write too many).
    sim = create_app(SimConfig(step_seconds=30.0, seed=61))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    stale = dict(kube.status)
    first = kopf.Patch()
    action = await runtime.cycle(
        body(cluster_id, stale, deleting=True), state, deleting=True, kopf_patch=first, retry=0
    )
    assert action == Requeue(0.0, runtime_mod.RERUN_SHOWN)
    stale = dict(kube.status)  # the intent only: kopf's write of `first` not seen yet
    again = kopf.Patch()
    await runtime.cycle(
        body(cluster_id, stale, deleting=True), state, deleting=True, kopf_patch=again, retry=0
    )
    deletes = [e for e in sim.journal.read(0) if e["method"] == "DELETE"]
    assert len(deletes) == 1
    assert [e.reason for e in kube.events].count("DeleteStarted") == 1
    assert state.handed is not None
    # a body that carries kopf's write (its retry count) is trusted again
    kopf_writes(kube, first)
    await runtime.cycle(
        body(cluster_id, kube.status, deleting=True),
        state,
        deleting=True,
        kopf_patch=kopf.Patch(),
        retry=1,
    )
    assert len([e for e in sim.journal.read(0) if e["method"] == "DELETE"]) == 1
    await runtime.stop()


async def test_runs_that_wait_for_another_operation_send_the_delete_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A DELETE answered 409 (a suspend is running): the runs follow the suspend. A run ends on
    # a change only when a new run would go on following the same operation; otherwise the
    # new run would send the DELETE again (a spin of 409s while the suspend runs).
    monkeypatch.setattr(runtime_mod, "FOLLOW_SECONDS", 2.0)
    sim = create_app(SimConfig(step_seconds=30.0, seed=67))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))  # wait_timeout 1 s
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    async with httpx.AsyncClient(transport=SimTransport(sim), base_url="http://sim/v1") as http:
        resp = await http.post(
            f"/clusters/{cluster_id}:suspend",
            headers={"if-match": kube.status["etag"], "authorization": f"Bearer {TOKEN}"},
        )
        assert resp.status_code == 202, resp.text
    runs = await delete_runs_until(runtime, kube, cluster_id, state, runs=4)
    assert all(isinstance(a, Requeue) for a in runs)
    deletes = [e for e in sim.journal.read(0) if e["method"] == "DELETE"]
    assert [e["status"] for e in deletes] == [409]
    await runtime.stop()


async def test_a_list_item_requested_before_the_last_akua_answer_is_read_again() -> None:
    # A list sweep's page requested before this process last asked Akua about the resource
    # (a rename answered meanwhile) may show the cluster older than the status: the cycle
    # reads the cluster instead of deciding on the item (it could undo the rename or send a
    # replaced etag). A page requested after it stands in for the GET.
    sim = create_app(SimConfig(step_seconds=0.05, seed=61))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    state = ResourceState()
    requested = time.monotonic()  # a page sent now, answered after the GET below
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    item = Cluster.model_validate(sim.state.get_cluster(cluster_id))

    def gets() -> int:
        path = f"/clusters/{cluster_id}"
        return sum(1 for e in sim.journal.read(0) if (e["method"], e["path"]) == ("GET", path))

    before = gets()
    stale = ClusterObserved(item, read_at=requested)
    await runtime.cycle(
        body(cluster_id, kube.status, deleting=False),
        state,
        deleting=False,
        observe_only=True,
        seed=stale,
    )
    assert gets() == before + 1
    fresh = ClusterObserved(item, read_at=time.monotonic())
    await runtime.cycle(
        body(cluster_id, kube.status, deleting=False),
        state,
        deleting=False,
        observe_only=True,
        seed=fresh,
    )
    assert gets() == before + 1  # a page requested after the write stands in for the GET
    await runtime.stop()
