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

from akua_operator.sim.clock import Clock
from akua_operator.sim.config import PROFILES, SimConfig
from akua_operator.sim.server import SimServer
from simcheck import assert_no_violations


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


# The simulator profiles each module's tests run under (docs/testing.md, "Simulator profiles"):
# the deletion and lifecycle tests run against the default simulator and against "contract",
# every gap decision flipped to what the contract alone promises. A module not named here runs
# under "default" only.
PROFILES_BY_MODULE: dict[str, tuple[str, ...]] = {
    "test_deletion": ("default", "contract"),
    "test_lifecycle_e2e": ("default", "contract"),
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_profile" in metafunc.fixturenames:
        module = metafunc.module.__name__.rsplit(".", 1)[-1]
        metafunc.parametrize("sim_profile", PROFILES_BY_MODULE.get(module, ("default",)))


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(step_seconds=0.5)


def profiled(sim_config: SimConfig, profile: str) -> SimConfig:
    """``sim_config`` on top of the named profile: what the test set explicitly wins, every
    other setting comes from the profile; response validation always on. A test may not set
    back what the profile flips (it would run a kinder simulator under the profile's name)."""
    explicit = sim_config.model_dump(exclude_unset=True)
    if profile != "default":
        flipped = set(explicit) & set(PROFILES[profile].model_fields_set)
        assert not flipped, f"sim_config sets {sorted(flipped)}, which profile {profile} flips"
    return SimConfig.from_profile(profile, **explicit, validate_responses=True)


@pytest.fixture
def sim_clock() -> Clock | None:
    """The simulator's clock: None is the wall clock. A test that overrides it with a
    ``FakeClock`` moves the simulator's time itself (``POST /_sim/clock``); a ``:wait``
    long poll then advances it too (by the time it would have slept)."""
    return None


@pytest.fixture
def sim(sim_config: SimConfig, sim_profile: str, sim_clock: Clock | None) -> Iterator[Sim]:
    """The simulator under the test's profile (``sim_profile``: "default" or "contract"); it
    checks every response it sends against the contract, and the test fails (at teardown) if
    any broke it (tests/simcheck.py)."""
    with SimServer(profiled(sim_config, sim_profile), clock=sim_clock) as server:
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
