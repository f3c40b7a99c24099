"""A token bucket shared by every call of one client (and so by every resource)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows ``rate`` requests per second on average and bursts of up to ``burst``.

    ``acquire`` waits (without blocking the event loop) until a token is free and returns the
    seconds it waited. A ``rate`` of 0 or less disables the limit. Callers are served in order.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._updated = clock()
        self._lock = asyncio.Lock()
        self.total_wait_seconds = 0.0
        self.waits = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)

    async def acquire(self) -> float:
        """Take one token, waiting for it if needed; returns the seconds waited."""
        if not self.enabled:
            return 0.0
        waited = 0.0
        async with self._lock:
            self._refill()
            while self._tokens < 1.0:
                delay = (1.0 - self._tokens) / self.rate
                await self._sleep(delay)
                waited += delay
                self._refill()
            self._tokens -= 1.0
        if waited > 0:
            self.total_wait_seconds += waited
            self.waits += 1
        return waited
