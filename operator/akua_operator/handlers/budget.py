"""The deletion budget: at most N new Akua deletes per minute in this operator process.

A token bucket holding at most N tokens, refilled at N per minute (one every 60/N s): after a
quiet minute N deletes may start at once, then one every 60/N s. The core marks a DELETE that
starts a new delete attempt ``budgeted`` (resends, retries within an attempt and resources with
``akua.dev/approve-delete: "true"`` are not); the runtime takes a token for each budgeted DELETE
and, when none is left, decides again with ``DeleteDeferred`` (core/guards.py).

The budget lives in process memory: it is per operator process (with shards, per shard), and a
restarted operator starts with a full bucket. ``try_take`` is synchronous (no ``await`` between
the check and the take), so concurrent handlers on the event loop never overdraw it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class DeletionBudget:
    """A token bucket of ``per_minute`` tokens; ``per_minute <= 0`` turns it off."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = max(0, int(per_minute))
        self._clock = clock
        self._tokens = float(self.per_minute)
        self._last = clock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(float(self.per_minute), self._tokens + elapsed * self.per_minute / 60)

    def try_take(self) -> bool:
        """Take one token if there is one (always True when the budget is off)."""
        if not self.enabled:
            return True
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def retry_in(self) -> float:
        """Seconds until the next token (0 when one is free or the budget is off)."""
        if not self.enabled:
            return 0.0
        self._refill()
        if self._tokens >= 1.0:
            return 0.0
        return (1.0 - self._tokens) * 60 / self.per_minute
