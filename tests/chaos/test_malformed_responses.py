"""Malformed Akua responses, generated with hypothesis, fed to the real client.

Whatever the server sends (missing fields, wrong types, unknown enum values, huge bodies, deep
nesting, invalid JSON, odd status codes and headers, even an echo of the caller's token), every
call either returns a typed model or raises an AkuaError: never another exception type, and the
token appears nowhere in the error's text or its chained causes.
"""

from __future__ import annotations

import asyncio
import copy
import json
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from chaoskit import Scale
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from akua_operator.akua.client import AkuaClient, ClientConfig, Credentials
from akua_operator.akua.errors import AkuaError
from akua_operator.akua.models import Cluster, Operation

TOKEN = "sk_akua_chaos_Zq8s3cr3tT0ken"
BASE = "https://akua.invalid/v1"

CLUSTER: dict[str, Any] = {
    "id": "clu_0123456789abcdef",
    "html_url": "https://akua.dev/clusters/clu_0123456789abcdef",
    "name": "bench",
    "workspace_id": "ws_0123456789abcdef",
    "state": "active",
    "provider": "managed_kaas",
    "reconciling": False,
    "created_at": 1_800_000_000,
    "updated_at": 1_800_000_100,
    "etag": "W/1",
}
STEP: dict[str, Any] = {
    "name": "drain_workloads",
    "status": "running",
    "execution_type": "system",
    "started_at": 1_800_000_200,
    "completed_at": None,
    "error_message": None,
    "retryable": True,
    "skippable": False,
}
OPERATION: dict[str, Any] = {
    "id": "op_0123456789abcdef",
    "workspace_id": "ws_0123456789abcdef",
    "organization_id": "org_0123456789abcdef",
    "owner_type": "cluster",
    "owner_id": "clu_0123456789abcdef",
    "parent_operation_id": None,
    "state": "RUNNING",
    "done": False,
    "html_url": "https://akua.dev/clusters/clu_0123456789abcdef?tab=operations",
    "metadata": {"type": "cluster.delete", "cluster_id": "clu_0123456789abcdef"},
    "response": None,
    "error": None,
    "last_error": None,
    "started_at": 1_800_000_200,
    "completed_at": None,
    "steps": [STEP, {**STEP, "name": "delete_workers", "status": "pending"}],
}
ERROR: dict[str, Any] = {
    "success": False,
    "errors": [{"code": 10, "message": "ABORTED: etag mismatch", "metadata": {"etag": "W/2"}}],
    "result": {},
}
LISTS = {
    "clusters": {"data": [CLUSTER], "has_more": False, "next_cursor": None},
    "operations": {"data": [OPERATION], "has_more": True, "next_cursor": "c1"},
}

ENUM_FIELDS = {"state", "provider", "status", "execution_type", "owner_type", "type"}

Call = Callable[[AkuaClient, Credentials], Awaitable[Any]]

CALLS: dict[str, tuple[Call, dict[str, Any]]] = {
    "get_cluster": (lambda c, k: c.get_cluster("clu_0123456789abcdef", creds=k), CLUSTER),
    "list_clusters": (lambda c, k: c.list_clusters(creds=k), LISTS["clusters"]),
    "delete_cluster": (
        lambda c, k: c.delete_cluster(
            "clu_0123456789abcdef", creds=k, if_match="W/1", idempotency_key="k-1"
        ),
        OPERATION,
    ),
    "get_operation": (lambda c, k: c.get_operation("op_0123456789abcdef", creds=k), OPERATION),
    "wait_operation": (
        lambda c, k: c.wait_operation("op_0123456789abcdef", creds=k, timeout=1),
        OPERATION,
    ),
    "cancel_operation": (
        lambda c, k: c.cancel_operation("op_0123456789abcdef", creds=k),
        OPERATION,
    ),
    "list_operations": (
        lambda c, k: c.list_operations(creds=k, owner_type="cluster", owner_id="clu_x"),
        LISTS["operations"],
    ),
}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.append((*prefix, key))
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out.append((*prefix, i))
            out.extend(_paths(value, (*prefix, i)))
    return out


def _parent(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        obj = obj[key]
    return obj


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """A valid body with one to three things wrong with it."""
    obj = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(obj)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(obj, path)
        key = path[-1]
        kind = draw(st.sampled_from(["drop", "wrong_type", "unknown_enum", "huge", "null"]))
        if kind == "drop":
            del parent[key]
        elif kind == "wrong_type":
            parent[key] = draw(json_values)
        elif kind == "unknown_enum":
            parent[key] = draw(st.text(min_size=1, max_size=20))
        elif kind == "huge":
            parent[key] = "x" * draw(st.integers(100_000, 2_000_000))
        else:
            parent[key] = None
    return obj


class Body(bytes):
    """Response bytes with a short repr, so a failing example stays readable."""

    def __repr__(self) -> str:
        head = bytes(self[:120])
        return f"Body({head!r}{'...' if len(self) > 120 else ''}, {len(self)} bytes)"


def bodies(base: dict[str, Any]) -> st.SearchStrategy[Body]:
    as_json = st.builds(lambda v: json.dumps(v).encode(), mutated(base) | json_values)
    invalid = (
        st.binary(max_size=200)
        | st.builds(lambda v, n: json.dumps(v).encode()[:n], mutated(base), st.integers(0, 400))
        | st.just(b"[" * 200_000)  # nesting deep enough to break a recursive parser
        | st.just(b"{" + b'"a":' * 100_000 + b"1}")
        | st.just(b"<html><body>502 Bad Gateway</body></html>")
        | st.just(b"\xff\xfe\x00garbage")
        | st.just(b"")
    )
    echo = st.builds(
        lambda v: json.dumps({"error": f"bad token {TOKEN}", "echo": v}).encode(), json_values
    ) | st.builds(
        lambda: json.dumps(
            {**ERROR, "errors": [{"code": 16, "message": f"invalid token Bearer {TOKEN}"}]}
        ).encode()
    )
    errors = st.builds(lambda v: json.dumps(v).encode(), mutated(ERROR))
    return st.builds(Body, as_json | invalid | echo | errors)


statuses = st.sampled_from(
    [200, 201, 202, 204, 301, 304, 400, 401, 403, 404, 409, 418, 422, 429, 500, 502, 503, 599]
)
header_values = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=20
) | st.sampled_from(["-1", "0", "1e309", "NaN", "999999999999", "Wed, 21 Oct 2015 07:28:00 GMT"])


@st.composite
def responses(draw: st.DrawFn) -> tuple[str, int, Body, dict[str, str]]:
    name = draw(st.sampled_from(sorted(CALLS)))
    base = CALLS[name][1]
    headers = {"content-type": draw(st.sampled_from(["application/json", "text/html", ""]))}
    if draw(st.booleans()):
        headers["retry-after"] = draw(header_values)
    if draw(st.booleans()):
        headers["etag"] = draw(header_values)
    return name, draw(statuses), draw(bodies(base)), headers


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> AkuaClient:
    config = ClientConfig(base_url=BASE, max_retries=0, rate=0, timeout=5)
    return AkuaClient(config, transport=httpx.MockTransport(handler))


def _exception_text(err: BaseException) -> str:
    return "".join(traceback.format_exception(err)) + repr(err) + str(vars(err))


def test_any_malformed_response_gives_a_typed_error_without_the_token(scale: Scale) -> None:
    seen_error_types: set[str] = set()

    @settings(
        max_examples=scale.examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=True,
    )
    @given(responses())
    def check(case: tuple[str, int, Body, dict[str, str]]) -> None:
        name, status, body, headers = case
        call = CALLS[name][0]

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(status, content=bytes(body), headers=headers)

        async def run() -> None:
            async with _client(handler) as client:
                try:
                    await call(client, Credentials(token=TOKEN))  # type: ignore[arg-type]
                except AkuaError as err:
                    seen_error_types.add(type(err).__name__)
                    assert TOKEN not in _exception_text(err), _exception_text(err)[:2000]
                    assert len(str(err)) < 4096, "error messages are cut to a safe length"

        asyncio.run(run())

    check()
    print(f"error types raised: {sorted(seen_error_types)}")
    # The generator reached the parser, the HTTP error mapping and the transport paths alike.
    assert "AkuaResponseError" in seen_error_types, seen_error_types
    assert len(seen_error_types) >= 5, seen_error_types


def test_dropped_connections_and_timeouts_are_typed() -> None:
    failures = [
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset by peer"),
        httpx.ReadTimeout("timed out"),
        httpx.ConnectTimeout("timed out"),
        httpx.PoolTimeout("pool"),
        httpx.WriteError("broken pipe"),
    ]

    for failure in failures:
        for _name, (call, _) in sorted(CALLS.items()):

            def handler(request: httpx.Request, failure: Exception = failure) -> httpx.Response:
                raise failure

            async def run(call: Call = call) -> None:
                async with _client(handler) as client:
                    with pytest.raises(AkuaError) as info:
                        await call(client, Credentials(token=TOKEN))
                    assert TOKEN not in _exception_text(info.value)

            asyncio.run(run())


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    state=st.text(min_size=1, max_size=20).filter(
        lambda s: s not in {"pending", "provisioning", "active", "suspended", "deleting"}
    ),
    step_status=st.text(min_size=1, max_size=20).filter(
        lambda s: s not in {"pending", "running", "completed", "failed", "skipped"}
    ),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=10).filter(lambda k: k not in OPERATION and k not in CLUSTER),
        json_values,
        max_size=3,
    ),
)
def test_unknown_enum_values_and_extra_fields_are_kept(
    state: str, step_status: str, extra: dict[str, Any]
) -> None:
    """A value the API adds later degrades gracefully: kept, not a crash, not an error."""
    cluster = {**CLUSTER, "state": state, **extra}
    operation = {
        **OPERATION,
        **extra,
        "state": state,
        "steps": [{**STEP, "status": step_status, "execution_type": state}],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        body = cluster if "/clusters/" in request.url.path else operation
        return httpx.Response(200, json=body)

    async def run() -> tuple[Cluster, Operation]:
        async with _client(handler) as client:
            creds = Credentials(token=TOKEN)
            got_cluster = await client.get_cluster("clu_0123456789abcdef", creds=creds)
            got_op = await client.get_operation("op_0123456789abcdef", creds=creds)
            return got_cluster, got_op

    got_cluster, got_op = asyncio.run(run())
    assert str(got_cluster.state) == state
    assert str(got_op.state) == state
    assert [str(s.status) for s in got_op.steps] == [step_status]
    assert str(got_op.steps[0].execution_type) == state
