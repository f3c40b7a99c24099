"""Fixtures of the operator e2e tests: the simulator on loopback, the CRD, and the operator run
the way users run it (`akua-operator run --namespace NS` as a subprocess with KUBECONFIG,
AKUA_API_URL and AKUA_TOKEN)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import CRD, TOKEN, Operator, Sim

from akua_operator.sim.config import SimConfig
from akua_operator.sim.server import SimServer
from simcheck import assert_no_violations


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(step_seconds=0.5)


@pytest.fixture
def sim(sim_config: SimConfig) -> Iterator[Sim]:
    """The simulator; it checks every response it sends against the contract, and the test
    fails (at teardown) if any broke it (tests/simcheck.py)."""
    with SimServer(sim_config.model_copy(update={"validate_responses": True})) as server:
        s = Sim(server)
        yield s
        s.http.close()
        assert_no_violations(server)


@pytest.fixture(scope="session")
def crd(kubectl: Any) -> str:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kubectl("wait", "--for=condition=Established", "crd/akuaclusters.akua.dev", "--timeout=60s")
    return "akuaclusters.akua.dev"


@pytest.fixture
def operator_env(kube_env: dict[str, str], sim: Sim) -> dict[str, str]:
    env = dict(kube_env)
    env.update(
        {
            "AKUA_API_URL": sim.url,
            "AKUA_TOKEN": TOKEN,
            "AKUA_METRICS_PORT": "0",
            "AKUA_HEALTH_PORT": "0",
            "AKUA_WAIT_TIMEOUT": "1",
            "AKUA_OBSERVE_INTERVAL": "30",
            "AKUA_BACKOFF_BASE": "0.5",
            "AKUA_BACKOFF_CAP": "5",
            "AKUA_DELETE_RETRY_BASE": "1",
            "AKUA_CREDENTIALS_BACKOFF": "2",
            "AKUA_RETAIN_RECHECK": "1",
            "AKUA_LOG_LEVEL": "DEBUG",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("AKUA_TOKEN_FILE", None)
    return env


@pytest.fixture
def operator(
    operator_env: dict[str, str], namespace: str, crd: str, tmp_path: Path
) -> Iterator[Operator]:
    op = Operator(operator_env, namespace, tmp_path / "operator.log")
    yield op
    op.stop()
    if os.environ.get("AKUA_E2E_SHOW_LOGS"):
        print(op.logs())
