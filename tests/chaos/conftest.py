"""The chaos suite: small scale in `make test`, full scale with `--chaos-full`.

    uv run --frozen --no-sync pytest tests/chaos                # small scale (part of make test)
    uv run --frozen --no-sync pytest tests/chaos --chaos-full   # full scale (issue 7's numbers)

Tests read their scale from the `scale` fixture; tests marked `chaos_full` only run with the flag
(they are deselected, not skipped, without it). AKUA_CHAOS_FULL=1 is the same as the flag.
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
