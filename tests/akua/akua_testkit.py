"""Shared pieces of the Akua client/simulator tests (imported by conftest and tests).

Every API response of the in-process simulator goes through ``ContractCheckingTransport``, which
validates its body against the response schema openapi.json gives for that path, method and
status; so every simulator response a test sees is checked against the contract.
"""

from __future__ import annotations

import random
import re
from typing import Any

import akua_contract as contract
import httpx

from akua_operator.akua.client import AkuaClient, ClientConfig
from akua_operator.sim import FakeClock, SimApp, SimTransport

TOKEN = "sk_akua_test_0123456789secret"
BASE = "http://sim.test"


def _templates() -> list[tuple[re.Pattern[str], str]]:
    out = []
    for template in contract.spec()["paths"]:
        if not (template.startswith(("/clusters", "/operations")) or template == "/workspaces"):
            continue
        pattern = re.escape(template).replace(re.escape("{id}"), "[^/:]+")
        out.append((re.compile(f"^/v1{pattern}$"), template))
    return out


class ContractCheckingTransport(SimTransport):
    """SimTransport that validates every /v1 response body against the contract."""

    def __init__(self, sim: SimApp) -> None:
        super().__init__(sim)
        self.templates = _templates()
        self.checked: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        body = await response.aread()
        path = request.url.path
        if path.startswith("/v1/"):
            method = request.method.lower()
            matches = [
                t
                for rx, t in self.templates
                if rx.match(path) and method in contract.spec()["paths"][t]
            ]
            if matches:
                template = matches[0]
                schema = contract.response_schema(template, request.method, response.status_code)
                data = httpx.Response(200, content=body).json()
                contract.validate(data, schema)
                self.checked.append((request.method, template, response.status_code))
            else:
                assert response.status_code == 404, f"unknown route answered: {path}"
                contract.validate(
                    httpx.Response(200, content=body).json(), contract.component("ApiErrorResponse")
                )
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
