"""The chaos suite: small scale in `make test`, full scale with `--chaos-full`.

    uv run --frozen --no-sync pytest tests/chaos                # small scale (part of make test)
    uv run --frozen --no-sync pytest tests/chaos --chaos-full   # full scale (issue 7's numbers)

Tests read their scale from the `scale` fixture; tests marked `chaos_full` only run with the flag
(they are deselected, not skipped, without it). AKUA_CHAOS_FULL=1 is the same as the flag; pytest
knows the flag only when tests/chaos is named on the command line (this conftest registers it),
so a whole-suite run at full scale is `AKUA_CHAOS_FULL=1 make test`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parents[1] / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from chaoskit import Scale  # noqa: E402  (tests/chaos, put on the path just above)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-full",
        action="store_true",
        default=False,
        help="run the chaos suite at full scale (50 deletions, many kills, more examples)",
    )


def full_scale(config: pytest.Config) -> bool:
    try:
        flag = bool(config.getoption("--chaos-full"))
    except ValueError:  # option not registered (conftest not an initial one)
        flag = False
    return flag or os.environ.get("AKUA_CHAOS_FULL") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if full_scale(config):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("chaos_full") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def scale(pytestconfig: pytest.Config) -> Scale:
    if full_scale(pytestconfig):
        return Scale(full=True, deletions=50, kills=15, examples=1500)
    return Scale(full=False, deletions=5, kills=3, examples=150)


# --------------------------------------------------------------------------- fixtures

import secrets  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

import harness  # noqa: E402  (bench/harness.py)
from akua_operator.sim.config import PROFILES  # noqa: E402
from simcheck import assert_no_violations  # noqa: E402  (tests/simcheck.py)


@pytest.fixture(scope="session")
def akua_crd(kube_client: Any) -> None:
    """The AkuaCluster CRD from the chart, applied once."""
    harness.apply_crd(kube_client)


@pytest.fixture
def token() -> str:
    """A fresh, recognisable Akua token per test (searched for in logs afterwards)."""
    return f"sk_akua_chaos_{secrets.token_hex(12)}"


# The simulator profiles the chaos tests run under (docs/testing.md, "Simulator profiles"):
# every test that runs a simulator runs against the default one and against "contract" (every
# gap decision flipped to what the contract alone promises).
SIM_PROFILES = ("default", "contract")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sim_profile" in metafunc.fixturenames:
        metafunc.parametrize("sim_profile", SIM_PROFILES)


@pytest.fixture
def sim(tmp_path: Path, token: str, sim_profile: str) -> Iterator[harness.SimProcess]:
    """The simulator in its own process under the test's profile (``sim_profile``); steps of
    0.5 s (a deletion takes 2 s). It checks every response it sends against the contract from
    its first one; the test fails (at teardown) if any broke it."""
    settings = {
        **PROFILES[sim_profile].model_dump(mode="json", exclude_unset=True),
        "validate_responses": True,
    }
    proc = harness.SimProcess(
        tmp_path / "sim", token=token, step_seconds=0.5, seed=7, config=settings
    )
    proc.start()
    try:
        admin = f"{proc.base}/_sim"
        shown = httpx.get(f"{admin}/config", timeout=30).json()
        assert all(shown[k] == v for k, v in settings.items()), f"not profile {sim_profile}"
        yield proc
        assert_no_violations(admin)
    finally:
        proc.stop()


@pytest.fixture
def operator_factory(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    control_plane: Any,
    namespace: str,
    token: str,
    akua_crd: None,
) -> Iterator[Callable[..., harness.ManagedOperator]]:
    """Builds `akua-operator run --namespace NS` subprocesses pointed at a given API URL."""
    made: list[harness.ManagedOperator] = []

    def make(api_url: str, *extra: str, kubeconfig: Path | None = None) -> harness.ManagedOperator:
        env = control_plane.env()
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        env["AKUA_API_URL"] = api_url
        env["AKUA_TOKEN"] = token
        op = harness.ManagedOperator(
            harness.operator_argv(namespace, extra), env, tmp_path / f"operator-{len(made)}.log"
        )
        made.append(op)
        return op

    yield make
    failed = getattr(request.node, "rep_call", None)
    for op in made:
        op.stop()
        if failed is not None and failed.failed:
            print(f"----- operator log {op.log_file} (tail) -----\n{op.log_text()[-6000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
