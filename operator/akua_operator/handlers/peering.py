"""Whether kopf peering has paused this replica, for the probes (``/readyz`` check ``peering``).

kopf keeps the pause in a toggle it does not expose; it logs each transition on the logger
``kopf._core.engines.peering`` (kopf 1.45: "Pausing operations in favour of ...", "Pausing all
operators, including self ..." on pause, "Resuming operations after the pause ..." on resume).
With a peering name kopf starts *paused* (one toggle per peering object: one cluster-wide, one
per watched namespace otherwise) until its first look at the peering object, and logs only
transitions. So counting the transitions from "all toggles on" gives the exact state.

:class:`PeeringWatch` is a filter on that logger: it counts the transitions and lets the records
through only at the level the logging configuration asked for (it lowers that logger to INFO
itself, so the transitions are seen even at ``--log-level WARNING``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

PEERING_LOGGER = "kopf._core.engines.peering"
_PAUSED = ("Pausing operations in favour of", "Pausing all operators")
_RESUMED = ("Resuming operations",)


class PeeringWatch(logging.Filter):
    """Follows the pause toggles of kopf peering from its log records."""

    def __init__(self, toggles: int, on_change: Callable[[bool], None], floor: int) -> None:
        super().__init__()
        self._toggles = max(1, toggles)
        self._paused = self._toggles  # kopf starts every peering toggle switched on
        self._on_change = on_change
        self._floor = floor
        on_change(True)

    @property
    def paused(self) -> bool:
        return self._paused > 0

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        before = self.paused
        if message.startswith(_PAUSED):
            self._paused = min(self._toggles, self._paused + 1)
        elif message.startswith(_RESUMED):
            self._paused = max(0, self._paused - 1)
        if self.paused != before:
            self._on_change(self.paused)
        return record.levelno >= self._floor


def watch_peering(toggles: int, on_change: Callable[[bool], None]) -> PeeringWatch:
    """Install a :class:`PeeringWatch` on kopf's peering logger (after logging is configured).

    ``toggles``: how many peering objects this replica takes part in (1 cluster-wide, the number
    of watched namespaces otherwise). ``on_change(paused)`` is called now (paused) and on every
    change.
    """
    logger = logging.getLogger(PEERING_LOGGER)
    for old in [f for f in logger.filters if isinstance(f, PeeringWatch)]:
        logger.removeFilter(old)
    floor = logger.getEffectiveLevel()
    watch = PeeringWatch(toggles, on_change, floor)
    if floor > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addFilter(watch)
    return watch
