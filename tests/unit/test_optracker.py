"""The operation tracker (handlers/optracker.py) against the in-process simulator: handlers
wake on changes, completions are learned by :wait or list sweeps, a FAILED operation comes with
its failed step, a vanished one comes back as 404, and stop() ends everything."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from akua_operator import telemetry
from akua_operator.akua.client import AkuaClient, ClientConfig, Credentials
from akua_operator.akua.errors import AkuaNotFound
from akua_operator.akua.models import Operation
from akua_operator.core.tracking import PlanTuning
from akua_operator.handlers.optracker import OperationTracker, credentials_key
from akua_operator.sim.app import SimApp, create_app
from akua_operator.sim.config import Scenario, SimConfig
from akua_operator.sim.transport import SimTransport

TOKEN = "sk_akua_test"
CREDS = Credentials(token=SecretStr(TOKEN))


async def start_deletes(sim: SimApp, n: int) -> list[str]:
    """n clusters, each deleted: the ids of their delete operations."""
    return [op.id for op in await delete_answers(sim, n)]


async def delete_answers(sim: SimApp, n: int) -> list[Operation]:
    """n clusters, each deleted: the DELETE answers."""
    headers = {"authorization": f"Bearer {TOKEN}"}
    ops = []
    async with httpx.AsyncClient(transport=SimTransport(sim), base_url="http://sim") as http:
        for i in range(n):
            cid = (await http.post("/_sim/clusters", json={"name": f"c{i}"})).json()["id"]
            etag = (await http.get(f"/v1/clusters/{cid}", headers=headers)).json()["etag"]
            resp = await http.delete(f"/v1/clusters/{cid}", headers={**headers, "if-match": etag})
            ops.append(Operation.model_validate(resp.json()))
    return ops


def client(sim: SimApp, rate: float = 0) -> AkuaClient:
    config = ClientConfig(base_url="http://sim/v1", rate=rate, burst=40, max_retries=0)
    return AkuaClient(config, transport=SimTransport(sim))


async def until_done(tracker: OperationTracker, op_id: str) -> Operation:
    """What a handler does: wait for changes until the operation is done."""
    seen = 0
    while True:
        found, seen = await tracker.changed(op_id, seen, 30.0)
        assert not isinstance(found, Exception)
        if found is not None and found.done:
            return found


def calls_about(sim: SimApp, op_id: str) -> list[dict[str, object]]:
    return [e for e in sim.journal.read(0) if str(e["path"]).startswith(f"/operations/{op_id}")]


def tracker_metric(name: str) -> float:
    text = telemetry.current().metrics.exposition().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} is not exported")


def test_the_key_names_no_token() -> None:
    key = credentials_key(CREDS)
    assert TOKEN not in repr(key) and len(key[0]) == 16 and key[1] is None


async def test_a_handler_wakes_when_its_operation_ends_without_polling() -> None:
    sim = create_app(SimConfig(step_seconds=1.5))
    (answer,) = await delete_answers(sim, 1)
    op_id = answer.id
    akua = client(sim)
    tracker = OperationTracker(akua, CREDS, tuning=PlanTuning(wait_timeout=1))
    tracker.follow(op_id, seed=answer)  # the DELETE's answer: its first news, no call
    try:
        done = await asyncio.wait_for(until_done(tracker, op_id), 30)
        assert done.state == "SUCCEEDED"
        assert done.steps_reported and all(s.status == "completed" for s in done.steps)
        # :wait long polls only (their answers carry the steps here), and never more than one
        # call about it per 5 s
        calls = calls_about(sim, op_id)
        assert calls and all(str(e["path"]).endswith(":wait") for e in calls)
        times = [float(e["time"]) for e in calls]  # type: ignore[arg-type]
        assert all(b - a >= 4.9 for a, b in itertools.pairwise(times))
    finally:
        await tracker.stop()
        await akua.aclose()


async def test_above_w_completions_come_from_list_sweeps_and_a_failed_one_from_a_get() -> None:
    failing = Scenario(
        operation_type="cluster.delete", mode="fail", step="delete_workers", retryable=True
    )
    sim = create_app(SimConfig(step_seconds=0.5, scenarios=[failing]))
    ops = await start_deletes(sim, 12)
    akua = client(sim, rate=4)  # W = floor(0.5 * 4 * 5) = 10 < 12 running
    tracker = OperationTracker(akua, CREDS)
    pages_before = tracker_metric("akua_operator_tracker_sweep_pages_total")
    sweeps_before = tracker_metric("akua_operator_tracker_sweeps_total")
    followed_before = tracker_metric("akua_operator_tracker_operations")
    for op_id in ops:
        tracker.follow(op_id)
    try:
        finals = await asyncio.wait_for(
            asyncio.gather(*(until_done(tracker, op_id) for op_id in ops)), 60
        )
        states = Counter(str(op.state) for op in finals)
        assert states == {"SUCCEEDED": 11, "FAILED": 1}
        (failed,) = [op for op in finals if op.state == "FAILED"]
        step = failed.failed_step
        assert step is not None and step.name == "delete_workers" and step.retryable
        journal = sim.journal.read(0)
        assert any(e["path"] == "/operations" for e in journal)  # list sweeps
        assert not any(str(e["path"]).endswith(":wait") for e in journal)
        assert ("GET", f"/operations/{failed.id}") in [(e["method"], e["path"]) for e in journal]
        # what the benchmark scrapes
        pages = sum(1 for e in journal if e["path"] == "/operations")
        assert tracker_metric("akua_operator_tracker_sweep_pages_total") - pages_before == pages
        assert tracker_metric("akua_operator_tracker_sweeps_total") > sweeps_before
        assert tracker_metric("akua_operator_tracker_operations") == followed_before + 12
    finally:
        await tracker.stop()
        await akua.aclose()


async def test_a_vanished_operation_comes_back_as_404() -> None:
    sim = create_app(SimConfig(step_seconds=0.3))
    akua = client(sim)
    tracker = OperationTracker(akua, CREDS)
    tracker.follow("op_0123456789abcdef")
    try:
        found, version = await asyncio.wait_for(tracker.changed("op_0123456789abcdef", 0, 30), 30)
        assert isinstance(found, AkuaNotFound) and version == 1
        # parked: no more calls about it until it is followed again
        await asyncio.sleep(0)
        assert len(calls_about(sim, "op_0123456789abcdef")) == 1
    finally:
        await tracker.stop()
        await akua.aclose()


async def test_stop_wakes_waiters_and_ends_the_calls() -> None:
    sim = create_app(SimConfig(step_seconds=30))
    (op_id,) = await start_deletes(sim, 1)
    akua = client(sim)
    tracker = OperationTracker(akua, CREDS)
    tracker.follow(op_id)
    first, version = await asyncio.wait_for(tracker.changed(op_id, 0, 30), 30)
    assert isinstance(first, Operation) and not first.done
    waiter = asyncio.create_task(tracker.changed(op_id, version, 300))
    await asyncio.sleep(0)
    await tracker.stop()
    _, after = await asyncio.wait_for(waiter, 5)
    assert after == version  # nothing changed: the handler requeues
    assert tracker.followed == 0
    await akua.aclose()


async def test_a_cancelled_waiter_leaves_the_tracker_working() -> None:
    sim = create_app(SimConfig(step_seconds=0.2))
    (answer,) = await delete_answers(sim, 1)
    op_id = answer.id
    akua = client(sim)
    tracker = OperationTracker(akua, CREDS, tuning=PlanTuning(wait_timeout=1))
    tracker.follow(op_id, seed=answer)
    try:
        waiter = asyncio.create_task(tracker.changed(op_id, 10**6, 300))
        await asyncio.sleep(0)
        waiter.cancel()
        done = await asyncio.wait_for(until_done(tracker, op_id), 30)
        assert done.state == "SUCCEEDED"
    finally:
        await tracker.stop()
        await akua.aclose()
