"""``answer_delay_ms``: the simulator has done and journaled a request but not answered it yet,
the window a chaos test kills the operator in (after the DELETE happened, before it is known)."""

from __future__ import annotations

import asyncio

import httpx
from akua_testkit import BASE, TOKEN

from akua_operator.sim import FakeClock, SimConfig, SimTransport, create_app


async def test_the_write_is_journaled_before_the_delayed_answer() -> None:
    sim = create_app(SimConfig(tokens=[TOKEN]), clock=FakeClock())
    cluster = sim.state.seed_cluster(name="c")
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        transport=SimTransport(sim), base_url=f"{BASE}/v1", headers=headers
    ) as api:
        sim.state.faults = sim.state.faults.model_copy(
            update={"answer_delay_ms": 3_600_000, "methods": ["DELETE"]}
        )
        pending = asyncio.create_task(
            api.delete(
                f"/clusters/{cluster['id']}",
                headers={"if-match": cluster["etag"], "idempotency-key": "d"},
            )
        )
        for _ in range(3000):  # until the simulator has journaled the DELETE
            if sim.journal.read():
                break
            await asyncio.sleep(0.01)
        (entry,) = sim.journal.read()
        assert (entry["method"], entry["status"], entry["answer_delay_ms"]) == (
            "DELETE",
            202,
            3_600_000,
        )
        assert not pending.done()
        pending.cancel()  # the client is killed: it never learns the answer
        # the delete happened all the same, and other calls are not delayed
        r = await api.get(f"/clusters/{cluster['id']}")
        assert r.status_code == 200 and r.json()["state"] == "deleting"
        ops = (await api.get("/operations")).json()["data"]
        assert [o["metadata"]["type"] for o in ops] == ["cluster.delete"]
