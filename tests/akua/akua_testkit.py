"""Shared pieces of the Akua client/simulator tests (imported by conftest and tests).

Every API response of the in-process simulator goes through ``ContractCheckingTransport``, which
validates its body against the response schema openapi.json gives for that path, method and
status (and its Retry-After/etag headers against the guide); so every simulator response a test
sees is checked against the contract.
"""

from __future__ import annotations

import random
from typing import Any

import akua_contract as contract
import httpx

from akua_operator.akua.client import AkuaClient, ClientConfig
from akua_operator.sim import FakeClock, SimApp, SimTransport

TOKEN = "sk_akua_test_0123456789secret"
BASE = "http://sim.test"


class ContractCheckingTransport(SimTransport):
    """SimTransport that checks every /v1 response against the contract and the guide (the
    simulator's own ``ResponseChecker``: body schema per path, method and status, the error
    envelope for undeclared errors, ``Retry-After`` and ``etag`` headers); a violation fails
    the test at once."""

    def __init__(self, sim: SimApp) -> None:
        super().__init__(sim)
        self.checked: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        body = await response.aread()
        path = request.url.path
        if path.startswith("/v1/"):
            api_path = path[len("/v1") :].replace("%3A", ":").replace("%3a", ":")
            checker = contract.checker()
            problems = checker.check(
                request.method, api_path, response.status_code, dict(response.headers), body
            )
            assert not problems, f"{request.method} {path} -> {response.status_code}: {problems}"
            template = checker.template(request.method, api_path)
            if template is None:
                assert response.status_code == 404, f"unknown route answered: {path}"
            else:
                self.checked.append((request.method, template, response.status_code))
        return httpx.Response(
            response.status_code, headers=response.headers, content=body, request=request
        )


class Sleeps:
    """A recording ``sleep`` for the client: no real waiting, advances the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)


def make_client(
    transport: httpx.AsyncBaseTransport,
    sleeps: Sleeps,
    **config: Any,
) -> AkuaClient:
    settings: dict[str, Any] = {"base_url": f"{BASE}/v1", "rate": 0, "max_retries": 3}
    settings.update(config)
    return AkuaClient(
        ClientConfig(**settings),
        transport=transport,
        sleep=sleeps,
        clock=sleeps.clock.now,
        rng=random.Random(3),
    )
