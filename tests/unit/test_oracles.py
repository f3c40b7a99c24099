"""The exactly-once oracle of the e2e and chaos tests (tests/oracles.py) catches what the
simulator's kindness hides: it is fed the journal and operations of the in-process simulator
(default gap decisions, frozen clock) after scripted DELETE sequences."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from akua_operator.sim.app import SimApp, create_app
from akua_operator.sim.clock import FakeClock
from akua_operator.sim.config import SimConfig
from akua_operator.sim.transport import SimTransport
from oracles import assert_exactly_once, delete_records, in_flight_at

TOKEN = "sk_akua_test"


@pytest.fixture
def sim() -> SimApp:
    return create_app(SimConfig(step_seconds=5.0), clock=FakeClock())


async def call(sim: SimApp, method: str, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=SimTransport(sim), base_url="http://sim") as http:
        return await http.request(
            method, path, headers={"authorization": f"Bearer {TOKEN}", **headers}
        )


async def seeded(sim: SimApp) -> dict[str, Any]:
    async with httpx.AsyncClient(transport=SimTransport(sim), base_url="http://sim") as http:
        data: dict[str, Any] = (await http.post("/_sim/clusters", json={"name": "c"})).json()
        return data


async def delete(sim: SimApp, cid: str, etag: str, key: str) -> httpx.Response:
    headers = {"if-match": etag, "idempotency-key": key}
    return await call(sim, "DELETE", f"/v1/clusters/{cid}", **headers)


def ops(sim: SimApp) -> list[dict[str, Any]]:
    operations: list[dict[str, Any]] = sim.state.dump()["operations"]
    return operations


async def test_one_delete_and_a_resend_with_the_same_key_is_exactly_once(sim: SimApp) -> None:
    c = await seeded(sim)
    assert (await delete(sim, c["id"], c["etag"], "k-1")).status_code == 202
    assert (await delete(sim, c["id"], c["etag"], "k-1")).status_code == 202  # a resend
    records = assert_exactly_once(sim.journal.read(), ops(sim), [c["id"]])
    assert records[c["id"]].resends == 1


async def test_a_second_delete_with_a_new_key_is_caught_though_akua_started_nothing(
    sim: SimApp,
) -> None:
    c = await seeded(sim)
    first = await delete(sim, c["id"], c["etag"], "k-1")
    second = await delete(sim, c["id"], c["etag"], "k-2")
    # The simulator's kind answer: the running operation, no second one started ...
    assert second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert len(ops(sim)) == 1
    # ... which the oracle does not take as exactly once.
    with pytest.raises(AssertionError, match="accepted keys"):
        assert_exactly_once(sim.journal.read(), ops(sim), [c["id"]])


async def test_a_key_refused_by_a_409_may_be_replaced(sim: SimApp) -> None:
    c = await seeded(sim)
    assert (await delete(sim, c["id"], "stale", "k-1")).status_code == 409
    assert (await delete(sim, c["id"], c["etag"], "k-2")).status_code == 202
    records = assert_exactly_once(sim.journal.read(), ops(sim), [c["id"]])
    assert records[c["id"]].keys == ["k-1", "k-2"]
    assert records[c["id"]].accepted_keys == ["k-2"]


async def test_a_key_given_up_after_an_unknown_outcome_is_caught(sim: SimApp) -> None:
    c = await seeded(sim)
    sim.state.faults = sim.state.faults.model_copy(update={"error_rate_503": 1.0, "count": 1})
    assert (await delete(sim, c["id"], c["etag"], "k-1")).status_code == 503
    assert (await delete(sim, c["id"], c["etag"], "k-2")).status_code == 202
    with pytest.raises(AssertionError, match="given up without a refusal"):
        assert_exactly_once(sim.journal.read(), ops(sim), [c["id"]])


async def test_no_delete_at_all_is_not_exactly_once(sim: SimApp) -> None:
    c = await seeded(sim)
    with pytest.raises(AssertionError, match="0 operations started"):
        assert_exactly_once(sim.journal.read(), ops(sim), [c["id"]])


async def test_other_clusters_and_methods_are_not_counted(sim: SimApp) -> None:
    a, b = await seeded(sim), await seeded(sim)
    await delete(sim, a["id"], a["etag"], "k-a")
    await call(sim, "GET", f"/v1/clusters/{b['id']}")
    records = delete_records(sim.journal.read(), ops(sim), [a["id"], b["id"]])
    assert len(records[a["id"]].requests) == 1
    assert records[b["id"]].requests == []
    assert records[b["id"]].operations == []


def test_in_flight_uses_the_arrival_and_the_injected_latency() -> None:
    journal = [
        {"method": "DELETE", "time": 100.0, "latency_ms": 3000.0, "status": 202},
        {"method": "DELETE", "time": 110.0, "latency_ms": 0.0, "status": 202},
        {"method": "DELETE", "time": 99.0, "latency_ms": 5000.0, "status": None},  # dropped
        {"method": "GET", "time": 100.0, "latency_ms": 3000.0, "status": 200},
    ]
    assert [e["time"] for e in in_flight_at(journal, 102.0)] == [100.0]
    assert in_flight_at(journal, 103.5) == []
    assert in_flight_at(journal, 110.0) == []
