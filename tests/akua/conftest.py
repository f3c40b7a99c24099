"""Fixtures for the Akua client and simulator tests (helpers live in akua_testkit.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from akua_testkit import BASE, TOKEN, ContractCheckingTransport, Sleeps, make_client
from pydantic import SecretStr

from akua_operator.akua.client import AkuaClient, Credentials
from akua_operator.sim import FakeClock, SimApp, SimConfig, SimTransport, create_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(tokens=[TOKEN], step_seconds=2.0, seed=7)


@pytest.fixture
def sim(sim_config: SimConfig, clock: FakeClock) -> SimApp:
    return create_app(sim_config, clock=clock)


@pytest.fixture
def transport(sim: SimApp) -> ContractCheckingTransport:
    return ContractCheckingTransport(sim)


@pytest.fixture
def creds() -> Credentials:
    return Credentials(SecretStr(TOKEN))


@pytest.fixture
def sleeps(clock: FakeClock) -> Sleeps:
    return Sleeps(clock)


@pytest.fixture
async def client(transport: ContractCheckingTransport, sleeps: Sleeps) -> AsyncIterator[AkuaClient]:
    async with make_client(transport, sleeps) as c:
        yield c


@pytest.fixture
async def api(transport: ContractCheckingTransport) -> AsyncIterator[httpx.AsyncClient]:
    """A raw HTTP client for the simulator's /v1 with the test token."""
    async with httpx.AsyncClient(
        transport=transport,
        base_url=f"{BASE}/v1",
        headers={"authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


@pytest.fixture
async def admin(sim: SimApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=SimTransport(sim), base_url=f"{BASE}/_sim") as c:
        yield c
