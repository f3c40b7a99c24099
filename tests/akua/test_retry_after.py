"""A server's ``Retry-After`` is a promise the client keeps for the whole workspace.

Time is virtual (``Sleeps`` advances a ``FakeClock``), the server is an ``httpx.MockTransport``
that records what reaches it: "not sent" is observed as a request that never arrived.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from akua_testkit import Sleeps, make_client
from pydantic import SecretStr

from akua_operator.akua import AkuaRateLimited, AkuaServerError, Credentials
from akua_operator.akua.client import AkuaClient
from akua_operator.akua.errors import AkuaRetryAfterPending
from akua_operator.sim import FakeClock

A = Credentials(SecretStr("sk_akua_token_of_workspace_a"))
A_CONTEXT = Credentials(SecretStr("sk_akua_token_of_workspace_a"), context="ws_a")
B = Credentials(SecretStr("sk_akua_token_of_workspace_b"))

ENVELOPE = {"success": False, "errors": [{"code": 8, "message": "slow down"}], "result": {}}
CLUSTER = {
    "id": "clu_1",
    "html_url": "https://akua.dev/clusters/clu_1",
    "name": "c",
    "workspace_id": "ws_a",
    "state": "active",
    "provider": "managed_kaas",
    "reconciling": False,
    "created_at": 1,
    "updated_at": 1,
    "etag": "1",
}


class Server:
    """Answers 429 with ``Retry-After: retry_after`` to the first ``limited`` requests of the
    workspace-A token, 200 to everything else; records (time, method, token) of each arrival."""

    def __init__(self, clock: FakeClock, retry_after: str, limited: int = 1, status: int = 429):
        self.clock = clock
        self.retry_after = retry_after
        self.limited = limited
        self.status = status
        self.arrivals: list[tuple[float, str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.headers["authorization"].removeprefix("Bearer ")
        self.arrivals.append((self.clock.now(), request.method, token))
        if token == A.token.get_secret_value() and self.limited > 0:
            self.limited -= 1
            return httpx.Response(
                self.status, json=ENVELOPE, headers={"retry-after": self.retry_after}
            )
        if request.method == "DELETE":
            return httpx.Response(202, json=_operation())
        return httpx.Response(200, json=CLUSTER)

    def sent(self, method: str | None = None, creds: Credentials | None = None) -> int:
        token = creds.token.get_secret_value() if creds is not None else None
        return sum(
            1
            for _, m, t in self.arrivals
            if (method is None or m == method) and (token is None or t == token)
        )


def _operation() -> dict[str, Any]:
    return {
        "id": "op_1",
        "workspace_id": "ws_a",
        "organization_id": "org_1",
        "owner_type": "cluster",
        "owner_id": "clu_1",
        "parent_operation_id": None,
        "state": "RUNNING",
        "done": False,
        "html_url": "https://akua.dev/operations/op_1",
        "metadata": {"type": "cluster.delete", "cluster_id": "clu_1"},
        "response": None,
        "error": None,
        "last_error": None,
        "started_at": 1,
        "completed_at": None,
        "steps": [],
    }


def _client(server: Server, sleeps: Sleeps, cap: float = 5.0) -> AkuaClient:
    return make_client(httpx.MockTransport(server), sleeps, retry_after_cap=cap, max_retries=3)


async def _delete(c: AkuaClient, creds: Credentials) -> None:
    await c.delete_cluster("clu_1", creds=creds, if_match="1", idempotency_key="del-1")


async def test_a_long_retry_after_on_delete_sends_one_delete_and_hands_the_wait_back(
    clock: FakeClock, sleeps: Sleeps
) -> None:
    server = Server(clock, "30", limited=10)
    async with _client(server, sleeps) as c:
        with pytest.raises(AkuaRateLimited) as info:
            await _delete(c, A)
    assert server.sent("DELETE") == 1
    assert info.value.retry_after == 30
    assert sleeps.calls == []  # nothing waited inside the call: the caller requeues


async def test_the_whole_workspace_waits_out_a_long_retry_after(
    clock: FakeClock, sleeps: Sleeps
) -> None:
    server = Server(clock, "30")
    async with _client(server, sleeps) as c:
        with pytest.raises(AkuaRateLimited):
            await _delete(c, A)
        clock.advance(10)
        # any call with the same credentials within the 30 s is refused without being sent
        with pytest.raises(AkuaRetryAfterPending) as info:
            await c.get_cluster("clu_1", creds=A)
        assert isinstance(info.value, AkuaRateLimited)
        assert info.value.retry_after == pytest.approx(20)
        assert server.sent(creds=A) == 1
        # the same token naming its workspace as akua-context reaches the same budget
        with pytest.raises(AkuaRetryAfterPending):
            await c.get_cluster("clu_1", creds=A_CONTEXT)
        # another workspace (another token) is not affected
        await c.get_cluster("clu_1", creds=B)
        assert server.sent(creds=B) == 1
        clock.advance(20)
        await c.get_cluster("clu_1", creds=A)
    assert server.sent("GET", A) == 1  # only the one after the wait
    assert sleeps.calls == []


async def test_a_short_retry_after_is_waited_out_by_every_call_of_the_workspace(
    clock: FakeClock, sleeps: Sleeps
) -> None:
    server = Server(clock, "3")
    async with make_client(
        httpx.MockTransport(server), sleeps, retry_after_cap=5, max_retries=0
    ) as c:
        with pytest.raises(AkuaRateLimited):  # no retries left: raised at once
            await c.get_cluster("clu_1", creds=A)
        started = clock.now()
        # the next call of the workspace waits for the pause before it is sent
        await c.get_cluster("clu_1", creds=A)
    (first, *_), (second, *_) = server.arrivals
    assert second - first >= 3
    assert clock.now() - started == pytest.approx(3)


async def test_retry_after_on_503_pauses_the_workspace_too(
    clock: FakeClock, sleeps: Sleeps
) -> None:
    server = Server(clock, "60", status=503)
    async with _client(server, sleeps) as c:
        with pytest.raises(AkuaServerError) as info:
            await c.get_cluster("clu_1", creds=A)
        assert info.value.retry_after == 60
        with pytest.raises(AkuaRetryAfterPending):
            await c.get_cluster("clu_1", creds=A)
    assert server.sent() == 1


async def test_retry_after_within_the_cap_is_retried_in_the_call(
    clock: FakeClock, sleeps: Sleeps
) -> None:
    server = Server(clock, "5")
    async with _client(server, sleeps) as c:
        await _delete(c, A)
    (first, *_), (second, *_) = server.arrivals
    assert server.sent("DELETE") == 2 and second - first >= 5
