"""A replica paused by kopf peering is a ready standby, and its probes say so.

kopf's own peering logic (``process_peering_event``, kopf 1.45) decides the pause from a peering
object's records; the operator learns the outcome through :mod:`akua_operator.handlers.peering`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits.aiotoggles import Toggle
from kopf._cogs.structs.references import Resource
from kopf._core.engines.peering import Identity, process_peering_event

from akua_operator.handlers.peering import PEERING_LOGGER, PeeringWatch, watch_peering
from akua_operator.telemetry.health import HealthThresholds, ProgressTracker

PEERING = "akua-operator"
RESOURCE = Resource("kopf.dev", "v1", "clusterkopfpeerings", namespaced=False)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def peering_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(PEERING_LOGGER)
    level, filters = logger.level, list(logger.filters)
    yield logger
    logger.setLevel(level)
    for f in list(logger.filters):
        if f not in filters:
            logger.removeFilter(f)


def kopf_settings(priority: int) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.peering.name = PEERING
    settings.peering.priority = priority
    settings.peering.mandatory = True
    return settings


def peers(**priorities: int) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).isoformat()
    return {
        "type": "MODIFIED",
        "object": {
            "metadata": {"name": PEERING},
            "status": {
                name: {"priority": p, "lifetime": 60, "lastseen": now}
                for name, p in priorities.items()
            },
        },
    }


async def see(toggle: Toggle, priority: int, event: dict[str, Any]) -> None:
    """One peering event through kopf's own decision (no API call: no dead peers, no sleep)."""
    pressure = asyncio.Event()
    pressure.set()
    await process_peering_event(
        raw_event=event,  # type: ignore[arg-type]
        namespace=None,
        resource=RESOURCE,
        identity=Identity("me"),
        settings=kopf_settings(priority),
        autoclean=False,
        stream_pressure=pressure,
        conflicts_found=toggle,
    )


async def test_standby_is_ready_and_shows_it_is_paused(peering_logger: logging.Logger) -> None:
    clock = Clock()
    tracker = ProgressTracker(HealthThresholds(watch_stall_after=60), clock=clock)
    tracker.mark_started()
    watch_peering(1, tracker.set_peering_paused)
    toggle = Toggle(True)  # kopf starts a mandatory peering paused

    assert tracker.readiness().checks["peering"]["paused"] is True  # before the first look

    await see(toggle, priority=5, event=peers(me=5, other=9))  # another replica leads
    assert toggle.is_on()
    ready = tracker.readiness()
    assert ready.ok
    assert ready.checks["peering"]["paused"] is True

    await see(toggle, priority=5, event=peers(me=5))  # the leader is gone: take over
    assert toggle.is_off()
    assert tracker.readiness().checks["peering"]["paused"] is False

    await see(toggle, priority=5, event=peers(me=5, newer=7))  # a higher one arrives: wait again
    assert toggle.is_on()
    assert tracker.readiness().checks["peering"]["paused"] is True
    assert tracker.readiness().ok


async def test_the_pause_is_seen_even_when_info_lines_are_not_logged(
    peering_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    peering_logger.setLevel(logging.WARNING)  # --log-level WARNING
    states: list[bool] = []
    watch_peering(1, states.append)
    toggle = Toggle(True)
    caplog.handler.setLevel(logging.DEBUG)  # catch whatever reaches the root handlers
    caplog.clear()
    await see(toggle, priority=5, event=peers(me=5))
    await see(toggle, priority=5, event=peers(me=5, other=9))
    assert states == [True, False, True]
    assert not [r for r in caplog.records if r.levelno < logging.WARNING]


def test_one_toggle_per_namespace_all_must_resume() -> None:
    states: list[bool] = []
    watch = PeeringWatch(2, states.append, logging.INFO)

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord(PEERING_LOGGER, logging.INFO, __file__, 1, message, None, None)

    watch.filter(record("Resuming operations after the pause. Conflicting operators ..."))
    assert watch.paused  # the other namespace's peering has not resumed yet
    watch.filter(record("Resuming operations after the pause. Conflicting operators ..."))
    assert not watch.paused
    watch.filter(record("Pausing operations in favour of [<Peer x: priority=9>]."))
    assert watch.paused
    assert states == [True, False, True]


def test_a_paused_replica_is_not_stalled_and_the_watch_rule_restarts_on_resume() -> None:
    clock = Clock()
    tracker = ProgressTracker(HealthThresholds(watch_stall_after=60), clock=clock)
    tracker.mark_started()
    tracker.set_active_resources(3)  # learnt while it was the active replica
    tracker.set_peering_paused(True)
    clock.now += 600
    live = tracker.liveness()
    assert live.ok
    assert live.checks["watch"]["state"] == "paused"
    tracker.set_peering_paused(False)
    clock.now += 30
    assert tracker.liveness().ok  # the stall clock starts at the resume
    clock.now += 31
    assert not tracker.liveness().ok
