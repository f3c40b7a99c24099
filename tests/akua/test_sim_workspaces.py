"""The simulator serves several workspaces: each token belongs to its own, and what a workspace
holds (clusters, operations, idempotency keys) is visible only to it.

Every /v1 response is validated against openapi.json by the transport (akua_testkit).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from akua_testkit import BASE, TOKEN, ContractCheckingTransport, Sleeps, make_client
from pydantic import SecretStr

from akua_operator.akua import AkuaForbidden, AkuaNotFound, Credentials
from akua_operator.sim import FakeClock, SimApp, SimConfig, SimTransport, create_app
from akua_operator.sim.cli import build_parser, config_from_args

TOKEN_B = "sk_akua_test_token_of_workspace_b"
TOKEN_BC = "sk_akua_test_token_of_b_and_c"
WS_A = "ws_sim0000000000000"  # the default workspace (of TOKEN)
WS_B = "ws_bbbbbbbbbbbbbbbb"
WS_C = "ws_cccccccccccccccc"
CREATE = {"name": "prod", "region_id": "reg_eu1"}


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(
        tokens=[TOKEN],
        workspace_tokens={TOKEN_B: WS_B, TOKEN_BC: [WS_B, WS_C]},
        step_seconds=2.0,
        seed=7,
    )


def _api(transport: ContractCheckingTransport, token: str, context: str | None = None) -> Any:
    headers = {"authorization": f"Bearer {token}"}
    if context is not None:
        headers["akua-context"] = context
    return httpx.AsyncClient(transport=transport, base_url=f"{BASE}/v1", headers=headers)


@pytest.fixture
async def a(transport: ContractCheckingTransport) -> AsyncIterator[httpx.AsyncClient]:
    async with _api(transport, TOKEN) as c:
        yield c


@pytest.fixture
async def b(transport: ContractCheckingTransport) -> AsyncIterator[httpx.AsyncClient]:
    async with _api(transport, TOKEN_B) as c:
        yield c


def _code(r: httpx.Response) -> tuple[int, int]:
    return r.status_code, int(r.json()["errors"][0]["code"])


async def _create(api: httpx.AsyncClient, key: str = "k1") -> dict[str, Any]:
    r = await api.post("/clusters", json=CREATE, headers={"idempotency-key": key})
    assert r.status_code == 202, r.text
    return dict(r.json())


async def test_clusters_and_operations_carry_their_workspace_and_stay_in_it(
    a: httpx.AsyncClient, b: httpx.AsyncClient, clock: FakeClock
) -> None:
    op = await _create(b)
    assert op["workspace_id"] == WS_B and op["metadata"]["workspace_id"] == WS_B
    clock.advance(60)
    op = (await b.get(f"/operations/{op['id']}")).json()
    cid = op["response"]["cluster_id"]
    cluster = (await b.get(f"/clusters/{cid}")).json()
    assert cluster["workspace_id"] == WS_B
    # invisible to another workspace's token: 404, never listed
    assert (await a.get(f"/clusters/{cid}")).status_code == 404
    assert (await a.get(f"/operations/{op['id']}")).status_code == 404
    assert (await a.post(f"/operations/{op['id']}:wait?timeout=1")).status_code == 404
    assert (await a.post(f"/operations/{op['id']}:cancel")).status_code == 404
    r = await a.delete(f"/clusters/{cid}", headers={"if-match": cluster["etag"]})
    assert r.status_code == 404
    assert (await a.get("/clusters")).json()["data"] == []
    assert (await a.get("/operations")).json()["data"] == []
    assert [c["id"] for c in (await b.get("/clusters")).json()["data"]] == [cid]
    listed = await b.get("/operations", params={"owner_type": "workspace", "owner_id": WS_B})
    assert [o["id"] for o in listed.json()["data"]] == [op["id"]]


async def test_akua_context_selects_a_workspace_of_the_token_and_is_403_for_another(
    transport: ContractCheckingTransport, admin: httpx.AsyncClient
) -> None:
    r = await admin.post("/clusters", json={"name": "in-c", "workspace_id": WS_C})
    assert r.status_code == 201 and r.json()["workspace_id"] == WS_C
    in_c = r.json()["id"]
    # a token of A naming B: 403 in the contract's envelope (code 7), not 404
    async with _api(transport, TOKEN, context=WS_B) as a_as_b:
        assert _code(await a_as_b.get(f"/clusters/{in_c}")) == (403, 7)
        assert _code(await a_as_b.get("/clusters")) == (403, 7)
    # a token of A naming A: as without a context
    async with _api(transport, TOKEN, context=WS_A) as a_as_a:
        assert (await a_as_a.get("/clusters")).status_code == 200
    # a token of B and C: without a context B (its first), naming C selects C
    async with _api(transport, TOKEN_BC) as bc:
        assert (await bc.get(f"/clusters/{in_c}")).status_code == 404
    async with _api(transport, TOKEN_BC, context=WS_C) as bc_as_c:
        assert (await bc_as_c.get(f"/clusters/{in_c}")).json()["name"] == "in-c"
    # B's own token cannot reach C
    async with _api(transport, TOKEN_B, context=WS_C) as b_as_c:
        assert _code(await b_as_c.get(f"/clusters/{in_c}")) == (403, 7)


async def test_get_workspaces_lists_the_tokens_workspaces(
    transport: ContractCheckingTransport,
) -> None:
    async def ids(token: str, context: str | None = None, **params: Any) -> Any:
        async with _api(transport, token, context) as c:
            r = await c.get("/workspaces", params=params)
            assert r.status_code == 200, r.text
            return r.json()

    assert [w["id"] for w in (await ids(TOKEN))["data"]] == [WS_A]
    assert [w["id"] for w in (await ids(TOKEN_BC))["data"]] == [WS_B, WS_C]
    # a workspace-scoped request sees only that workspace
    assert [w["id"] for w in (await ids(TOKEN_BC, WS_C))["data"]] == [WS_C]
    page = await ids(TOKEN_BC, limit=1)
    assert [w["id"] for w in page["data"]] == [WS_B] and page["has_more"] is True
    rest = await ids(TOKEN_BC, limit=1, cursor=page["next_cursor"])
    assert [w["id"] for w in rest["data"]] == [WS_C] and rest["next_cursor"] is None


async def test_idempotency_keys_are_deduplicated_per_workspace(
    a: httpx.AsyncClient, b: httpx.AsyncClient
) -> None:
    first_a = await _create(a, key="same-key")
    first_b = await _create(b, key="same-key")
    assert first_a["id"] != first_b["id"]
    assert (await _create(a, key="same-key"))["id"] == first_a["id"]
    assert (await _create(b, key="same-key"))["id"] == first_b["id"]
    assert len((await a.get("/clusters")).json()["data"]) == 1
    assert len((await b.get("/clusters")).json()["data"]) == 1


async def test_the_journal_and_admin_state_name_the_workspace(
    a: httpx.AsyncClient, b: httpx.AsyncClient, sim: SimApp, admin: httpx.AsyncClient
) -> None:
    await a.get("/clusters")
    await b.get("/clusters")
    async with _api(ContractCheckingTransport(sim), TOKEN, WS_B) as a_as_b:
        await a_as_b.get("/clusters")
    assert [(e["workspace_id"], e["status"]) for e in sim.journal.read()] == [
        (WS_A, 200),
        (WS_B, 200),
        (None, 403),
    ]
    await _create(b)
    state = (await admin.get("/state")).json()
    assert {c["workspace_id"] for c in state["clusters"]} == {WS_B}
    assert {o["workspace_id"] for o in state["operations"]} == {WS_B}
    listed = (await admin.get("/workspaces")).json()
    assert listed == {"data": [WS_A, WS_B, WS_C], "default": WS_A}
    config = (await admin.get("/config")).json()
    assert "workspace_tokens" not in config and TOKEN_B not in str(config)


async def test_the_client_sends_the_context_and_lists_workspaces(
    transport: ContractCheckingTransport, sleeps: Sleeps, sim: SimApp
) -> None:
    seeded = sim.state.seed_cluster(name="in-c", workspace_id=WS_C)
    async with make_client(transport, sleeps) as client:
        in_c = Credentials(SecretStr(TOKEN_BC), context=WS_C)
        listed = await client.list_workspaces(creds=in_c)
        assert [w.id for w in listed.data] == [WS_C]
        assert (await client.get_cluster(seeded["id"], creds=in_c)).workspace_id == WS_C
        with pytest.raises(AkuaNotFound):
            await client.get_cluster(seeded["id"], creds=Credentials(SecretStr(TOKEN_BC)))
        with pytest.raises(AkuaForbidden):
            await client.get_cluster(seeded["id"], creds=Credentials(SecretStr(TOKEN), WS_C))
    assert [e["akua_context"] for e in sim.journal.read()] == [WS_C, WS_C, None, WS_C]


def test_single_token_default_is_unchanged() -> None:
    config = SimConfig()
    assert config.workspaces_of("sk_akua_test") == ([config.workspace_id], True)
    assert config.workspaces_of("unknown") is None


def test_a_token_cannot_belong_to_the_default_and_a_mapped_workspace() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        SimConfig(tokens=[TOKEN], workspace_tokens={TOKEN: WS_B})


def test_cli_workspace_tokens_and_profile() -> None:
    args = build_parser().parse_args(
        [
            "--token",
            TOKEN,
            "--workspace-token",
            f"{TOKEN_B}={WS_B}",
            "--workspace-token",
            f"{TOKEN_BC}={WS_B},{WS_C}",
            "--profile",
            "contract",
            "--validate-responses",
        ]
    )
    config = config_from_args(args)
    assert config.workspaces_of(TOKEN_BC) == ([WS_B, WS_C], True)
    assert config.workspaces_of(TOKEN_B) == ([WS_B], True)
    assert config.workspaces_of(TOKEN) == ([config.workspace_id], True)
    assert config.delete_while_deleting_returns_operation is False
    assert config.validate_responses is True
    with pytest.raises(SystemExit):
        config_from_args(build_parser().parse_args(["--workspace-token", "no-equals-sign"]))


async def test_admin_rejects_a_bad_workspace_id(clock: FakeClock) -> None:
    sim = create_app(SimConfig(), clock=clock)
    async with httpx.AsyncClient(transport=SimTransport(sim), base_url=f"{BASE}/_sim") as admin:
        r = await admin.post("/clusters", json={"name": "x", "workspace_id": "w" * 54})
    assert r.status_code == 422


async def test_a_forgotten_operation_is_404_everywhere_yet_runs_on_and_its_key_replays_it(
    a: httpx.AsyncClient, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    op = await _create(a, key="create-1")
    r = await admin.post(f"/operations/{op['id']}:forget", json={})
    assert r.status_code == 200 and r.json()["keys_forgotten"] == 0
    assert (await a.get(f"/operations/{op['id']}")).status_code == 404
    assert (await a.post(f"/operations/{op['id']}:wait?timeout=1")).status_code == 404
    assert (await a.post(f"/operations/{op['id']}:cancel")).status_code == 404
    assert (await a.get("/operations")).json()["data"] == []
    # it runs on: the cluster is made
    clock.advance(60)
    (cluster,) = (await a.get("/clusters")).json()["data"]
    assert cluster["state"] == "active"
    # the key store is separate: the same create replays the (forgotten) operation
    replay = await _create(a, key="create-1")
    assert replay["id"] == op["id"]
    assert replay["response"]["cluster_id"] == cluster["id"]
    assert len((await a.get("/clusters")).json()["data"]) == 1


async def test_forgetting_an_operation_with_its_key_makes_the_same_create_start_anew(
    a: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    op = await _create(a, key="create-1")
    r = await admin.post(f"/operations/{op['id']}:forget", json={"forget_key": True})
    assert r.status_code == 200 and r.json()["keys_forgotten"] == 1
    again = await _create(a, key="create-1")
    assert again["id"] != op["id"]
    assert len((await a.get("/clusters")).json()["data"]) == 2
    bad = await admin.post(f"/operations/{op['id']}:forget", json={"forget_key": "yes"})
    assert bad.status_code == 422
    assert (await admin.post("/operations/op_nope:forget", json={})).status_code == 404
