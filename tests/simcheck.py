"""Fail a test when the simulator answered something the contract (or the guide) does not allow.

A simulator started with ``validate_responses`` (``SimConfig(validate_responses=True)``,
``akua-sim --validate-responses``) checks every response it sends against openapi.json and
records the violations. Fixtures that run a simulator call ``assert_no_violations`` when the test
is done (or wrap the test in ``no_violations``)::

    with SimServer(config.model_copy(update={"validate_responses": True})) as server:
        yield server
        assert_no_violations(server)

``source`` is a ``SimServer``, a ``SimApp``, or anything with an ``admin_url`` (the ``/_sim``
prefix of a simulator in another process), or that prefix as a string.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from akua_operator.sim import SimApp
from akua_operator.sim.server import SimServer

__all__ = ["assert_no_violations", "no_violations", "violations"]


def _read(source: Any) -> tuple[bool, list[dict[str, Any]]]:
    if isinstance(source, SimServer):
        source = source.sim
    if isinstance(source, SimApp):
        return source.checker is not None, source.violations.read()
    admin = source if isinstance(source, str) else source.admin_url
    r = httpx.get(f"{admin.rstrip('/')}/violations", timeout=10)
    r.raise_for_status()
    body = r.json()
    return bool(body["validating"]), list(body["data"])


def violations(source: Any) -> list[dict[str, Any]]:
    """The responses the simulator recorded as breaking the contract or the guide."""
    return _read(source)[1]


def assert_no_violations(source: Any, *, require_validating: bool = True) -> None:
    """``pytest.fail`` listing every recorded violation; also when the simulator does not
    validate at all (unless ``require_validating`` is false), so a misconfigured fixture cannot
    pass silently."""
    validating, found = _read(source)
    if require_validating and not validating:
        pytest.fail("the simulator does not validate its responses (validate_responses is off)")
    if found:
        lines = [
            f"  #{v['seq']} {v['method']} {v['path']} -> {v['status']}: {'; '.join(v['problems'])}"
            for v in found[:20]
        ]
        more = f"\n  ... and {len(found) - 20} more" if len(found) > 20 else ""
        pytest.fail(
            f"the simulator sent {len(found)} response(s) that break the contract:\n"
            + "\n".join(lines)
            + more
        )


@contextmanager
def no_violations(source: Any) -> Iterator[None]:
    """Run the block, then ``assert_no_violations``."""
    yield
    assert_no_violations(source)
