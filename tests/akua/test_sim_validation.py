"""The simulator's response validation (``validate_responses``) and the fixture helper that fails
a test on any violation (tests/simcheck.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from akua_testkit import BASE, TOKEN

from akua_operator.sim import FakeClock, SimApp, SimConfig, SimTransport, create_app
from akua_operator.sim.contract import Contract, ResponseChecker, find_contract
from akua_operator.sim.server import SimServer
from simcheck import assert_no_violations, no_violations, violations

CREATE = {"name": "prod", "region_id": "reg_eu1"}
HEADERS = {"authorization": f"Bearer {TOKEN}"}


def validating(**settings: Any) -> SimApp:
    config = SimConfig(tokens=[TOKEN], validate_responses=True, **settings)
    return create_app(config, clock=FakeClock())


def api(sim: SimApp) -> httpx.AsyncClient:
    # a plain transport: the simulator itself must notice what is wrong
    return httpx.AsyncClient(transport=SimTransport(sim), base_url=f"{BASE}/v1", headers=HEADERS)


def admin(sim: SimApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=SimTransport(sim), base_url=f"{BASE}/_sim")


def _without_etag(original: Any) -> Any:
    def broken(cluster: Any) -> dict[str, Any]:
        out = dict(original(cluster))
        del out["etag"]
        return out

    return broken


async def test_a_whole_lifecycle_and_every_fault_answer_validate_cleanly() -> None:
    sim = validating(step_seconds=1.0)
    async with api(sim) as c, admin(sim) as a:
        op = (await c.post("/clusters", json=CREATE, headers={"idempotency-key": "k"})).json()
        await c.post(f"/operations/{op['id']}:wait", params={"timeout": 60})
        cid = (await c.get(f"/operations/{op['id']}")).json()["response"]["cluster_id"]
        cluster = (await c.get(f"/clusters/{cid}")).json()
        await c.delete(f"/clusters/{cid}", headers={"if-match": "stale"})  # 409
        await c.delete(f"/clusters/{cid}")  # 400: no if-match (undeclared, an envelope)
        await c.get("/clusters", params={"limit": 0})  # 400
        await c.get("/workspaces")
        await c.get("/nowhere")  # 404 envelope
        await a.post("/faults", json={"error_rate_429": 1.0, "count": 1, "retry_after_seconds": 3})
        assert (await c.get("/clusters")).status_code == 429
        await a.post("/faults", json={"error_rate_503": 1.0, "count": 1})
        assert (await c.get("/clusters")).status_code == 503
        r = await c.delete(f"/clusters/{cid}", headers={"if-match": cluster["etag"]})
        assert r.status_code == 202
        body = (await a.get("/violations")).json()
    assert body == {"validating": True, "total": 0, "data": []}
    assert len(sim.journal.read()) == 12
    assert_no_violations(sim)


async def test_a_response_that_breaks_the_contract_is_recorded_and_fails_the_fixture(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = validating()
    cluster = sim.state.seed_cluster(name="c")
    monkeypatch.setattr(sim.state, "cluster_json", _without_etag(sim.state.cluster_json))
    async with api(sim) as c, admin(sim) as a:
        assert (await c.get(f"/clusters/{cluster['id']}")).status_code == 200
        body = (await a.get("/violations")).json()
    assert body["total"] == 1
    (found,) = body["data"]
    assert (found["method"], found["path"], found["status"]) == (
        "GET",
        f"/clusters/{cluster['id']}",
        200,
    )
    assert any("'etag' is a required property" in p for p in found["problems"])
    (entry,) = sim.journal.read()
    assert entry["violations"] == found["problems"] and entry["seq"] == found["seq"]
    with pytest.raises(pytest.fail.Exception, match="1 response"):
        assert_no_violations(sim)
    with pytest.raises(pytest.fail.Exception, match="etag"), no_violations(sim):
        pass
    async with admin(sim) as a:
        assert (await a.delete("/violations")).status_code == 200
    assert violations(sim) == []


async def test_the_helper_fails_when_the_simulator_does_not_validate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim = create_app(SimConfig(tokens=[TOKEN]), clock=FakeClock())
    with pytest.raises(pytest.fail.Exception, match="does not validate"):
        assert_no_violations(sim)
    assert_no_violations(sim, require_validating=False)
    # validation can be turned on at run time (a simulator in another process)
    cluster = sim.state.seed_cluster(name="c")
    monkeypatch.setattr(sim.state, "cluster_json", _without_etag(sim.state.cluster_json))
    async with api(sim) as c, admin(sim) as a:
        await c.get(f"/clusters/{cluster['id']}")
        assert violations(sim) == []
        r = await a.patch("/config", json={"validate_responses": True})
        assert r.status_code == 200 and r.json()["validate_responses"] is True
        await c.get(f"/clusters/{cluster['id']}")
    assert [v["status"] for v in violations(sim)] == [200]


def test_a_real_server_reports_violations_over_its_admin_api(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SimServer(SimConfig(tokens=[TOKEN], validate_responses=True)) as server:
        cluster = server.sim.state.seed_cluster(name="c")
        monkeypatch.setattr(
            server.sim.state, "cluster_json", _without_etag(server.sim.state.cluster_json)
        )
        r = httpx.get(f"{server.url}/clusters/{cluster['id']}", headers=HEADERS, timeout=10)
        assert r.status_code == 200
        assert [v["status"] for v in server.violations()] == [200]
        assert [v["path"] for v in violations(server.admin_url)] == [f"/clusters/{cluster['id']}"]
        with pytest.raises(pytest.fail.Exception):
            assert_no_violations(server)


# --- the checker's rules, one by one -------------------------------------------------------------


@pytest.fixture(scope="module")
def checker() -> ResponseChecker:
    return ResponseChecker(Contract())


ENVELOPE = {"success": False, "errors": [{"code": 8, "message": "slow"}], "result": {}}


def check(checker: ResponseChecker, status: int, body: Any, **headers: str) -> list[str]:
    raw = json.dumps(body).encode()
    return checker.check("GET", "/clusters", status, headers, raw)


def test_retry_after_must_be_whole_seconds_on_429_and_503(checker: ResponseChecker) -> None:
    for status in (429, 503):
        assert check(checker, status, ENVELOPE, **{"Retry-After": "2"}) == []
        assert check(checker, status, ENVELOPE, **{"Retry-After": "1.5"}) == [
            "Retry-After '1.5' is not whole seconds"
        ]
        assert check(checker, status, ENVELOPE) == [f"HTTP {status} without Retry-After"]


def test_undeclared_errors_need_the_envelope_and_undeclared_successes_are_violations(
    checker: ResponseChecker,
) -> None:
    assert check(checker, 400, ENVELOPE) == []
    assert check(checker, 400, {"error": {"code": "bad"}}) != []
    assert check(checker, 201, {"data": [], "has_more": False, "next_cursor": None}) == [
        "HTTP 201 is not a status the contract declares for GET /clusters"
    ]
    not_json = checker.check("GET", "/clusters", 200, {}, b"{")
    assert not_json == ["HTTP 200 body is not JSON"]
    unknown = checker.check("GET", "/nowhere", 200, {}, b"{}")
    assert unknown == [
        "HTTP 200 is not a status the contract declares for unknown route GET /nowhere"
    ]


def test_an_etag_header_must_match_the_body(checker: ResponseChecker) -> None:
    cluster = {
        "id": "clu_1",
        "html_url": "https://akua.dev/clusters/clu_1",
        "name": "c",
        "workspace_id": "ws_1",
        "state": "active",
        "provider": "managed_kaas",
        "reconciling": False,
        "created_at": 1,
        "updated_at": 1,
        "etag": "7",
    }
    raw = json.dumps(cluster).encode()
    assert checker.check("GET", "/clusters/clu_1", 200, {"etag": '"7"'}, raw) == []
    assert checker.check("GET", "/clusters/clu_1", 200, {"etag": "8"}, raw) == [
        "etag header '8' differs from the body's etag '7'"
    ]


def test_the_contract_is_found_from_the_package_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    path = find_contract()
    monkeypatch.delenv("AKUA_OPENAPI", raising=False)
    assert find_contract(path) == path
    with pytest.raises(FileNotFoundError, match="AKUA_OPENAPI"):
        find_contract(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError):
        create_app(SimConfig(validate_responses=True, contract_path=str(tmp_path / "x.json")))
