"""The Akua client against the in-process simulator (and a few hand-made bad servers).

Time is virtual: the client's sleep advances the simulator's fake clock, so retries, backoff and
the rate limit are observed as behaviour (what was sent, what was waited), never by timing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from akua_testkit import BASE, TOKEN, ContractCheckingTransport, Sleeps, make_client
from pydantic import SecretStr

from akua_operator.akua import (
    AkuaBadRequest,
    AkuaClient,
    AkuaConflict,
    AkuaNotFound,
    AkuaRateLimited,
    AkuaResponseError,
    AkuaServerError,
    AkuaTransportError,
    AkuaUnauthorized,
    AkuaUnprocessable,
    Credentials,
)
from akua_operator.akua.errors import MAX_BODY_CHARS, AkuaError
from akua_operator.akua.models import (
    ClusterState,
    CreateClusterRequest,
    ImportClusterRequest,
    OperationState,
    StepStatus,
    UpdateClusterRequest,
)
from akua_operator.sim import SimApp

CREATE = CreateClusterRequest(name="prod", region_id="reg_eu1")


def journal(sim: SimApp, method: str | None = None) -> list[dict[str, Any]]:
    return [e for e in sim.journal.read() if method is None or e["method"] == method]


async def faults(sim: SimApp, **settings: Any) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(sim), base_url=BASE) as admin:
        r = await admin.post("/_sim/faults", json=settings)
        assert r.status_code == 200, r.text


# --- the happy path -----------------------------------------------------------------------


async def test_full_lifecycle(client: AkuaClient, creds: Credentials) -> None:
    op = await client.create_cluster(CREATE, creds=creds, idempotency_key="create-1")
    assert op.type == "cluster.create" and op.state == OperationState.RUNNING
    assert op.created_cluster_id is None
    op = await client.wait_operation(op.id, creds=creds, timeout=60)
    assert op.done and op.state == OperationState.SUCCEEDED
    assert all(s.status == StepStatus.COMPLETED for s in op.steps)
    cluster_id = op.created_cluster_id
    assert cluster_id is not None

    cluster = await client.get_cluster(cluster_id, creds=creds)
    assert cluster.state == ClusterState.ACTIVE and cluster.name == "prod"

    renamed = await client.update_cluster(
        cluster_id, UpdateClusterRequest(name="prod-2"), creds=creds, if_match=cluster.etag
    )
    assert renamed.name == "prod-2" and renamed.etag != cluster.etag

    op = await client.suspend_cluster(
        cluster_id, creds=creds, if_match=renamed.etag, idempotency_key="s-1"
    )
    assert (await client.wait_operation(op.id, creds=creds)).state == OperationState.SUCCEEDED
    cluster = await client.get_cluster(cluster_id, creds=creds)
    assert cluster.state == ClusterState.SUSPENDED

    op = await client.resume_cluster(
        cluster_id, creds=creds, if_match=cluster.etag, idempotency_key="r-1"
    )
    assert (await client.wait_operation(op.id, creds=creds)).state == OperationState.SUCCEEDED
    cluster = await client.get_cluster(cluster_id, creds=creds)

    op = await client.delete_cluster(
        cluster_id, creds=creds, if_match=cluster.etag, idempotency_key="d-1"
    )
    assert op.type == "cluster.delete" and op.cluster_id == cluster_id
    deleting = await client.get_cluster(cluster_id, creds=creds)
    assert deleting.state == ClusterState.DELETING and deleting.reconciling
    done = await client.wait_operation(op.id, creds=creds)
    assert done.state == OperationState.SUCCEEDED
    with pytest.raises(AkuaNotFound):
        await client.get_cluster(cluster_id, creds=creds)

    ops = await client.list_operations(creds=creds, owner_type="cluster", owner_id=cluster_id)
    assert [o.type for o in ops.data] == ["cluster.delete", "cluster.resume", "cluster.suspend"]
    fetched = await client.get_operation(op.id, creds=creds)
    assert fetched.id == op.id and len(fetched.steps) == 4


async def test_import_and_list_with_pagination(client: AkuaClient, creds: Credentials) -> None:
    ids = []
    for i in range(3):
        body = ImportClusterRequest(name=f"c{i}", region_id="r", kubeconfig=SecretStr("kc"))
        ids.append((await client.import_cluster(body, creds=creds, idempotency_key=f"i{i}")).id)
    page = await client.list_clusters(creds=creds, limit=2)
    assert page.has_more and page.next_cursor
    rest = await client.list_clusters(creds=creds, limit=2, cursor=page.next_cursor)
    assert [c.id for c in page.data + rest.data] == ids and not rest.has_more


async def test_cancel_operation(client: AkuaClient, creds: Credentials) -> None:
    op = await client.create_cluster(CREATE, creds=creds, idempotency_key="c")
    cancelled = await client.cancel_operation(op.id, creds=creds)
    assert cancelled.id == op.id
    final = await client.wait_operation(op.id, creds=creds)
    assert final.state == OperationState.CANCELLED and final.error is not None
    with pytest.raises(AkuaUnprocessable):
        await client.cancel_operation(op.id, creds=creds)


async def test_list_operations_needs_owner_type_and_id_together(
    client: AkuaClient, creds: Credentials
) -> None:
    with pytest.raises(ValueError, match="together"):
        await client.list_operations(creds=creds, owner_type="cluster")


# --- headers ---------------------------------------------------------------------------------


async def test_headers_exactly_where_the_contract_has_them(client: AkuaClient, sim: SimApp) -> None:
    creds = Credentials(SecretStr(TOKEN), context=sim.config.workspace_id)
    cluster = sim.state.seed_cluster(name="c")
    await client.get_cluster(cluster["id"], creds=creds)
    await client.delete_cluster(
        cluster["id"], creds=creds, if_match=cluster["etag"], idempotency_key="k"
    )
    get, delete = journal(sim)
    assert get["akua_context"] == sim.config.workspace_id
    assert get["if_match"] is None and get["idempotency_key"] is None
    assert delete["if_match"] == cluster["etag"] and delete["idempotency_key"] == "k"
    assert delete["path"] == f"/clusters/{cluster['id']}"


async def test_no_akua_context_without_one(
    client: AkuaClient, creds: Credentials, sim: SimApp
) -> None:
    await client.list_clusters(creds=creds)
    assert journal(sim)[0]["akua_context"] is None


async def test_colon_paths_reach_the_right_endpoint(
    client: AkuaClient, creds: Credentials, sim: SimApp
) -> None:
    cluster = sim.state.seed_cluster(name="c")
    op = await client.suspend_cluster(
        cluster["id"], creds=creds, if_match=cluster["etag"], idempotency_key="s"
    )
    await client.wait_operation(op.id, creds=creds, timeout=600)
    paths = [e["path"] for e in journal(sim)]
    assert paths == [f"/clusters/{cluster['id']}:suspend", f"/operations/{op.id}:wait"]
    assert journal(sim)[1]["query"] == "timeout=60"  # clamped to the contract's maximum


async def test_wait_read_timeout_exceeds_the_server_side_timeout(
    sleeps: Sleeps, creds: Credentials
) -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(request.extensions["timeout"])
        seen["query"] = request.url.query.decode()
        return httpx.Response(500)

    async with make_client(httpx.MockTransport(handler), sleeps, max_retries=0, timeout=5) as c:
        with pytest.raises(AkuaServerError):
            await c.wait_operation("op_1", creds=creds, timeout=45)
    assert seen["query"] == "timeout=45"
    assert seen["read"] > 45


# --- retries -----------------------------------------------------------------------------------


async def test_retries_5xx_honouring_retry_after(
    client: AkuaClient, creds: Credentials, sim: SimApp, sleeps: Sleeps
) -> None:
    cluster = sim.state.seed_cluster(name="c")
    await faults(sim, error_rate_503=1.0, retry_after_seconds=7, count=2)
    got = await client.get_cluster(cluster["id"], creds=creds)
    assert got.id == cluster["id"]
    assert [e["status"] for e in journal(sim)] == [503, 503, 200]
    assert len(sleeps.calls) == 2 and all(s >= 7 for s in sleeps.calls)
    assert client.stats.retries == {"GET /clusters/{id}": 2}
    assert client.stats.count("GET /clusters/{id}", "503") == 2
    assert client.stats.count("GET /clusters/{id}", "200") == 1


async def test_gives_up_after_max_retries_with_the_typed_error(
    client: AkuaClient, creds: Credentials, sim: SimApp
) -> None:
    await faults(sim, error_rate_429=1.0, retry_after_seconds=3)
    with pytest.raises(AkuaRateLimited) as info:
        await client.list_clusters(creds=creds)
    assert info.value.retry_after == 3
    assert info.value.status == 429
    assert len(journal(sim)) == 1 + 3  # first try + max_retries


async def test_backoff_is_capped_exponential_with_jitter(
    transport: ContractCheckingTransport, sleeps: Sleeps, creds: Credentials, sim: SimApp
) -> None:
    await faults(sim, drop_before_rate=1.0)
    async with make_client(
        transport, sleeps, max_retries=6, backoff_base=1.0, backoff_cap=4.0
    ) as c:
        with pytest.raises(AkuaTransportError) as info:
            await c.list_clusters(creds=creds)
    assert isinstance(info.value.__cause__, httpx.TransportError)
    assert len(sleeps.calls) == 6
    bounds = [1, 2, 4, 4, 4, 4]
    assert all(0 <= s <= b for s, b in zip(sleeps.calls, bounds, strict=True))
    assert len(set(sleeps.calls)) == 6  # jittered, not a fixed schedule
    assert len(journal(sim)) == 7


async def test_a_retry_after_beyond_the_cap_is_not_waited_for_in_the_call(
    sleeps: Sleeps, creds: Credentials
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(429, headers={"retry-after": "86400"})
        return httpx.Response(200, json={"data": [], "has_more": False, "next_cursor": None})

    async with make_client(httpx.MockTransport(handler), sleeps, retry_after_cap=30) as c:
        with pytest.raises(AkuaRateLimited) as info:
            await c.list_clusters(creds=creds)
    assert info.value.retry_after == 86400
    assert calls == 1 and sleeps.calls == []


async def test_idempotent_write_is_retried_and_the_work_is_done_once(
    client: AkuaClient, creds: Credentials, sim: SimApp
) -> None:
    await faults(sim, drop_rate=1.0, methods=["POST"], count=1)
    op = await client.create_cluster(CREATE, creds=creds, idempotency_key="once")
    posts = journal(sim, "POST")
    assert [e["fault"] for e in posts] == ["drop_after", None]
    assert {e["idempotency_key"] for e in posts} == {"once"}
    page = await client.list_clusters(creds=creds)
    assert len(page.data) == 1
    ops = await client.list_operations(creds=creds)
    assert [o.id for o in ops.data] == [op.id]


async def test_keyless_write_is_never_retried(
    client: AkuaClient, creds: Credentials, sim: SimApp
) -> None:
    cluster = sim.state.seed_cluster(name="c")
    await faults(sim, drop_rate=1.0, methods=["PATCH"])
    with pytest.raises(AkuaTransportError):
        await client.update_cluster(
            cluster["id"], UpdateClusterRequest(name="n"), creds=creds, if_match=cluster["etag"]
        )
    await faults(sim, error_rate_503=1.0, methods=["POST"])
    with pytest.raises(AkuaServerError):
        await client.cancel_operation("op_x", creds=creds)
    assert [e["method"] for e in journal(sim)] == ["PATCH", "POST"]
    assert client.stats.retries == {}


async def test_client_errors_are_not_retried(
    client: AkuaClient, creds: Credentials, sim: SimApp
) -> None:
    with pytest.raises(AkuaNotFound):
        await client.get_cluster("clu_missing", creds=creds)
    assert len(journal(sim)) == 1


# --- conflicts ---------------------------------------------------------------------------------


async def test_conflict_carries_the_current_etag(
    client: AkuaClient, creds: Credentials, sim: SimApp
) -> None:
    cluster = sim.state.seed_cluster(name="c")
    with pytest.raises(AkuaConflict) as info:
        await client.delete_cluster(
            cluster["id"], creds=creds, if_match="stale", idempotency_key="d"
        )
    assert info.value.etag == cluster["etag"] and info.value.active_operation_id is None
    assert info.value.code == 10
    op = await client.delete_cluster(
        cluster["id"], creds=creds, if_match=info.value.etag, idempotency_key="d"
    )
    assert op.type == "cluster.delete"


async def test_conflict_names_the_running_operation(
    client: AkuaClient, creds: Credentials, sim: SimApp
) -> None:
    cluster = sim.state.seed_cluster(name="c")
    op = await client.suspend_cluster(
        cluster["id"], creds=creds, if_match=cluster["etag"], idempotency_key="s"
    )
    current = await client.get_cluster(cluster["id"], creds=creds)
    with pytest.raises(AkuaConflict) as info:
        await client.update_cluster(
            cluster["id"], UpdateClusterRequest(name="x"), creds=creds, if_match=current.etag
        )
    assert info.value.active_operation_id == op.id


async def test_missing_etag_in_a_conflict_is_none(sleeps: Sleeps, creds: Credentials) -> None:
    body = {"success": False, "errors": [{"code": 10, "message": "ABORTED"}], "result": {}}
    transport = httpx.MockTransport(lambda r: httpx.Response(409, json=body))
    async with make_client(transport, sleeps) as c:
        with pytest.raises(AkuaConflict) as info:
            await c.suspend_cluster("clu_1", creds=creds, if_match="1", idempotency_key="k")
    assert info.value.etag is None and info.value.active_operation_id is None


# --- the shared rate limit ---------------------------------------------------------------------


async def test_rate_limit_is_shared_by_all_credentials(
    transport: ContractCheckingTransport, sleeps: Sleeps, sim: SimApp
) -> None:
    a = Credentials(SecretStr(TOKEN))
    b = Credentials(SecretStr(TOKEN), context=sim.config.workspace_id)
    async with make_client(transport, sleeps, rate=2.0, burst=2) as c:
        await asyncio.gather(*(c.list_clusters(creds=a if i % 2 else b) for i in range(6)))
        waited = c.stats.snapshot()["rate_limit_wait_seconds"]
        assert c.budget.total_wait_seconds == pytest.approx(waited)
    # 6 calls at 2/s with a configured burst of 2 (the client keeps half: 1 token at once):
    # 5 calls wait for tokens, the last one 2.5 s of virtual time after the first
    assert waited >= 1.99
    assert len(journal(sim)) == 6


async def test_no_rate_limit_wait_within_the_burst(
    transport: ContractCheckingTransport, sleeps: Sleeps, creds: Credentials
) -> None:
    # the client's bucket holds half the configured burst (headroom for the server's bucket)
    async with make_client(transport, sleeps, rate=1.0, burst=5) as c:
        assert c.budget.burst == 2
        for _ in range(2):
            await c.list_clusters(creds=creds)
        assert c.stats.rate_limit_wait_seconds == 0
        await c.list_clusters(creds=creds)
        assert c.stats.rate_limit_wait_seconds > 0


# --- errors: typed, safe ------------------------------------------------------------------------


async def test_unauthorized_error_never_shows_the_token(
    sleeps: Sleeps, transport: ContractCheckingTransport
) -> None:
    wrong = Credentials(SecretStr("sk_akua_wrong_but_secret"))
    async with make_client(transport, sleeps) as c:
        with pytest.raises(AkuaUnauthorized) as info:
            await c.get_cluster("clu_1", creds=wrong)
    err = info.value
    text = " ".join([str(err), repr(err), err.message, err.body or "", repr(err.args)])
    assert "sk_akua_wrong_but_secret" not in text
    assert "sk_akua_wrong" not in repr(wrong)


async def test_a_token_echoed_by_the_server_is_redacted(sleeps: Sleeps) -> None:
    token = "sk_akua_echo_secret_value"
    kubeconfig = "kubeconfig-with-client-key"

    def handler(request: httpx.Request) -> httpx.Response:
        message = f"bad header {request.headers['authorization']} for {request.content.decode()}"
        body = {"success": False, "errors": [{"code": 3, "message": message}], "result": {}}
        return httpx.Response(400, json=body)

    creds = Credentials(SecretStr(token))
    async with make_client(httpx.MockTransport(handler), sleeps) as c:
        with pytest.raises(AkuaBadRequest) as info:
            body = ImportClusterRequest(name="n", region_id="r", kubeconfig=SecretStr(kubeconfig))
            await c.import_cluster(body, creds=creds, idempotency_key="k")
    text = " ".join([str(info.value), info.value.body or "", repr(info.value.args)])
    assert token not in text and kubeconfig not in text
    assert "<redacted>" in str(info.value)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"<html>gateway</html>"),
        httpx.Response(200, json={"id": "clu_1"}),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, json={"id": "clu_1", "state": 5, "etag": None}),
        httpx.Response(200, content=b""),
    ],
)
async def test_malformed_success_bodies_are_response_errors(
    sleeps: Sleeps, creds: Credentials, response: httpx.Response
) -> None:
    async with make_client(httpx.MockTransport(lambda r: response), sleeps) as c:
        with pytest.raises(AkuaResponseError) as info:
            await c.get_cluster("clu_1", creds=creds)
    assert isinstance(info.value.__cause__, Exception)
    assert TOKEN not in str(info.value)


async def test_long_error_bodies_are_cut(sleeps: Sleeps, creds: Credentials) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(502, content=b"x" * 100_000))
    async with make_client(transport, sleeps, max_retries=0) as c:
        with pytest.raises(AkuaServerError) as info:
            await c.get_cluster("clu_1", creds=creds)
    assert info.value.body is not None and len(info.value.body) <= MAX_BODY_CHARS
    assert len(info.value.message) <= MAX_BODY_CHARS
    assert len(str(info.value)) < MAX_BODY_CHARS + 100
    assert info.value.code is None


async def test_non_envelope_error_still_typed(sleeps: Sleeps, creds: Credentials) -> None:
    transport = httpx.MockTransport(
        lambda r: httpx.Response(404, json={"error": {"code": "not_found"}})
    )
    async with make_client(transport, sleeps) as c:
        with pytest.raises(AkuaNotFound) as info:
            await c.get_cluster("clu_1", creds=creds)
    assert info.value.code is None and "not_found" in info.value.message


async def test_every_error_is_an_akua_error(
    client: AkuaClient, creds: Credentials, sim: SimApp
) -> None:
    await faults(sim, error_rate_500=1.0)
    with pytest.raises(AkuaError):
        await client.list_clusters(creds=creds)


def test_credentials_repr_and_context_validation() -> None:
    creds = Credentials(SecretStr("sk_akua_hidden"), context="ws_1")
    assert "sk_akua_hidden" not in repr(creds) and "sk_akua_hidden" not in str(creds)
    with pytest.raises(ValueError, match="akua-context"):
        Credentials(SecretStr("t"), context="w" * 54)


async def test_stats_snapshot_is_json_ready(client: AkuaClient, creds: Credentials) -> None:
    with pytest.raises(AkuaNotFound):
        await client.get_cluster("clu_nope", creds=creds)
    await client.list_clusters(creds=creds)
    snap = client.stats.snapshot()
    json.dumps(snap)
    series = {(r["endpoint"], r["status"]): r["count"] for r in snap["requests"]}
    assert series == {("GET /clusters/{id}", "404"): 1, ("GET /clusters", "200"): 1}


async def test_token_echoed_in_an_invalid_success_body_stays_out_of_the_error_chain(
    sleeps: Sleeps, creds: Credentials
) -> None:
    import traceback

    body = {"id": TOKEN, "state": TOKEN, "deep": [[[[TOKEN]]]]}
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=body))
    async with make_client(transport, sleeps) as c:
        with pytest.raises(AkuaResponseError) as info:
            await c.get_cluster("clu_1", creds=creds)
    text = "".join(traceback.format_exception(info.value)) + repr(vars(info.value))
    assert TOKEN not in text
    assert info.value.__cause__ is not None


async def test_absurdly_deep_json_is_a_response_error(sleeps: Sleeps, creds: Credentials) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=b"[" * 200_000))
    async with make_client(transport, sleeps) as c:
        with pytest.raises(AkuaResponseError):
            await c.get_cluster("clu_1", creds=creds)
