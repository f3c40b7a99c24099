"""The Akua request budget's priority classes (issue 12).

Every call the client sends belongs to one class; when the rate limit leaves less than every
caller wants, a higher class is served first (first come, first served within a class):

- ``COMPLETION``: noticing that an operation ended (``GET /operations`` sweeps, ``:wait``, the
  read of an ended operation's steps). A finished deletion is released only once it is noticed,
  so nothing else may delay it.
- ``WRITE``: DELETE and every other mutation (and the reads a mutation's decision needs):
  starting a deletion early shortens the whole wave.
- ``STEP``: reading a running operation's steps (``GET /operations/{id}``) to mirror them.
- ``OBSERVE``: routine observation of healthy clusters (``GET /clusters`` list sweeps and the
  per-object reads the list does not answer).

``default_priority`` is the class of an endpoint when the caller does not name one.

:class:`PriorityBudget` is the shared budget itself: it grants a connection slot and a rate
token together, in class order (see its docstring).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = ["AGING_SECONDS", "LONG_POLL_RESERVE", "Priority", "PriorityBudget", "default_priority"]

#: A waiter is promoted one class for every this many seconds it has waited.
AGING_SECONDS = 60.0
#: Connection slots long polls (``:wait``) may never take, so ordinary calls always find one.
LONG_POLL_RESERVE = 50


class Priority(IntEnum):
    """Lower value = served first."""

    COMPLETION = 0
    WRITE = 1
    STEP = 2
    OBSERVE = 3


def default_priority(method: str, template: str) -> Priority:
    """The class of ``method template`` (e.g. ``"GET", "/clusters/{id}"``) when not named."""
    if template.endswith(":wait") or (method == "GET" and template == "/operations"):
        return Priority.COMPLETION
    if method == "GET" and template == "/operations/{id}":
        return Priority.STEP
    if method == "GET" and template.startswith("/clusters"):
        return Priority.OBSERVE
    if method == "GET":
        return Priority.WRITE  # /workspaces and other reads a decision waits for
    return Priority.WRITE


@dataclass(eq=False)
class _Waiter:
    priority: Priority
    long: bool
    since: float
    seq: int
    future: asyncio.Future[None] = field(repr=False)
    gone: bool = False  # cancelled while waiting; skipped (lazy removal)


class PriorityBudget:
    """The Akua budget of one client: a connection slot and a rate token, granted together.

    ``async with budget.grant(priority, long=False):`` waits until both a connection slot and a
    token are free and this caller is the first in line, then holds the slot until the block ends.

    * **Order.** :class:`Priority` classes (``COMPLETION`` first, ``OBSERVE`` last), first come
      first served within a class. A waiter is promoted one class for every ``aging`` seconds
      (60) it has waited, so a low class is delayed under load but never starved forever; a
      promoted waiter keeps its place by arrival time within the class it reached.
    * **Slot and token together.** ``slots`` is the HTTP client's connection limit
      (``ClientConfig.max_connections``). The token is taken only once a slot is held, so a
      granted request goes to the wire at once and never waits in httpx's pool: the rate limit
      holds on the wire, not at a queue in front of the pool (a token taken before the slot lets
      calls pile up behind the pool and reach the server bunched).
    * **Long polls** (``long=True``, the ``:wait`` calls that hold a connection for seconds) may
      hold at most ``slots - long_reserve`` slots (at least one), so ordinary calls always find
      a slot.
    * **Headroom.** Tokens come at ``rate`` per second, but the bucket holds at most
      ``max(1, burst // 2)`` of them, not ``burst``. The server (in the benchmark, the
      simulator) limits at the same ``--api-rate``/``--api-burst``, and a 429 there is a miss.
      Requests reach the server with some jitter (connection set-up, scheduling, retries of
      other processes' calls); a client bucket as deep as the server's would arrive with the
      server's bucket empty whenever the jitter bunches calls. Half the burst leaves
      ``(burst - burst // 2) / rate`` seconds of jitter (1 s at the defaults 20/s, 40) room in
      the server's bucket, at the cost of that much wall time on a long wave of calls.
    * ``rate <= 0`` disables the rate part; slots still apply.

    The ``clock`` and ``sleep`` are injectable (tests use a fake clock). Not thread-safe: one
    event loop.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        slots: int,
        *,
        long_reserve: int = LONG_POLL_RESERVE,
        aging: float = AGING_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._rate = float(rate)
        self.burst = max(1, int(burst) // 2)  # the client's bucket: half the server's
        self.slots = max(1, int(slots))
        self.long_slots = max(1, self.slots - max(0, int(long_reserve)))
        self.aging = float(aging)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._updated = clock()
        self._used = 0
        self._long_used = 0
        self._seq = 0
        self._queues: dict[tuple[Priority, bool], deque[_Waiter]] = {
            (p, long): deque() for p in Priority for long in (False, True)
        }
        self._waiting = dict.fromkeys(Priority, 0)
        self._timer: asyncio.Task[None] | None = None
        #: Seconds waited for a grant, summed per class (the class asked for, before aging).
        self.wait_seconds = dict.fromkeys(Priority, 0.0)
        #: Grants that had to wait (any time at all), per class.
        self.waits = dict.fromkeys(Priority, 0)
        #: Grants, per class.
        self.grants = dict.fromkeys(Priority, 0)

    # --- read-only view -------------------------------------------------------------------

    @property
    def rate(self) -> float:
        """Tokens per second (``<= 0``: no rate limit)."""
        return self._rate

    @property
    def enabled(self) -> bool:
        """Whether the rate part applies."""
        return self._rate > 0

    @property
    def total_wait_seconds(self) -> float:
        return sum(self.wait_seconds.values())

    def waiting(self, priority: Priority) -> int:
        """Callers of ``priority`` (the class they asked for) waiting for a grant now."""
        return self._waiting[priority]

    def slots_free(self) -> int:
        return max(0, self.slots - self._used)

    def long_slots_free(self) -> int:
        """Slots a long poll could take now (the long-poll cap and the free slots both count)."""
        return max(0, min(self.long_slots - self._long_used, self.slots - self._used))

    # --- granting ---------------------------------------------------------------------------

    @asynccontextmanager
    async def grant(self, priority: Priority, *, long: bool = False) -> AsyncIterator[float]:
        """Hold a slot (and spend a token) for the block; yields the seconds waited."""
        waited = await self.acquire(priority, long=long)
        try:
            yield waited
        finally:
            self.release(long=long)

    async def acquire(self, priority: Priority, *, long: bool = False) -> float:
        """Wait for a slot and a token; returns the seconds waited. Pair with ``release``."""
        priority = Priority(priority)
        now = self._clock()
        self._seq += 1
        waiter = _Waiter(priority, long, now, self._seq, asyncio.get_running_loop().create_future())
        self._queues[(priority, long)].append(waiter)
        self._waiting[priority] += 1
        self._dispatch(now)
        if waiter.future.done():
            return 0.0  # granted at once
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(long=long)  # granted just as the caller was cancelled
            elif not waiter.gone:
                waiter.gone = True
                self._waiting[priority] -= 1
                self._dispatch()  # a cancelled head may have blocked others
            raise
        return max(0.0, self._clock() - now)

    def release(self, *, long: bool = False) -> None:
        """Give back a slot taken by ``acquire``."""
        self._used = max(0, self._used - 1)
        if long:
            self._long_used = max(0, self._long_used - 1)
        self._dispatch()

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self._rate)

    def _head(self, key: tuple[Priority, bool]) -> _Waiter | None:
        queue = self._queues[key]
        while queue and queue[0].gone:
            queue.popleft()
        return queue[0] if queue else None

    def _best(self, now: float) -> _Waiter | None:
        """The first waiter in line whose slot is free now (``None`` when there is none)."""
        if self._used >= self.slots:
            return None
        long_ok = self._long_used < self.long_slots
        best: _Waiter | None = None
        best_key: tuple[int, int] = (0, 0)
        for key in self._queues:
            if key[1] and not long_ok:
                continue
            head = self._head(key)
            if head is None:
                continue
            promoted = int(max(0.0, now - head.since) // self.aging) if self.aging > 0 else 0
            rank = (max(0, int(head.priority) - promoted), head.seq)
            if best is None or rank < best_key:
                best, best_key = head, rank
        return best

    def _dispatch(self, now: float | None = None) -> None:
        """Grant what can be granted now, in line order (``now``: the caller's clock reading)."""
        while True:
            now = self._clock() if now is None else now
            waiter = self._best(now)
            if waiter is None:
                return
            if self._rate > 0:
                self._refill(now)
                if self._tokens < 1.0 - 1e-9:
                    self._arm_timer((1.0 - self._tokens) / self._rate)
                    return
                self._tokens = max(0.0, self._tokens - 1.0)
            self._queues[(waiter.priority, waiter.long)].popleft()
            self._waiting[waiter.priority] -= 1
            self._used += 1
            if waiter.long:
                self._long_used += 1
            waited = max(0.0, now - waiter.since)
            self.grants[waiter.priority] += 1
            if waited > 0:
                self.wait_seconds[waiter.priority] += waited
                self.waits[waiter.priority] += 1
            waiter.future.set_result(None)

    def _arm_timer(self, delay: float) -> None:
        if self._timer is not None and not self._timer.done():
            return
        self._timer = asyncio.get_running_loop().create_task(self._tick(delay))

    async def _tick(self, delay: float) -> None:
        await self._sleep(delay)
        self._timer = None
        self._dispatch()
