"""The routine observation (handlers/observer.py): the index comparison, the sweep schedule
(fake clock), the liveness rule it feeds (fake clock), and one sweep against the in-process
simulator: unchanged clusters cost nothing, a changed one one cycle on the list item (no GET),
an absent one one GET."""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import httpx
import kopf
from pydantic import SecretStr

from akua_operator import telemetry
from akua_operator.akua.client import Credentials
from akua_operator.akua.models import Cluster
from akua_operator.core.status import merge_patch
from akua_operator.core.types import Action, Idle
from akua_operator.handlers.akuacluster import register
from akua_operator.handlers.observer import (
    ASK_DEBOUNCE,
    ASK_MAX_DELAY,
    PAGE_LIMIT,
    ClusterSweeper,
    Entry,
    Observer,
    SweepSchedule,
    changed,
    entry_from,
)
from akua_operator.handlers.runtime import Runtime
from akua_operator.kube import ObjectRef, TokenSource
from akua_operator.resource.models import CredentialsSpec
from akua_operator.settings import Settings
from akua_operator.sim.config import SimConfig
from akua_operator.sim.server import SimServer
from akua_operator.telemetry.health import HealthThresholds, ProgressTracker

TOKEN = "sk_akua_test"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cluster(**over: Any) -> Cluster:
    data = {
        "id": "clu_a",
        "html_url": "https://akua.example/clusters/clu_a",
        "name": "prod",
        "workspace_id": "ws_1",
        "state": "active",
        "provider": "akua",
        "reconciling": False,
        "created_at": 1,
        "updated_at": 2,
        "etag": "e1",
    }
    return Cluster.model_validate(data | over)


def body(uid: str = "u1", status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "name": f"res-{uid}", "namespace": "ns", "annotations": {}},
        "spec": {"clusterId": "clu_a"} | spec,
        "status": status or {},
    }


SHOWN = {
    "clusterId": "clu_a",
    "workspaceId": "ws_1",
    "etag": "e1",
    "state": "active",
    "name": "prod",
    "reconciling": False,
}


# --- the index ---------------------------------------------------------------------------------


def test_an_item_that_shows_what_status_shows_is_unchanged() -> None:
    entry = entry_from(body(status=SHOWN))
    assert entry is not None
    assert not changed(entry, cluster())
    for over in ({"etag": "e2"}, {"state": "suspended"}, {"name": "renamed"},
                 {"reconciling": True}):  # fmt: skip
        assert changed(entry, cluster(**over)), over


def test_a_resource_never_observed_is_changed_and_keyed_by_its_credentials() -> None:
    adopted = entry_from(body(credentials={"secretRef": {"name": "team"}, "workspaceId": "ws_9"}))
    assert adopted is not None
    assert adopted.cluster_id == "clu_a"
    assert adopted.key == (("ns", "team", "token"), "ws_9")
    assert changed(adopted, cluster())
    # Once observed, the workspace status recorded is the one listed.
    seen = entry_from(body(status=SHOWN))
    assert seen is not None and seen.key == (None, "ws_1")


def test_deleting_or_paused_resources_are_skipped() -> None:
    deleting = body(status=SHOWN)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    paused = body(status=SHOWN)
    paused["metadata"]["annotations"] = {"akua.dev/paused": "true"}
    assert all(e is not None and e.skip for e in (entry_from(deleting), entry_from(paused)))
    plain = entry_from(body(status=SHOWN))
    assert plain is not None and not plain.skip


# --- the schedule --------------------------------------------------------------------------------


def test_a_burst_of_asks_makes_one_sweep_one_second_after_the_last() -> None:
    clock = FakeClock()
    schedule = SweepSchedule(300.0, first=300.0, clock=clock)
    assert schedule.due() == 1300.0
    sweeps = 0
    for _ in range(5000):  # 5000 resources resumed within 5 s
        schedule.ask()
        clock.now += 0.001
        if clock.now >= schedule.due():
            sweeps += 1
            schedule.started()
    assert sweeps == 0
    last_ask = clock.now - 0.001
    assert schedule.due() == last_ask + ASK_DEBOUNCE
    clock.now = schedule.due()
    schedule.started()
    assert schedule.due() == clock.now + 300.0  # back to the interval


def test_asks_that_never_pause_still_sweep_after_the_max_delay() -> None:
    clock = FakeClock()
    schedule = SweepSchedule(300.0, clock=clock)
    start = clock.now
    schedule.ask()
    for _ in range(100):
        clock.now += 0.5
        schedule.ask()
    assert schedule.due() == start + ASK_MAX_DELAY


# --- liveness ------------------------------------------------------------------------------------


def test_an_idle_operator_that_sweeps_every_interval_stays_live() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(HealthThresholds(watch_stall_after=900.0), clock=clock)
    tracker.mark_started()
    tracker.set_active_resources(5000)
    for _ in range(20):  # 20 intervals of 300 s: no watch event, no handler run
        clock.now += 300.0
        assert tracker.liveness().ok
        tracker.mark_sweep()
    watch = tracker.liveness().checks["watch"]
    assert watch["seconds_since_sweep"] == 0.0


def test_no_sweep_and_no_watch_event_for_the_threshold_fails_liveness() -> None:
    clock = FakeClock()
    tracker = ProgressTracker(HealthThresholds(watch_stall_after=900.0), clock=clock)
    tracker.mark_started()
    tracker.set_active_resources(1)
    tracker.mark_sweep()
    clock.now += 899.0
    assert tracker.liveness().ok
    clock.now += 2.0
    assert not tracker.liveness().ok
    tracker.mark_watch_event()
    assert tracker.liveness().ok
    clock.now += 901.0
    assert not tracker.liveness().ok
    tracker.set_active_resources(0)  # nothing known: nothing to make progress on
    assert tracker.liveness().ok


# --- one sweep against the simulator -------------------------------------------------------------


class Kube:
    """Stands in for KubeIO: the AkuaClusters by name; status patches applied to them."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.reads = 0

    async def credentials(
        self, namespace: str, spec: CredentialsSpec | None, default: TokenSource
    ) -> Credentials:
        return Credentials(token=SecretStr(TOKEN))

    async def get_akuacluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        found = self.objects.get(name)
        return copy.deepcopy(found) if found is not None else None

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        obj = self.objects[name]
        obj["status"] = merge_patch(obj.get("status") or {}, patch)
        return obj

    async def emit_event(self, ref: ObjectRef, event: Any) -> None:
        pass

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        return {}


class Recorder:
    def __init__(self) -> None:
        self.scheduled: list[tuple[str, Cluster | None]] = []

    def schedule(self, uid: str, delay: float = 0.0, seed: Any = None) -> None:
        self.scheduled.append((uid, seed.cluster if seed is not None else None))


async def test_one_sweep_acts_only_on_what_changed_or_is_absent() -> None:
    telemetry.setup(telemetry.TelemetrySettings())
    with SimServer(SimConfig(tokens=[TOKEN])) as server:
        ids = []
        async with httpx.AsyncClient(timeout=10) as admin:
            for i in range(PAGE_LIMIT + 5):  # two pages
                made = await admin.post(f"{server.admin_url}/clusters", json={"name": f"c{i}"})
                ids.append(made.json()["id"])
        kube = Kube()
        settings = Settings(namespaces=("ns",), api_url=server.url, api_rate=0)
        runtime = Runtime(settings, token_source=TokenSource(token=SecretStr(TOKEN)), kube=kube)  # type: ignore[arg-type]
        await runtime.start()
        try:
            creds = await kube.credentials("", None, runtime.token_source)
            listed = []
            cursor = None
            while True:
                page = await runtime.client.list_clusters(creds=creds, limit=100, cursor=cursor)
                listed += page.data
                if not page.has_more:
                    break
                cursor = page.next_cursor
            by_id = {c.id: c for c in listed}
            observer = Observer(runtime)
            recorder = Recorder()
            observer.follower = recorder  # type: ignore[assignment]
            shown = next(iter(by_id.values()))
            workspace = shown.workspace_id

            def seen(c: Cluster) -> dict[str, Any]:
                return {
                    "clusterId": c.id,
                    "workspaceId": c.workspace_id,
                    "etag": c.etag,
                    "state": str(c.state),
                    "name": c.name,
                    "reconciling": c.reconciling,
                }

            unchanged = [by_id[i] for i in ids[:3]]
            for n, c in enumerate(unchanged):
                observer.note(body(f"same{n}", seen(c), clusterId=c.id), None)
            drifted = by_id[ids[3]]
            observer.note(body("drift", seen(drifted) | {"etag": "old"}, clusterId=ids[3]), None)
            absent = seen(cluster(id="clu_gone", workspace_id=workspace))
            observer.note(body("gone", absent, clusterId="clu_gone"), None)
            before = len(server.sim.journal.read(0))

            sweeper = ClusterSweeper(observer, (None, workspace))
            observer.set_paused(True)  # a standby replica (kopf peering) does not act
            assert await sweeper.sweep() == "paused"
            assert server.sim.journal.read(before) == []
            observer.set_paused(False)
            asked = sweeper.ask(ids[-1])  # a resume handler waiting for its cluster
            assert await sweeper.sweep() == "ok"

            calls = server.sim.journal.read(before)
            assert [(e["method"], e["path"]) for e in calls] == [("GET", "/clusters")] * 2
            assert asked.done() and (asked.result() or cluster()).id == ids[-1]
            scheduled = dict(recorder.scheduled)
            assert set(scheduled) == {"drift", "gone"}  # the unchanged cost nothing
            assert scheduled["drift"] is not None and scheduled["drift"].id == ids[3]
            assert scheduled["gone"] is None  # absent: a cycle that reads it (one GET)
        finally:
            await runtime.stop()


async def test_a_changed_cluster_is_decided_on_the_list_item_without_a_get() -> None:
    telemetry.setup(telemetry.TelemetrySettings())
    with SimServer(SimConfig(tokens=[TOKEN])) as server:
        async with httpx.AsyncClient(timeout=10) as admin:
            made = await admin.post(f"{server.admin_url}/clusters", json={"name": "prod"})
        cid = made.json()["id"]
        kube = Kube()
        settings = Settings(namespaces=("ns",), api_url=server.url, api_rate=0)
        runtime = Runtime(settings, token_source=TokenSource(token=SecretStr(TOKEN)), kube=kube)  # type: ignore[arg-type]
        await runtime.start()
        try:
            observer = Observer(runtime)
            kube.objects["res-u1"] = body("u1", None, clusterId=cid)
            entry = observer.note(kube.objects["res-u1"], None)
            assert isinstance(entry, Entry)
            before = len(server.sim.journal.read(0))
            sweeper = ClusterSweeper(observer, entry.key)
            await sweeper.sweep()
            await asyncio.wait_for(observer.follower.wait_idle(), 30)
            calls = server.sim.journal.read(before)
            assert [(e["method"], e["path"]) for e in calls] == [("GET", "/clusters")]
            status = kube.objects["res-u1"]["status"]
            assert status["clusterId"] == cid and status["etag"] == made.json()["etag"]
            assert kube.reads == 1  # read once from Kubernetes
            await observer.stop()
        finally:
            await runtime.stop()


# --- the create/resume handlers take their cluster from a sweep ----------------------------------


class SeedRecorder(Runtime):
    """A Runtime whose cycle records what it was given (the handler glue is what is tested)."""

    def __init__(self, settings: Settings, kube: Kube) -> None:
        super().__init__(settings, token_source=TokenSource(token=SecretStr(TOKEN)), kube=kube)  # type: ignore[arg-type]
        self.calls: list[dict[str, Any]] = []

    async def cycle(self, body: Any, state: Any, **kwargs: Any) -> Action:
        self.calls.append(kwargs)
        return Idle("observed")


async def test_resumed_resources_take_their_clusters_from_one_debounced_sweep() -> None:
    telemetry.setup(telemetry.TelemetrySettings())
    with SimServer(SimConfig(tokens=[TOKEN])) as server:
        async with httpx.AsyncClient(timeout=10) as admin:
            cids = [
                (await admin.post(f"{server.admin_url}/clusters", json={"name": f"r{i}"})).json()[
                    "id"
                ]
                for i in range(30)
            ]
        settings = Settings(namespaces=("ns",), api_url=server.url, api_rate=0)
        runtime = SeedRecorder(settings, Kube())
        await runtime.start()
        registry = kopf.OperatorRegistry()
        observer = register(registry, runtime)
        observer.start()
        (resume,) = [h for h in registry._changing.get_all_handlers() if h.id == "observe-resume"]
        try:
            before = len(server.sim.journal.read(0))
            runs = [
                resume.fn(
                    body=body(f"u{i}", None, clusterId=cid),
                    memo=kopf.Memo(runtime=runtime),
                    logger=logging.getLogger("test"),
                    retry=0,
                )
                for i, cid in enumerate(cids)
            ]
            await asyncio.wait_for(asyncio.gather(*runs), 60)
            calls = server.sim.journal.read(before)
            assert [(e["method"], e["path"]) for e in calls] == [("GET", "/clusters")]
            seeds = [c["seed"] for c in runtime.calls]
            assert sorted(s.cluster.id for s in seeds) == sorted(cids)
            # A re-run (kopf retry) reads the cluster itself: no seed, no sweep.
            await resume.fn(
                body=body("u0", None, clusterId=cids[0]),
                memo=kopf.Memo(runtime=runtime),
                logger=logging.getLogger("test"),
                retry=1,
            )
            assert runtime.calls[-1]["seed"] is None
        finally:
            await observer.stop()
            await runtime.stop()
