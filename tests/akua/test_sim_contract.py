"""Every endpoint of the guide's table answers with contract-valid bodies, and random sequences
of calls keep the simulator's invariants (each response is validated by the transport)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from akua_testkit import BASE, TOKEN, ContractCheckingTransport
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from akua_operator.sim import FakeClock, SimConfig, create_app

GUIDE_ENDPOINTS = {
    ("GET", "/clusters"),
    ("POST", "/clusters"),
    ("POST", "/clusters:import"),
    ("GET", "/clusters/{id}"),
    ("PATCH", "/clusters/{id}"),
    ("DELETE", "/clusters/{id}"),
    ("POST", "/clusters/{id}:suspend"),
    ("POST", "/clusters/{id}:resume"),
    ("GET", "/operations"),
    ("GET", "/operations/{id}"),
    ("POST", "/operations/{id}:wait"),
    ("POST", "/operations/{id}:cancel"),
}


async def test_a_tour_of_every_endpoint_is_contract_valid(
    api: httpx.AsyncClient, transport: ContractCheckingTransport, clock: FakeClock
) -> None:
    created = (
        await api.post(
            "/clusters", json={"name": "tour", "region_id": "r"}, headers={"idempotency-key": "t"}
        )
    ).json()
    await api.post(f"/operations/{created['id']}:wait")
    cid = (await api.get(f"/operations/{created['id']}")).json()["response"]["cluster_id"]
    etag = (await api.get(f"/clusters/{cid}")).json()["etag"]
    etag = (
        await api.patch(f"/clusters/{cid}", json={"name": "t2"}, headers={"if-match": etag})
    ).json()["etag"]
    await api.patch(f"/clusters/{cid}", json={"name": "t3"}, headers={"if-match": "stale"})
    op = (await api.post(f"/clusters/{cid}:suspend", headers={"if-match": etag})).json()
    await api.post(f"/operations/{op['id']}:wait")
    etag = (await api.get(f"/clusters/{cid}")).json()["etag"]
    op = (await api.post(f"/clusters/{cid}:resume", headers={"if-match": etag})).json()
    await api.post(f"/operations/{op['id']}:cancel")
    await api.post(f"/operations/{op['id']}:wait")
    await api.post(f"/operations/{op['id']}:cancel")
    await api.post("/clusters:import", json={"name": "i", "region_id": "r", "kubeconfig": "k"})
    await api.get("/clusters", params={"limit": 1})
    await api.get("/operations", params={"owner_type": "cluster", "owner_id": cid})
    etag = (await api.get(f"/clusters/{cid}")).json()["etag"]
    op = (await api.delete(f"/clusters/{cid}", headers={"if-match": etag})).json()
    await api.post(f"/operations/{op['id']}:wait")
    await api.get(f"/clusters/{cid}")
    checked = {(m, t) for m, t, _ in transport.checked}
    assert checked >= GUIDE_ENDPOINTS
    statuses = {s for _, _, s in transport.checked}
    assert statuses >= {200, 202, 404, 409, 422}


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(0, 3)),
        st.tuples(st.just("delete"), st.integers(0, 3)),
        st.tuples(st.just("suspend"), st.integers(0, 3)),
        st.tuples(st.just("resume"), st.integers(0, 3)),
        st.tuples(st.just("cancel"), st.integers(0, 3)),
        st.tuples(st.just("advance"), st.integers(0, 5)),
        st.tuples(st.just("fault"), st.integers(0, 3)),
    ),
    max_size=25,
)


async def _run(actions: list[tuple[str, int]]) -> None:
    clock = FakeClock()
    sim = create_app(SimConfig(tokens=[TOKEN], step_seconds=1.0, seed=3), clock=clock)
    for i in range(2):
        sim.state.seed_cluster(name=f"s{i}")
    done_ops: dict[str, dict[str, Any]] = {}
    deleted: set[str] = set()
    async with httpx.AsyncClient(
        transport=ContractCheckingTransport(sim),
        base_url=f"{BASE}/v1",
        headers={"authorization": f"Bearer {TOKEN}"},
    ) as api:

        async def clusters() -> list[dict[str, Any]]:
            r = await api.get("/clusters", params={"limit": 100})
            return list(r.json()["data"]) if r.status_code == 200 else []

        for n, (action, arg) in enumerate(actions):
            known = await clusters()
            target = known[arg % len(known)] if known else None
            if action == "create":
                await api.post(
                    "/clusters",
                    json={"name": f"c{n}", "region_id": "r"},
                    headers={"idempotency-key": f"k{arg}"},
                )
            elif action in ("delete", "suspend", "resume") and target is not None:
                headers = {"if-match": target["etag"], "idempotency-key": f"{action}{n}"}
                if action == "delete":
                    await api.delete(f"/clusters/{target['id']}", headers=headers)
                else:
                    await api.post(f"/clusters/{target['id']}:{action}", headers=headers)
            elif action == "cancel":
                ops = (await api.get("/operations")).json()
                if ops.get("data"):
                    await api.post(
                        f"/operations/{ops['data'][arg % len(ops['data'])]['id']}:cancel"
                    )
            elif action == "advance":
                clock.advance(arg * 0.7)
            elif action == "fault":
                sim.state.faults = sim.state.faults.model_copy(
                    update={"error_rate_503": 0.3 if arg else 0.0}
                )

            # invariants, read without faults
            saved = sim.state.faults
            sim.state.faults = saved.model_copy(update={"error_rate_503": 0.0})
            ops = (await api.get("/operations", params={"limit": 100})).json()["data"]
            running: dict[str, int] = {}
            for op in ops:
                full = (await api.get(f"/operations/{op['id']}")).json()
                assert full["done"] == (full["state"] != "RUNNING")
                if full["done"]:
                    if op["id"] in done_ops:
                        assert full == done_ops[op["id"]], "a done operation changed"
                    done_ops[op["id"]] = full
                else:
                    owner = sim.state.ops[op["id"]].cluster_id  # creates hide it until done
                    running[owner] = running.get(owner, 0) + 1
                if full["metadata"]["type"] == "cluster.delete" and full["state"] == "SUCCEEDED":
                    deleted.add(full["metadata"]["cluster_id"])
            assert all(count == 1 for count in running.values()), running
            for cid in deleted:
                assert (await api.get(f"/clusters/{cid}")).status_code == 404
            for c in await clusters():
                assert c["reconciling"] == (sim.state.clusters[c["id"]].active_op is not None)
            sim.state.faults = saved


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ACTIONS)
def test_random_call_sequences_keep_the_invariants(actions: list[tuple[str, int]]) -> None:
    asyncio.run(_run(actions))
