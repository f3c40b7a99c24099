"""The runtime's side of the guards against mass deletion: the deletion budget (a token bucket
per process) and the CRD guard (reading the CRD, recording released clusters), with the real
Akua client against the in-process simulator and a recorder standing in for Kubernetes."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from test_runtime import TOKEN, UID, RecordingKube, body, seed

from akua_operator import telemetry
from akua_operator.akua.client import AkuaClient, ClientConfig
from akua_operator.core.types import Release, Requeue
from akua_operator.handlers.budget import DeletionBudget
from akua_operator.handlers.runtime import ResourceState, Runtime, released_key
from akua_operator.kube import CRDUnreadable, ObjectRef, TokenSource
from akua_operator.settings import Settings
from akua_operator.sim.app import SimApp, create_app
from akua_operator.sim.config import SimConfig
from akua_operator.sim.transport import SimTransport

RECORD = ("akua-system", "akua-operator-released-clusters")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counter(name: str) -> float:
    text = telemetry.current().metrics.exposition().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return 0.0


def make(kube: RecordingKube, sim: SimApp, **settings: Any) -> Runtime:
    client = AkuaClient(
        ClientConfig(base_url="http://sim/v1", rate=0, max_retries=0), transport=SimTransport(sim)
    )
    return Runtime(
        Settings(namespaces=("ns",), wait_timeout=1, **settings),
        token_source=TokenSource(token=SecretStr(TOKEN)),
        kube=kube,  # type: ignore[arg-type]
        client=client,
    )


def deletes(sim: SimApp, cluster_id: str) -> int:
    return sum(
        1
        for e in sim.journal.read(0)
        if e["method"] == "DELETE" and e["path"] == f"/clusters/{cluster_id}"
    )


def reconciling(kube: RecordingKube) -> dict[str, Any]:
    return next(c for c in kube.status.get("conditions", []) if c["type"] == "Reconciling")


# --- the token bucket ----------------------------------------------------------------------


def test_budget_allows_n_at_once_then_one_every_60_over_n_seconds() -> None:
    clock = Clock()
    budget = DeletionBudget(2, clock=clock)
    assert [budget.try_take() for _ in range(3)] == [True, True, False]
    assert budget.retry_in() == pytest.approx(30.0)
    clock.now += 29.0
    assert not budget.try_take()
    assert budget.retry_in() == pytest.approx(1.0)
    clock.now += 1.0
    assert budget.try_take()
    assert not budget.try_take()
    clock.now += 3600.0  # a quiet hour refills to N, never more
    assert [budget.try_take() for _ in range(3)] == [True, True, False]


def test_a_budget_of_zero_is_off() -> None:
    budget = DeletionBudget(0, clock=Clock())
    assert not budget.enabled
    assert all(budget.try_take() for _ in range(100))
    assert budget.retry_in() == 0.0


# --- the budget in the cycle -----------------------------------------------------------------


async def test_a_delete_beyond_the_budget_waits_unwritten_and_goes_when_a_slot_frees() -> None:
    sim = create_app(SimConfig(step_seconds=0.05, seed=51))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make(kube, sim, deletion_budget_per_minute=1)
    clock = Clock()
    runtime.budget = DeletionBudget(1, clock=clock)
    assert runtime.budget.try_take()  # another resource took this minute's slot
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    deferred_before = counter("akua_operator_deletions_deferred_total")

    action = await runtime.cycle(body(cluster_id, kube.status, deleting=True), state, deleting=True)
    assert isinstance(action, Requeue)
    assert deletes(sim, cluster_id) == 0
    cond = reconciling(kube)
    assert (cond["status"], cond["reason"]) == ("True", "WaitingForDeletionBudget")
    assert "1 Akua deletions per minute" in cond["message"]
    assert "akua.dev/approve-delete=true" in cond["message"]
    # the refused decision's patch was never written: no key, nothing pending
    assert not any((p.get("deletion") or {}).get("pending") for p, _ in kube.writes)
    assert [e.reason for e in kube.events].count("DeletionBudgetWait") == 1
    assert counter("akua_operator_deletions_deferred_total") - deferred_before == 1

    # Still no slot: it waits again, without a second Event.
    await runtime.cycle(body(cluster_id, kube.status, deleting=True), state, deleting=True)
    assert deletes(sim, cluster_id) == 0
    assert [e.reason for e in kube.events].count("DeletionBudgetWait") == 1

    clock.now += 60.0  # a slot frees
    for _ in range(20):
        action = await runtime.cycle(
            body(cluster_id, kube.status, deleting=True), state, deleting=True
        )
        if isinstance(action, Release):
            break
    assert isinstance(action, Release)
    assert deletes(sim, cluster_id) == 1
    assert cluster_id in sim.state.dump()["deleted_cluster_ids"]
    await runtime.client.aclose()


async def test_an_approved_delete_goes_beyond_the_budget_without_taking_a_slot() -> None:
    sim = create_app(SimConfig(step_seconds=0.05, seed=53))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make(kube, sim, deletion_budget_per_minute=1)
    runtime.budget = DeletionBudget(1, clock=Clock())
    assert runtime.budget.try_take()
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    await runtime.cycle(body(cluster_id, kube.status, deleting=True), state, deleting=True)
    assert deletes(sim, cluster_id) == 0

    approved = body(cluster_id, kube.status, deleting=True)
    approved["metadata"]["annotations"] = {"akua.dev/approve-delete": "true"}
    await runtime.cycle(approved, state, deleting=True)
    assert deletes(sim, cluster_id) == 1
    assert reconciling(kube)["reason"] != "WaitingForDeletionBudget"
    await runtime.client.aclose()


# --- the CRD guard -----------------------------------------------------------------------------


async def test_crd_deletion_releases_records_and_counts_without_any_delete() -> None:
    sim = create_app(SimConfig(step_seconds=0.05, seed=55))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = make(kube, sim, operator_namespace="akua-system")
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    released_before = counter("akua_operator_released_by_crd_deletion_total")
    kube.crd_is_deleting = True

    action = await runtime.cycle(body(cluster_id, kube.status, deleting=True), state, deleting=True)
    assert isinstance(action, Release)
    assert action.cause == "crd-guard"
    assert deletes(sim, cluster_id) == 0
    assert sim.state.dump()["deleted_cluster_ids"] == []
    warning = next(e for e in kube.events if e.reason == "ReleasedByCRDDeletion")
    assert cluster_id in warning.message and "NOT deleted" in warning.message
    record = json.loads(kube.records[RECORD][f"ns.prod.{UID}"])
    assert record["clusterId"] == cluster_id
    assert (record["namespace"], record["name"], record["uid"]) == ("ns", "prod", UID)
    assert record["releasedAt"]
    assert counter("akua_operator_released_by_crd_deletion_total") - released_before == 1
    await runtime.client.aclose()


async def test_on_crd_deletion_delete_never_reads_the_crd_and_deletes() -> None:
    sim = create_app(SimConfig(step_seconds=0.05, seed=57))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    kube.crd_is_deleting = True
    runtime = make(kube, sim, on_crd_deletion="delete", operator_namespace="akua-system")
    state = ResourceState()
    await runtime.cycle(body(cluster_id, {}, deleting=False), state, deleting=False)
    await runtime.cycle(body(cluster_id, kube.status, deleting=True), state, deleting=True)
    assert deletes(sim, cluster_id) == 1
    assert kube.crd_reads == 0
    assert kube.records == {}
    await runtime.client.aclose()


async def test_a_crd_read_sent_before_a_deletion_was_seen_is_not_used_for_it() -> None:
    """Resource A's deletion reads the CRD (not deleting); then the CRD is deleted and B's
    deletion arrives: B must not reuse A's read (it could predate the CRD deletion)."""
    sim = create_app(SimConfig(step_seconds=0.05, seed=59))
    first, second = await seed(sim), await seed(sim)
    kube = RecordingKube(sim)
    runtime = make(kube, sim)
    await runtime.cycle(body(first, {"etag": "x"}, deleting=True), ResourceState(), deleting=True)
    assert kube.crd_reads == 1
    assert deletes(sim, first) >= 1  # a user's deletion before the CRD's: it goes on

    kube.crd_is_deleting = True
    other = body(second, {}, deleting=True)
    other["metadata"]["uid"] = "5d1c7f0e-0000-4000-8000-000000000002"
    action = await runtime.cycle(other, ResourceState(), deleting=True)
    assert kube.crd_reads == 2
    assert isinstance(action, Release) and action.cause == "crd-guard"
    assert deletes(sim, second) == 0
    await runtime.client.aclose()


class ForbiddenCRD(RecordingKube):
    async def crd_deleting(self, name: str) -> bool:
        self.crd_reads += 1
        raise CRDUnreadable(name, 403)


async def test_a_forbidden_crd_read_deletes_as_before_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = create_app(SimConfig(step_seconds=0.05, seed=61))
    cluster_id = await seed(sim)
    kube = ForbiddenCRD(sim)
    runtime = make(kube, sim)
    state = ResourceState()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            await runtime.cycle(body(cluster_id, kube.status, deleting=True), state, deleting=True)
    assert deletes(sim, cluster_id) == 1
    warnings = [r for r in caplog.records if "CRD guard is OFF" in r.getMessage()]
    assert len(warnings) == 1
    assert "403" in warnings[0].getMessage()
    await runtime.client.aclose()


class BrokenRecord(RecordingKube):
    def __init__(self, sim: SimApp) -> None:
        super().__init__(sim)
        self.attempts = 0

    async def record_released(self, namespace: str, name: str, key: str, value: str) -> None:
        self.attempts += 1
        raise RuntimeError("the API server said no")


async def test_a_failed_record_is_retried_once_then_logged_and_the_release_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = create_app(SimConfig(step_seconds=0.05, seed=63))
    cluster_id = await seed(sim)
    kube = BrokenRecord(sim)
    kube.crd_is_deleting = True
    runtime = make(kube, sim, operator_namespace="akua-system")
    with caplog.at_level(logging.WARNING):
        action = await runtime.cycle(
            body(cluster_id, {}, deleting=True), ResourceState(), deleting=True
        )
    assert isinstance(action, Release) and action.cause == "crd-guard"
    assert kube.attempts == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and cluster_id in errors[0].getMessage()
    released = [r for r in caplog.records if "NOT deleted" in r.getMessage()]
    assert released and released[0].levelno == logging.WARNING
    await runtime.client.aclose()


async def test_without_an_operator_namespace_the_release_is_logged_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = create_app(SimConfig(step_seconds=0.05, seed=65))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    kube.crd_is_deleting = True
    runtime = make(kube, sim)
    with caplog.at_level(logging.WARNING):
        action = await runtime.cycle(
            body(cluster_id, {}, deleting=True), ResourceState(), deleting=True
        )
    assert isinstance(action, Release)
    assert kube.records == {}
    text = caplog.text
    assert cluster_id in text and "logs and Events only" in text
    await runtime.client.aclose()


def test_released_key_is_a_valid_configmap_key_per_resource() -> None:
    key = released_key(ObjectRef("ns", "a.b-c", UID))
    assert key == f"ns.a.b-c.{UID}"
    long = released_key(ObjectRef("n" * 63, "x" * 253, UID))
    assert len(long) <= 253 and long.endswith(UID)
