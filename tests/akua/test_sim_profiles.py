"""Named profiles of the simulator and the switches the contract-only profile flips.

Every /v1 response is validated against openapi.json by the transport (akua_testkit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from akua_testkit import BASE, TOKEN, ContractCheckingTransport

from akua_operator.sim import FakeClock, SimConfig, SimTransport, create_app
from akua_operator.sim.config import CONTRACT_PROFILE, PROFILES

CREATE = {"name": "prod", "region_id": "reg_eu1"}


class World:
    """A simulator of one configuration with a raw API client and an admin client."""

    def __init__(self, config: SimConfig, clock: FakeClock) -> None:
        self.clock = clock
        self.sim = create_app(config, clock=clock)
        self.api = httpx.AsyncClient(
            transport=ContractCheckingTransport(self.sim),
            base_url=f"{BASE}/v1",
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        self.admin = httpx.AsyncClient(transport=SimTransport(self.sim), base_url=f"{BASE}/_sim")

    async def seed(self) -> dict[str, Any]:
        r = await self.admin.post("/clusters", json={"name": "seeded"})
        assert r.status_code == 201
        return dict(r.json())

    async def delete(self, cluster: dict[str, Any], key: str, etag: str | None = None) -> Any:
        return await self.api.delete(
            f"/clusters/{cluster['id']}",
            headers={"if-match": etag or cluster["etag"], "idempotency-key": key},
        )

    async def aclose(self) -> None:
        await self.api.aclose()
        await self.admin.aclose()


@pytest.fixture
async def world(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[World]:
    name, overrides = getattr(request, "param", ("default", {}))
    w = World(SimConfig.from_profile(name, tokens=[TOKEN], step_seconds=2.0, **overrides), clock)
    yield w
    await w.aclose()


def contract(**overrides: Any) -> Any:
    return pytest.mark.parametrize("world", [("contract", overrides)], indirect=True)


def switch(name: str, value: Any = None) -> Any:
    overrides = {name: CONTRACT_PROFILE[name] if value is None else value}
    return pytest.mark.parametrize("world", [("default", overrides)], indirect=True)


# --- the profiles themselves -------------------------------------------------------------------


def test_the_contract_profile_flips_each_kind_decision_and_keeps_one_operation_per_cluster() -> (
    None
):
    config = SimConfig.from_profile("contract")
    default = SimConfig()
    for name, value in CONTRACT_PROFILE.items():
        assert getattr(config, name) == value != getattr(default, name), name
    assert config.one_operation_per_cluster is True
    assert {
        "conflict_includes_etag",
        "delete_while_deleting_returns_operation",
        "wait_includes_steps",
        "idempotency_mismatch_status",
        "etag_on_server_changes",
        "create_owner_is_cluster",
        "stale_read_seconds",
        "idempotency_replay_before_checks",
        "idempotency_ttl_seconds",
    } == set(CONTRACT_PROFILE)


def test_each_switch_alone_has_its_own_profile() -> None:
    default = SimConfig().model_dump()
    for name, value in CONTRACT_PROFILE.items():
        config = SimConfig.from_profile(f"contract-only:{name}").model_dump()
        assert {k for k in config if config[k] != default[k]} == {name}
        assert config[name] == value


def test_from_profile_copies_and_applies_overrides() -> None:
    config = SimConfig.from_profile("contract", step_seconds=0.5)
    assert config.step_seconds == 0.5 and config.conflict_includes_etag is False
    config.stale_read_seconds = 9.0
    assert PROFILES["contract"].stale_read_seconds == 2.0
    with pytest.raises(ValueError, match="unknown simulator profile"):
        SimConfig.from_profile("lenient")


# --- a second DELETE while one runs ------------------------------------------------------------


async def test_default_a_second_delete_while_one_runs_gets_the_running_operation(
    world: World,
) -> None:
    cluster = await world.seed()
    first = (await world.delete(cluster, "d1")).json()
    second = await world.delete(cluster, "d2", etag="stale")
    assert second.status_code == 202 and second.json()["id"] == first["id"]


@switch("delete_while_deleting_returns_operation")
async def test_strict_a_second_delete_while_one_runs_is_409_naming_it(world: World) -> None:
    cluster = await world.seed()
    first = (await world.delete(cluster, "d1")).json()
    current = (await world.api.get(f"/clusters/{cluster['id']}")).json()
    second = await world.delete(cluster, "d2", etag=current["etag"])
    assert second.status_code == 409
    assert second.json()["errors"][0]["metadata"]["active_operation_id"] == first["id"]
    accepted = [e for e in world.sim.journal.read() if e["method"] == "DELETE"]
    assert [e["status"] for e in accepted] == [202, 409]


# --- idempotency replays after if-match and state checks ---------------------------------------


@switch("idempotency_replay_before_checks")
async def test_replays_after_checks_a_resent_delete_is_404_after_success(world: World) -> None:
    cluster = await world.seed()
    first = await world.delete(cluster, "d1")
    assert first.status_code == 202
    world.clock.advance(60)
    after = await world.delete(cluster, "d1")
    assert after.status_code == 404


@contract()
async def test_contract_a_resent_delete_while_it_runs_is_409_naming_its_operation(
    world: World,
) -> None:
    cluster = await world.seed()
    first = await world.delete(cluster, "d1")
    assert first.status_code == 202
    # the same request again (a lost answer): an operation runs, and the etag changed
    again = await world.delete(cluster, "d1")
    assert again.status_code == 409
    assert again.json()["errors"][0]["metadata"]["active_operation_id"] == first.json()["id"]
    world.clock.advance(60)
    assert (await world.delete(cluster, "d1")).status_code == 404
    ops = (await world.api.get("/operations")).json()["data"]
    assert [o["id"] for o in ops] == [first.json()["id"]]  # never a second operation


async def test_default_replays_before_checks(world: World) -> None:
    cluster = await world.seed()
    first = await world.delete(cluster, "d1")
    world.clock.advance(60)
    after = await world.delete(cluster, "d1")
    assert after.status_code == 202 and after.json()["id"] == first.json()["id"]


@switch("idempotency_replay_before_checks")
async def test_replays_after_checks_still_replay_when_the_checks_pass(world: World) -> None:
    r1 = await world.api.post("/clusters", json=CREATE, headers={"idempotency-key": "c1"})
    r2 = await world.api.post("/clusters", json=CREATE, headers={"idempotency-key": "c1"})
    assert r1.status_code == r2.status_code == 202 and r1.json()["id"] == r2.json()["id"]
    # a key reused for another request: the check error comes first, then the mismatch
    cluster = await world.seed()
    stale = await world.delete(cluster, "c1", etag="stale")
    assert stale.status_code == 409
    mismatch = await world.delete(cluster, "c1")
    assert mismatch.status_code == 422
    assert mismatch.json()["errors"][0]["path"] == ["header", "idempotency-key"]


# --- keys that expire ---------------------------------------------------------------------------


@switch("idempotency_ttl_seconds")
async def test_keys_expire_after_the_ttl(world: World) -> None:
    first = await world.api.post("/clusters", json=CREATE, headers={"idempotency-key": "c1"})
    world.clock.advance(599)
    replay = await world.api.post("/clusters", json=CREATE, headers={"idempotency-key": "c1"})
    assert replay.json()["id"] == first.json()["id"]
    world.clock.advance(1)
    fresh = await world.api.post("/clusters", json=CREATE, headers={"idempotency-key": "c1"})
    assert fresh.status_code == 202 and fresh.json()["id"] != first.json()["id"]
    assert len((await world.api.get("/clusters")).json()["data"]) == 2


async def test_default_keys_never_expire(world: World) -> None:
    first = await world.api.post("/clusters", json=CREATE, headers={"idempotency-key": "c1"})
    world.clock.advance(10 * 86400)
    replay = await world.api.post("/clusters", json=CREATE, headers={"idempotency-key": "c1"})
    assert replay.json()["id"] == first.json()["id"]


# --- the contract profile as a whole -------------------------------------------------------------


@contract()
async def test_the_contract_profile_is_strict_where_the_contract_is_silent(world: World) -> None:
    cluster = await world.seed()
    # 409 without the current etag
    r = await world.delete(cluster, "d0", etag="stale")
    assert r.status_code == 409 and "metadata" not in r.json()["errors"][0]
    # a create operation owned by the cluster
    op = (await world.api.post("/clusters", json=CREATE, headers={"idempotency-key": "c"})).json()
    assert op["owner_type"] == "cluster"
    # idempotency mismatch: 409
    other = await world.api.post(
        "/clusters", json={**CREATE, "name": "other"}, headers={"idempotency-key": "c"}
    )
    assert other.status_code == 409
    # :wait without steps
    done = await world.api.post(f"/operations/{op['id']}:wait", params={"timeout": 60})
    assert done.json()["done"] is True and "steps" not in done.json()
    # stale reads: the cluster lags the write that started the delete
    started = await world.delete(cluster, "d1")
    assert started.status_code == 202
    lagging = (await world.api.get(f"/clusters/{cluster['id']}")).json()
    assert lagging["etag"] == cluster["etag"] and lagging["state"] == "active"


@contract(deleted_cluster_404=False)
async def test_contract_etags_change_only_on_client_writes(world: World) -> None:
    cluster = await world.seed()
    r = await world.api.post(
        f"/clusters/{cluster['id']}:suspend",
        headers={"if-match": cluster["etag"], "idempotency-key": "s"},
    )
    assert r.status_code == 202
    world.clock.advance(3)  # past the stale-read window, the operation still runs
    during = (await world.api.get(f"/clusters/{cluster['id']}")).json()
    world.clock.advance(60)
    after = (await world.api.get(f"/clusters/{cluster['id']}")).json()
    assert after["state"] == "suspended" and after["reconciling"] is False
    assert after["etag"] == during["etag"] != cluster["etag"]


# --- the exactly-once oracle ---------------------------------------------------------------------


@contract()
async def test_the_oracle_counts_operations_accepted_deletes_and_keys_per_cluster(
    world: World,
) -> None:
    cluster = await world.seed()
    other = await world.seed()
    assert (await world.delete(cluster, "d1")).status_code == 202
    assert (await world.delete(cluster, "d1")).status_code == 409  # the same request, resent
    assert (await world.delete(cluster, "d2")).status_code == 409  # a second DELETE: an error
    world.clock.advance(60)
    assert (await world.delete(cluster, "d1")).status_code == 404
    r = await world.admin.get("/oracle")
    assert r.status_code == 200
    got = r.json()["clusters"]
    assert [op["state"] for op in got[cluster["id"]]["operations"]["cluster.delete"]] == [
        "SUCCEEDED"
    ]
    assert got[cluster["id"]]["writes"] == {
        "cluster.delete": {"answered": 4, "accepted": 1, "keys": ["d1", "d2"]}
    }
    assert other["id"] not in got
    await world.admin.post("/reset")
    assert (await world.admin.get("/oracle")).json() == {"clusters": {}}
