"""The simulator behaves like the Akua API (and the guide's gap decisions), observed over HTTP.

Every /v1 response here is also validated against openapi.json by the transport (conftest).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from akua_testkit import BASE, TOKEN, ContractCheckingTransport

from akua_operator.sim import STEP_NAMES, FakeClock, SimApp, SimConfig, create_app

CREATE = {"name": "prod-eu", "region_id": "reg_eu1"}


async def seed(admin: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    r = await admin.post("/clusters", json={"name": "seeded", **fields})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def get(api: httpx.AsyncClient, path: str) -> httpx.Response:
    return await api.get(path)


def error(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert body["success"] is False and body["result"] == {}
    return dict(body["errors"][0])


async def create(api: httpx.AsyncClient, key: str = "k-create", **body: Any) -> dict[str, Any]:
    r = await api.post("/clusters", json={**CREATE, **body}, headers={"idempotency-key": key})
    assert r.status_code == 202, r.text
    return dict(r.json())


# --- operations advance through named steps ---------------------------------------------------


async def test_create_runs_named_steps_in_time_and_reveals_the_id_on_success(
    api: httpx.AsyncClient, clock: FakeClock
) -> None:
    op = await create(api)
    assert op["state"] == "RUNNING" and op["done"] is False
    assert op["metadata"]["type"] == "cluster.create"
    assert op["metadata"]["name"] == "prod-eu"
    assert op["response"] is None
    assert [s["name"] for s in op["steps"]] == list(STEP_NAMES["cluster.create"])
    assert [s["status"] for s in op["steps"]] == ["running", "pending", "pending", "pending"]

    listed = (await api.get("/clusters")).json()["data"]
    assert [(c["name"], c["state"], c["reconciling"]) for c in listed] == [
        ("prod-eu", "provisioning", True)
    ]

    clock.advance(2.5)
    op = (await api.get(f"/operations/{op['id']}")).json()
    assert [s["status"] for s in op["steps"]] == ["completed", "running", "pending", "pending"]
    assert op["response"] is None

    clock.advance(6)
    op = (await api.get(f"/operations/{op['id']}")).json()
    assert op["state"] == "SUCCEEDED" and op["done"] is True
    assert op["completed_at"] - op["started_at"] == 8
    assert all(s["status"] == "completed" for s in op["steps"])
    cluster_id = op["response"]["cluster_id"]
    cluster = (await api.get(f"/clusters/{cluster_id}")).json()
    assert cluster["state"] == "active" and cluster["reconciling"] is False
    assert cluster["provider"] == "managed_kaas"


async def test_step_seconds_can_be_set_per_operation_type(clock: FakeClock) -> None:
    config = SimConfig(
        tokens=[TOKEN], step_seconds=1.0, step_seconds_by_type={"cluster.delete": 10.0}
    )
    sim = create_app(config, clock=clock)
    async with (
        httpx.AsyncClient(
            transport=ContractCheckingTransport(sim),
            base_url=f"{BASE}/v1",
            headers={"authorization": f"Bearer {TOKEN}"},
        ) as api,
        httpx.AsyncClient(transport=ContractCheckingTransport(sim), base_url=f"{BASE}/_sim") as adm,
    ):
        cluster = await seed(adm)
        r = await api.delete(f"/clusters/{cluster['id']}", headers={"if-match": cluster["etag"]})
        clock.advance(39)
        assert (await api.get(f"/operations/{r.json()['id']}")).json()["state"] == "RUNNING"
        clock.advance(1)
        assert (await api.get(f"/operations/{r.json()['id']}")).json()["state"] == "SUCCEEDED"
        create_op = await create(api)
        clock.advance(4)
        done = (await api.get(f"/operations/{create_op['id']}")).json()
        assert done["state"] == "SUCCEEDED"


# --- delete (decisions 3 and 6) ----------------------------------------------------------------


async def test_delete_shows_deleting_then_404_and_a_second_delete_returns_the_same_operation(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    cluster = await seed(admin)
    cid = cluster["id"]
    r = await api.delete(
        f"/clusters/{cid}", headers={"if-match": cluster["etag"], "idempotency-key": "del-1"}
    )
    assert r.status_code == 202
    op = r.json()
    assert op["metadata"] == {"type": "cluster.delete", "cluster_id": cid}
    assert op["owner_type"] == "cluster" and op["owner_id"] == cid

    during = (await api.get(f"/clusters/{cid}")).json()
    assert during["state"] == "deleting" and during["reconciling"] is True
    assert during["etag"] != cluster["etag"]

    again = await api.delete(
        f"/clusters/{cid}", headers={"if-match": "stale", "idempotency-key": "del-2"}
    )
    assert again.status_code == 202 and again.json()["id"] == op["id"]

    clock.advance(8)
    done = (await api.get(f"/operations/{op['id']}")).json()
    assert done["state"] == "SUCCEEDED"
    assert done["response"] == {"type": "cluster.delete", "cluster_id": cid}
    gone = await api.get(f"/clusters/{cid}")
    assert gone.status_code == 404 and error(gone)["code"] == 5
    assert cid not in [c["id"] for c in (await api.get("/clusters")).json()["data"]]


async def test_list_operations_of_a_cluster_newest_first_without_steps(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    cluster = await seed(admin)
    cid = cluster["id"]
    first = await api.post(f"/clusters/{cid}:suspend", headers={"if-match": cluster["etag"]})
    clock.advance(10)
    etag = (await api.get(f"/clusters/{cid}")).json()["etag"]
    second = await api.post(f"/clusters/{cid}:resume", headers={"if-match": etag})
    r = await api.get("/operations", params={"owner_type": "cluster", "owner_id": cid})
    data = r.json()["data"]
    assert [o["id"] for o in data] == [second.json()["id"], first.json()["id"]]
    assert all("steps" not in o for o in data)
    assert [o["metadata"]["type"] for o in data] == ["cluster.resume", "cluster.suspend"]
    bad = await api.get("/operations", params={"owner_type": "cluster"})
    assert bad.status_code == 400 and error(bad)["path"] == ["query", "owner_id"]


# --- if-match, etags, one running operation (decisions 1, 2, 3, 5) ----------------------------


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("PATCH", ""), ("DELETE", ""), ("POST", ":suspend"), ("POST", ":resume")],
)
async def test_missing_if_match_is_400_naming_the_header(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, method: str, suffix: str
) -> None:
    cluster = await seed(admin)
    body = {"name": "x"} if method == "PATCH" else None
    r = await api.request(method, f"/clusters/{cluster['id']}{suffix}", json=body)
    assert r.status_code == 400
    assert error(r)["path"] == ["header", "if-match"]


async def test_etag_mismatch_is_409_aborted_with_the_current_etag(
    api: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    cluster = await seed(admin)
    r = await api.patch(
        f"/clusters/{cluster['id']}", json={"name": "renamed"}, headers={"if-match": "old"}
    )
    assert r.status_code == 409
    err = error(r)
    assert err["code"] == 10
    assert err["message"] == "ABORTED: etag mismatch"
    assert err["metadata"] == {"etag": cluster["etag"]}
    ok = await api.patch(
        f"/clusters/{cluster['id']}",
        json={"name": "renamed"},
        headers={"if-match": cluster["etag"]},
    )
    assert ok.status_code == 200
    assert ok.json()["name"] == "renamed" and ok.json()["etag"] != cluster["etag"]


async def test_one_running_operation_per_cluster(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    cluster = await seed(admin)
    cid = cluster["id"]
    op = (await api.post(f"/clusters/{cid}:suspend", headers={"if-match": cluster["etag"]})).json()
    etag = (await api.get(f"/clusters/{cid}")).json()["etag"]
    for method, suffix, body in [
        ("PATCH", "", {"name": "y"}),
        ("DELETE", "", None),
        ("POST", ":resume", None),
    ]:
        r = await api.request(
            method, f"/clusters/{cid}{suffix}", json=body, headers={"if-match": etag}
        )
        assert r.status_code == 409, (method, suffix)
        assert error(r)["metadata"]["active_operation_id"] == op["id"]
    clock.advance(6)
    after = (await api.get(f"/clusters/{cid}")).json()
    assert after["state"] == "suspended" and after["reconciling"] is False
    assert after["etag"] != etag  # server-side change changes the etag too


async def test_suspend_and_resume_check_the_state(
    api: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    suspended = await seed(admin, state="suspended")
    r = await api.post(
        f"/clusters/{suspended['id']}:suspend", headers={"if-match": suspended["etag"]}
    )
    assert r.status_code == 422
    active = await seed(admin)
    r = await api.post(f"/clusters/{active['id']}:resume", headers={"if-match": active["etag"]})
    assert r.status_code == 422


async def test_delete_blocked_by_remaining_installs_is_422_until_cleared(
    api: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    cluster = await seed(admin, delete_blocked_reason="cluster has active installs")
    r = await api.delete(f"/clusters/{cluster['id']}", headers={"if-match": cluster["etag"]})
    assert r.status_code == 422 and "installs" in error(r)["message"]
    await admin.patch(f"/clusters/{cluster['id']}", json={"delete_blocked_reason": None})
    r = await api.delete(f"/clusters/{cluster['id']}", headers={"if-match": cluster["etag"]})
    assert r.status_code == 202


# --- idempotency (decision 4) -----------------------------------------------------------------


async def test_idempotency_key_replays_the_first_result_and_rejects_other_requests(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    first = await create(api, key="same")
    second = await create(api, key="same")
    assert second["id"] == first["id"]
    assert len((await api.get("/clusters")).json()["data"]) == 1

    other_body = await api.post(
        "/clusters", json={**CREATE, "name": "other"}, headers={"idempotency-key": "same"}
    )
    assert other_body.status_code == 422
    assert error(other_body)["path"] == ["header", "idempotency-key"]

    cluster = await seed(admin)
    other_call = await api.delete(
        f"/clusters/{cluster['id']}",
        headers={"if-match": cluster["etag"], "idempotency-key": "same"},
    )
    assert other_call.status_code == 422

    clock.advance(60)
    replay = await create(api, key="same")
    assert replay["id"] == first["id"] and replay["state"] == "SUCCEEDED"


async def test_a_replayed_delete_after_success_returns_the_operation_not_404(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    cluster = await seed(admin)
    headers = {"if-match": cluster["etag"], "idempotency-key": "del"}
    op = (await api.delete(f"/clusters/{cluster['id']}", headers=headers)).json()
    clock.advance(60)
    replay = await api.delete(f"/clusters/{cluster['id']}", headers=headers)
    assert replay.status_code == 202
    assert replay.json()["id"] == op["id"] and replay.json()["state"] == "SUCCEEDED"
    fresh = await api.delete(
        f"/clusters/{cluster['id']}", headers={"if-match": "x", "idempotency-key": "new"}
    )
    assert fresh.status_code == 404


async def test_without_idempotency_key_each_create_makes_a_cluster(api: httpx.AsyncClient) -> None:
    for _ in range(2):
        assert (await api.post("/clusters", json=CREATE)).status_code == 202
    assert len((await api.get("/clusters")).json()["data"]) == 2


# --- :wait and :cancel (decision 8) -----------------------------------------------------------


async def test_wait_returns_the_terminal_operation_with_steps(api: httpx.AsyncClient) -> None:
    op = await create(api)
    r = await api.post(f"/operations/{op['id']}:wait", params={"timeout": 60})
    assert r.status_code == 200
    assert r.json()["done"] is True and len(r.json()["steps"]) == 4


async def test_wait_returns_the_running_operation_at_the_timeout(
    api: httpx.AsyncClient, clock: FakeClock
) -> None:
    op = await create(api)
    start = clock.now()
    r = await api.post(f"/operations/{op['id']}:wait", params={"timeout": 3})
    assert r.json()["done"] is False and r.json()["steps"][1]["status"] == "running"
    assert 3 <= clock.now() - start < 4
    for bad in ("0", "61", "soon"):
        r = await api.post(f"/operations/{op['id']}:wait", params={"timeout": bad})
        assert r.status_code == 400 and error(r)["path"] == ["query", "timeout"]


async def test_cancel_drains_the_running_step_then_cancels(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    cluster = await seed(admin)
    op = (
        await api.delete(f"/clusters/{cluster['id']}", headers={"if-match": cluster["etag"]})
    ).json()
    clock.advance(3)
    r = await api.post(f"/operations/{op['id']}:cancel")
    assert r.status_code == 202 and r.json()["state"] == "RUNNING"
    clock.advance(1)
    done = (await api.get(f"/operations/{op['id']}")).json()
    assert done["state"] == "CANCELLED" and done["error"]["message"]
    assert [s["status"] for s in done["steps"]] == ["completed", "completed", "skipped", "skipped"]
    back = (await api.get(f"/clusters/{cluster['id']}")).json()
    assert back["state"] == "active" and back["reconciling"] is False
    again = await api.post(f"/operations/{op['id']}:cancel")
    assert again.status_code == 422


async def test_unknown_operation_is_404(api: httpx.AsyncClient) -> None:
    for r in (
        await api.get("/operations/op_nope"),
        await api.post("/operations/op_nope:wait"),
        await api.post("/operations/op_nope:cancel"),
    ):
        assert r.status_code == 404


# --- scenarios --------------------------------------------------------------------------------


@pytest.mark.parametrize(("retryable", "skippable"), [(True, False), (False, True)])
async def test_scenario_fails_a_step(
    api: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    clock: FakeClock,
    retryable: bool,
    skippable: bool,
) -> None:
    cluster = await seed(admin)
    r = await admin.post(
        "/scenarios",
        json={
            "operation_type": "cluster.delete",
            "fail_step": "delete_workers",
            "retryable": retryable,
            "skippable": skippable,
            "times": 1,
        },
    )
    assert r.status_code == 201
    headers = {"if-match": cluster["etag"]}
    op = (await api.delete(f"/clusters/{cluster['id']}", headers=headers)).json()
    done = (await api.post(f"/operations/{op['id']}:wait")).json()
    assert done["state"] == "FAILED" and done["done"] is True
    failed = [s for s in done["steps"] if s["status"] == "failed"]
    assert [s["name"] for s in failed] == ["delete_workers"]
    assert failed[0]["retryable"] is retryable and failed[0]["skippable"] is skippable
    assert failed[0]["error_message"]
    assert done["error"]["message"] and done["last_error"]["step_name"] == "delete_workers"
    after = (await api.get(f"/clusters/{cluster['id']}")).json()
    assert after["state"] == "active" and after["reconciling"] is False
    # times=1: the next delete succeeds
    retry = await api.delete(f"/clusters/{cluster['id']}", headers={"if-match": after["etag"]})
    assert (await api.post(f"/operations/{retry.json()['id']}:wait")).json()["state"] == "SUCCEEDED"
    assert (await admin.get("/scenarios")).json()["data"] == []


async def test_flaky_step_shows_last_error_while_running_then_clears_it(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    await admin.post(
        "/scenarios",
        json={"operation_type": "cluster.create", "mode": "flaky", "step": "provision_network"},
    )
    op = await create(api)
    clock.advance(4.5)  # provision_network failed at t=4, retries at t=6
    mid = (await api.get(f"/operations/{op['id']}")).json()
    assert mid["state"] == "RUNNING"
    assert mid["last_error"]["step_name"] == "provision_network"
    assert mid["steps"][1]["status"] == "failed"
    clock.advance(10)
    done = (await api.get(f"/operations/{op['id']}")).json()
    assert done["state"] == "SUCCEEDED" and done["last_error"] is None


async def test_approval_step_waits_for_a_person(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    await admin.post(
        "/scenarios",
        json={"operation_type": "cluster.create", "mode": "approval", "step": "provision_workers"},
    )
    op = await create(api)
    clock.advance(3600)
    waiting = (await api.get(f"/operations/{op['id']}")).json()
    assert waiting["state"] == "RUNNING"
    assert waiting["steps"][3]["execution_type"] == "approval"
    assert waiting["steps"][3]["status"] == "running"
    r = await admin.post(f"/operations/{op['id']}:approve", json={})
    assert r.status_code == 200
    assert (await api.get(f"/operations/{op['id']}")).json()["state"] == "SUCCEEDED"


async def test_cancel_scenario_and_cluster_filter(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    target = await seed(admin)
    other = await seed(admin)
    await admin.post(
        "/scenarios",
        json={
            "operation_type": "cluster.suspend",
            "cluster_id": target["id"],
            "mode": "cancel",
            "step": "stop_workers",
        },
    )
    ops = {}
    for c in (other, target):
        r = await api.post(f"/clusters/{c['id']}:suspend", headers={"if-match": c["etag"]})
        ops[c["id"]] = r.json()["id"]
    clock.advance(30)
    assert (await api.get(f"/operations/{ops[other['id']]}")).json()["state"] == "SUCCEEDED"
    cancelled = (await api.get(f"/operations/{ops[target['id']]}")).json()
    assert cancelled["state"] == "CANCELLED"
    assert (await api.get(f"/clusters/{target['id']}")).json()["state"] == "active"


async def test_scenario_with_an_unknown_step_is_rejected(admin: httpx.AsyncClient) -> None:
    r = await admin.post(
        "/scenarios", json={"operation_type": "cluster.delete", "fail_step": "explode"}
    )
    assert r.status_code == 422


# --- faults -----------------------------------------------------------------------------------


async def test_503_and_429_carry_retry_after(
    api: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await admin.post("/faults", json={"error_rate_503": 1.0, "retry_after_seconds": 7, "count": 1})
    r = await api.get("/clusters")
    assert r.status_code == 503 and r.headers["retry-after"] == "7"
    assert error(r)["code"] == 14
    assert (await api.get("/clusters")).status_code == 200  # count exhausted
    await admin.post("/faults", json={"error_rate_429": 1.0, "count": 1})
    r = await api.get("/clusters")
    assert r.status_code == 429 and r.headers["retry-after"] == "1"


async def test_server_side_rate_limit(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    await admin.post("/faults", json={"rate_limit_rps": 1, "rate_limit_burst": 3})
    statuses = [(await api.get("/clusters")).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    clock.advance(1)
    assert (await api.get("/clusters")).status_code == 200


async def test_dropped_connection_after_processing_loses_the_response_not_the_write(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, sim: SimApp
) -> None:
    await admin.post("/faults", json={"drop_rate": 1.0, "methods": ["POST"], "count": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        await api.post("/clusters", json=CREATE, headers={"idempotency-key": "lost"})
    assert len((await api.get("/clusters")).json()["data"]) == 1
    entry = sim.journal.read()[-2]
    assert entry["fault"] == "drop_after" and entry["status"] == 202


async def test_dropped_connection_before_processing_does_nothing(
    api: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    await admin.post("/faults", json={"drop_before_rate": 1.0, "count": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        await api.post("/clusters", json=CREATE)
    assert (await api.get("/clusters")).json()["data"] == []


async def test_stale_reads_after_a_write(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, clock: FakeClock
) -> None:
    cluster = await seed(admin)
    await admin.post("/faults", json={"stale_read_seconds": 5})
    r = await api.patch(
        f"/clusters/{cluster['id']}", json={"name": "new"}, headers={"if-match": cluster["etag"]}
    )
    assert r.json()["name"] == "new"
    assert (await api.get(f"/clusters/{cluster['id']}")).json()["name"] == "seeded"
    clock.advance(5)
    assert (await api.get(f"/clusters/{cluster['id']}")).json()["name"] == "new"


async def test_latency_fault_is_applied(api: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    await admin.post("/faults", json={"latency_ms": 1, "path_contains": "/operations"})
    await api.get("/clusters")
    await api.get("/operations")
    journal = (await admin.get("/journal")).json()["data"]
    assert [(e["path"], e["latency_ms"]) for e in journal] == [("/clusters", 0), ("/operations", 1)]


# --- auth, validation, routing ----------------------------------------------------------------


async def test_only_configured_tokens_pass(transport: ContractCheckingTransport) -> None:
    async with httpx.AsyncClient(transport=transport, base_url=f"{BASE}/v1") as anon:
        for headers in ({}, {"authorization": "Bearer sk_akua_wrong"}, {"authorization": TOKEN}):
            r = await anon.get("/clusters", headers=headers)
            assert r.status_code == 401 and error(r)["code"] == 16


async def test_akua_context_must_name_the_workspace(api: httpx.AsyncClient, sim: SimApp) -> None:
    ok = await api.get("/clusters", headers={"akua-context": sim.config.workspace_id})
    assert ok.status_code == 200
    assert (await api.get("/clusters", headers={"akua-context": "ws_other"})).status_code == 403
    assert (await api.get("/clusters", headers={"akua-context": "w" * 54})).status_code == 400


async def test_member_tokens_cannot_delete(clock: FakeClock) -> None:
    sim = create_app(SimConfig(tokens=[TOKEN], member_tokens=["sk_akua_member"]), clock=clock)
    async with httpx.AsyncClient(
        transport=ContractCheckingTransport(sim),
        base_url=f"{BASE}/v1",
        headers={"authorization": "Bearer sk_akua_member"},
    ) as member:
        cluster = sim.state.seed_cluster(name="c")
        r = await member.delete(f"/clusters/{cluster['id']}", headers={"if-match": cluster["etag"]})
        assert r.status_code == 403
        assert (await member.get(f"/clusters/{cluster['id']}")).status_code == 200


@pytest.mark.parametrize(
    ("raw", "status", "path"),
    [
        (b"{not json", 400, ["body"]),
        (json.dumps({**CREATE, "size": "xl"}).encode(), 422, ["body", "size"]),
        (json.dumps({**CREATE, "name": "n" * 101}).encode(), 422, ["body", "name"]),
        (json.dumps({**CREATE, "name": ""}).encode(), 422, ["body", "name"]),
        (json.dumps({**CREATE, "region_id": 5}).encode(), 422, ["body", "region_id"]),
        (json.dumps({"name": "x"}).encode(), 422, ["body", "region_id"]),
        (
            json.dumps({**CREATE, "network_profile": "flat"}).encode(),
            422,
            ["body", "network_profile"],
        ),
        (b"[]", 422, ["body"]),
    ],
)
async def test_invalid_bodies_get_error_envelopes(
    api: httpx.AsyncClient, raw: bytes, status: int, path: list[str]
) -> None:
    r = await api.post("/clusters", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert error(r)["path"] == path


async def test_invalid_headers_are_400(api: httpx.AsyncClient) -> None:
    r = await api.post("/clusters", json=CREATE, headers={"idempotency-key": "k" * 65})
    assert r.status_code == 400 and error(r)["path"] == ["header", "idempotency-key"]


async def test_percent_encoded_colon_works(
    api: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    cluster = await seed(admin)
    r = await api.post(
        f"/clusters/{cluster['id']}%3Asuspend", headers={"if-match": cluster["etag"]}
    )
    assert r.status_code == 202 and r.json()["metadata"]["type"] == "cluster.suspend"
    w = await api.post(f"/operations/{r.json()['id']}%3Await", params={"timeout": 60})
    assert w.json()["state"] == "SUCCEEDED"
    imported = await api.post(
        "/clusters%3Aimport", json={"name": "i", "region_id": "r", "kubeconfig": "apiVersion: v1"}
    )
    assert imported.status_code == 200


async def test_unknown_routes_are_404_envelopes(api: httpx.AsyncClient) -> None:
    for method, path in [("GET", "/nope"), ("PUT", "/clusters"), ("POST", "/clusters/x:explode")]:
        r = await api.request(method, path)
        assert r.status_code == 404 and error(r)["code"] == 5


async def test_import_is_synchronous_and_keeps_no_kubeconfig_visible(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, sim: SimApp
) -> None:
    body = {"name": "byoc", "region_id": "reg_1", "kubeconfig": "secret-kubeconfig-data"}
    r = await api.post("/clusters:import", json=body, headers={"idempotency-key": "imp"})
    assert r.status_code == 200
    cluster = r.json()
    assert cluster["provider"] == "imported_byoc" and cluster["state"] == "active"
    replay = await api.post("/clusters:import", json=body, headers={"idempotency-key": "imp"})
    assert replay.json()["id"] == cluster["id"]
    dump = (await admin.get("/state")).text + (await admin.get("/journal")).text
    assert "secret-kubeconfig-data" not in dump


# --- pagination -------------------------------------------------------------------------------


async def test_cursor_pagination_walks_every_cluster_once(
    api: httpx.AsyncClient, admin: httpx.AsyncClient
) -> None:
    ids = [(await seed(admin, name=f"c{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/clusters", params=params)).json()
        pages += 1
        seen += [c["id"] for c in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert seen == ids and pages == 3
    assert (await api.get("/clusters", params={"limit": 0})).status_code == 400
    assert (await api.get("/clusters", params={"limit": 101})).status_code == 400
    assert (await api.get("/clusters", params={"cursor": "garbage!"})).status_code == 400


async def test_operations_pagination(api: httpx.AsyncClient) -> None:
    for i in range(3):
        await create(api, key=f"k{i}")
    first = (await api.get("/operations", params={"limit": 2})).json()
    assert first["has_more"] is True and len(first["data"]) == 2
    rest = (
        await api.get("/operations", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert rest["has_more"] is False and len(rest["data"]) == 1
    all_ids = [o["id"] for o in first["data"] + rest["data"]]
    assert len(set(all_ids)) == 3


# --- journal and determinism ------------------------------------------------------------------


async def test_journal_records_the_headers_that_matter_and_never_the_token(
    api: httpx.AsyncClient, admin: httpx.AsyncClient, sim: SimApp
) -> None:
    cluster = await seed(admin)
    await api.delete(
        f"/clusters/{cluster['id']}",
        headers={
            "if-match": cluster["etag"],
            "idempotency-key": "del-j",
            "akua-context": sim.config.workspace_id,
        },
    )
    journal = (await admin.get("/journal")).json()["data"]
    assert len(journal) == 1  # admin calls are not journaled
    entry = journal[0]
    assert entry["method"] == "DELETE" and entry["path"] == f"/clusters/{cluster['id']}"
    assert entry["status"] == 202
    assert entry["if_match"] == cluster["etag"]
    assert entry["idempotency_key"] == "del-j"
    assert entry["akua_context"] == sim.config.workspace_id
    assert isinstance(entry["time"], float)
    assert TOKEN not in json.dumps(journal)
    assert "authorization" not in json.dumps(journal).lower()
    await admin.delete("/journal")
    assert (await admin.get("/journal")).json()["data"] == []


async def _scripted_run(seed_value: int) -> list[Any]:
    clock = FakeClock()
    config = SimConfig(tokens=[TOKEN], seed=seed_value, faults={"error_rate_503": 0.3})
    sim = create_app(config, clock=clock)
    out: list[Any] = []
    async with httpx.AsyncClient(
        transport=ContractCheckingTransport(sim),
        base_url=f"{BASE}/v1",
        headers={"authorization": f"Bearer {TOKEN}"},
    ) as api:
        for i in range(12):
            r = await api.post("/clusters", json={**CREATE, "name": f"n{i}"})
            out.append((r.status_code, r.json().get("id")))
            clock.advance(1)
    return out


async def test_deterministic_under_a_seed() -> None:
    first = await _scripted_run(11)
    assert first == await _scripted_run(11)
    assert {s for s, _ in first} == {202, 503}
    assert first != await _scripted_run(12)


async def test_reset_forgets_everything(api: httpx.AsyncClient, admin: httpx.AsyncClient) -> None:
    await seed(admin)
    await admin.post("/faults", json={"error_rate_500": 1.0})
    assert (await api.get("/clusters")).status_code == 500
    await admin.post("/reset")
    r = await api.get("/clusters")
    assert r.status_code == 200 and r.json()["data"] == []
