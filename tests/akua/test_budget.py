"""The Akua budget (PriorityBudget) on a virtual clock: order, aging, slots, rate on the wire."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from akua_testkit import ContractCheckingTransport, Sleeps, make_client
from hypothesis import given, settings
from hypothesis import strategies as st

from akua_operator.akua.budget import Priority, PriorityBudget
from akua_operator.akua.client import Credentials
from akua_operator.akua.errors import AkuaNotFound
from akua_operator.telemetry.metrics import OperatorMetrics, client_stats_source

T = TypeVar("T")

C, W, S, O = Priority.COMPLETION, Priority.WRITE, Priority.STEP, Priority.OBSERVE  # noqa: E741


class VirtualTime:
    """A clock that moves only when every task is idle, to the earliest sleeper's wake-up time.

    So a task granted at virtual time t runs (and records ``now``) before the clock moves on.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._seq), future))
        await future

    async def idle(self) -> None:
        """Let every runnable task run (without moving the clock)."""
        for _ in range(50):
            await asyncio.sleep(0)

    async def run(self, main: Coroutine[Any, Any, T]) -> T:
        task = asyncio.ensure_future(main)
        stalled = 0
        for _ in range(100_000):
            await self.idle()
            if task.done():
                return task.result()
            if not self._sleepers:  # tasks still running their own idle(), or a deadlock
                stalled += 1
                assert stalled < 200, "deadlock: nothing runnable and nobody sleeping"
                continue
            stalled = 0
            when, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            if not future.cancelled():
                future.set_result(None)
        raise AssertionError("virtual run did not finish")


def make_budget(
    t: VirtualTime, rate: float = 0, burst: int = 2, slots: int = 1, **kw: Any
) -> PriorityBudget:
    return PriorityBudget(rate, burst, slots, clock=t.clock, sleep=t.sleep, **kw)


async def queue_up(
    t: VirtualTime, budget: PriorityBudget, order: list[str], who: list[tuple[str, Priority]]
) -> list[asyncio.Task[None]]:
    """Start one caller per ``who`` entry, in that order; each records its name when granted."""

    async def caller(name: str, priority: Priority) -> None:
        async with budget.grant(priority):
            order.append(name)

    tasks = []
    for name, priority in who:
        tasks.append(asyncio.ensure_future(caller(name, priority)))
        await t.idle()
    return tasks


def run_virtual(test: Callable[[VirtualTime], Awaitable[T]]) -> T:
    t = VirtualTime()

    async def main() -> T:
        return await t.run(test(t))  # type: ignore[arg-type]

    return asyncio.run(main())


async def test_classes_are_served_in_order_and_first_come_first_served_within_a_class() -> None:
    t = VirtualTime()
    budget = make_budget(t, slots=1)
    order: list[str] = []
    holder = await budget.acquire(W)  # the only slot is taken: everyone below waits
    assert holder == 0
    tasks = await queue_up(
        t, budget, order,
        [("o1", O), ("s1", S), ("w1", W), ("o2", O), ("c1", C), ("w2", W), ("c2", C), ("s2", S)],
    )  # fmt: skip
    assert order == []
    assert [budget.waiting(p) for p in (C, W, S, O)] == [2, 2, 2, 2]
    budget.release()
    await asyncio.gather(*tasks)
    assert order == ["c1", "c2", "w1", "w2", "s1", "s2", "o1", "o2"]
    assert [budget.waiting(p) for p in Priority] == [0, 0, 0, 0]
    assert budget.slots_free() == 1


@pytest.mark.parametrize(
    ("waited", "expected"),
    [
        (59.0, ["w", "s", "o"]),  # not yet promoted
        (61.0, ["w", "o", "s"]),  # OBSERVE -> STEP, ahead of the later STEP caller
        (121.0, ["o", "w", "s"]),  # two classes up: WRITE, and it came first
        (400.0, ["o", "w", "s"]),  # never above COMPLETION
    ],
)
def test_a_waiter_is_promoted_one_class_per_60_s_waited(waited: float, expected: list[str]) -> None:
    async def scenario(t: VirtualTime) -> list[str]:
        budget = make_budget(t, slots=1)
        order: list[str] = []
        await budget.acquire(C)
        tasks = await queue_up(t, budget, order, [("o", O)])
        await t.sleep(waited)
        tasks += await queue_up(t, budget, order, [("s", S), ("w", W)])
        budget.release()
        await asyncio.gather(*tasks)
        return order

    assert run_virtual(scenario) == expected


def test_observe_is_served_under_a_steady_stream_of_writes() -> None:
    """Aging: even when WRITE callers never stop coming, an OBSERVE caller gets through."""

    async def scenario(t: VirtualTime) -> float:
        budget = make_budget(t, rate=1, burst=2, slots=10)
        served_at: list[float] = []

        async def observe() -> None:
            async with budget.grant(O):
                served_at.append(t.now)

        async def write() -> None:
            async with budget.grant(W):
                pass

        writers = [asyncio.ensure_future(write()) for _ in range(3)]  # the bucket is empty now
        await t.idle()
        task = asyncio.ensure_future(observe())
        for _ in range(400):  # 2 WRITE callers a second at 1 token a second: WRITE never drains
            writers.append(asyncio.ensure_future(write()))
            writers.append(asyncio.ensure_future(write()))
            await t.sleep(1)
            if served_at:
                break
        await task
        for w in writers:
            w.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        return served_at[0]

    served = run_virtual(scenario)
    # promoted to WRITE after 120 s, where it is the oldest; COMPLETION after 180 s at the latest
    assert 120 <= served <= 182


async def test_slot_cap_and_long_poll_cap() -> None:
    t = VirtualTime()
    budget = make_budget(t, slots=4, long_reserve=2)
    assert budget.long_slots == 2
    await budget.acquire(C, long=True)
    await budget.acquire(C, long=True)
    assert budget.long_slots_free() == 0
    order: list[str] = []

    async def long_caller() -> None:
        async with budget.grant(C, long=True):
            order.append("long")
            await t.sleep(1)

    long_task = asyncio.ensure_future(long_caller())
    await t.idle()
    assert order == [] and budget.waiting(C) == 1
    # an ordinary call still finds a slot, even of a lower class than the waiting long poll
    await budget.acquire(O)
    assert budget.slots_free() == 1
    await budget.acquire(O)
    assert budget.slots_free() == 0
    # every slot is taken: an ordinary caller waits too
    short_task = asyncio.ensure_future(budget.acquire(S))
    await t.idle()
    assert not short_task.done()
    budget.release()  # an ordinary slot: the STEP caller gets it, the long poll still may not
    await t.idle()
    assert short_task.done() and order == []
    budget.release(long=True)  # a long slot
    await t.idle()
    assert order == ["long"]
    assert budget.long_slots_free() == 0
    long_task.cancel()
    await asyncio.gather(long_task, return_exceptions=True)
    assert budget.long_slots_free() == 1  # the cancelled holder gave its slot back


def test_long_polls_always_get_a_slot_when_the_pool_is_smaller_than_the_reserve() -> None:
    assert PriorityBudget(0, 1, 10, long_reserve=50).long_slots == 1
    assert PriorityBudget(0, 1, 200).long_slots == 150


async def test_a_cancelled_waiter_leaves_the_line() -> None:
    t = VirtualTime()
    budget = make_budget(t, slots=1)
    await budget.acquire(W)
    order: list[str] = []
    tasks = await queue_up(t, budget, order, [("c", C), ("o", O)])
    tasks[0].cancel()
    await t.idle()
    assert budget.waiting(C) == 0
    budget.release()
    await tasks[1]
    assert order == ["o"]
    assert budget.slots_free() == 1


async def test_rate_zero_never_waits_but_slots_still_apply() -> None:
    t = VirtualTime()
    budget = make_budget(t, rate=0, burst=1, slots=2)
    for _ in range(1000):
        async with budget.grant(O) as waited:
            assert waited == 0
    assert t.now == 0 and budget.total_wait_seconds == 0
    await budget.acquire(W)
    await budget.acquire(W)
    third = asyncio.ensure_future(budget.acquire(W))
    await t.idle()
    assert not third.done()
    budget.release()
    await t.idle()
    assert third.done()


def test_tokens_are_spaced_beyond_half_the_burst() -> None:
    async def scenario(t: VirtualTime) -> tuple[list[float], PriorityBudget]:
        budget = make_budget(t, rate=4, burst=4, slots=100)
        starts = []
        for _ in range(6):
            async with budget.grant(W):
                starts.append(t.now)
        return starts, budget

    starts, budget = run_virtual(scenario)
    # the client keeps half the configured burst (2), then one token every 1/rate seconds
    assert budget.burst == 2
    assert starts == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.75, 1.0])
    assert budget.wait_seconds[W] == pytest.approx(
        1.0
    )  # 4 callers one after the other, 0.25 s each
    assert budget.waits[W] == 4 and budget.grants[W] == 6


@settings(max_examples=60, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 20.0]),
    burst=st.integers(1, 12),
    slots=st.integers(1, 8),
    calls=st.lists(
        st.tuples(
            st.floats(0, 20),  # arrival
            st.sampled_from(list(Priority)),
            st.booleans(),  # long poll
            st.floats(0, 3),  # how long the call holds its slot
        ),
        min_size=1,
        max_size=60,
    ),
)
def test_no_window_grants_more_than_rate_times_window_plus_half_the_burst(
    rate: float,
    burst: int,
    slots: int,
    calls: list[tuple[float, Priority, bool, float]],
) -> None:
    async def scenario(t: VirtualTime) -> tuple[list[float], int]:
        budget = make_budget(t, rate=rate, burst=burst, slots=slots, long_reserve=slots // 2)
        granted: list[float] = []
        held = 0
        most = 0

        async def call(at: float, priority: Priority, long: bool, hold: float) -> None:
            nonlocal held, most
            await t.sleep(at)
            async with budget.grant(priority, long=long):
                granted.append(t.now)
                held += 1
                most = max(most, held)
                await t.sleep(hold)
                held -= 1

        await asyncio.gather(*(call(*c) for c in calls))
        return granted, most

    granted, most = run_virtual(scenario)
    bucket = max(1, burst // 2)
    assert len(granted) == len(calls)
    assert most <= slots
    granted.sort()
    for i, j in itertools.combinations(range(len(granted)), 2):
        window = granted[j] - granted[i]
        assert j - i + 1 <= rate * window + bucket + 1e-6


# --- the budget inside the client --------------------------------------------------------------


async def test_the_client_holds_a_slot_for_each_attempt_but_none_while_backing_off(
    sleeps: Sleeps, creds: Credentials
) -> None:
    free_while_sleeping: list[int] = []
    free_while_sending: list[int] = []
    answers = iter([503, 503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        free_while_sending.append(c.budget.slots_free())
        status = next(answers)
        if status != 200:
            return httpx.Response(status, json={"success": False, "errors": [], "result": {}})
        return httpx.Response(200, json={"data": [], "has_more": False, "next_cursor": None})

    async def sleep(seconds: float) -> None:
        free_while_sleeping.append(c.budget.slots_free())
        await sleeps(seconds)

    c = make_client(httpx.MockTransport(handler), sleeps, max_connections=3)
    c._sleep = sleep  # the client's backoff sleep
    async with c:
        await c.list_clusters(creds=creds)
    assert free_while_sending == [2, 2, 2]
    assert free_while_sleeping == [3, 3]
    assert c.budget.slots_free() == 3
    assert c.budget.grants[Priority.OBSERVE] == 3  # GET /clusters is routine observation


async def test_wait_calls_are_long_polls_of_the_completion_class(
    transport: ContractCheckingTransport, sleeps: Sleeps, creds: Credentials
) -> None:
    seen: list[tuple[int, int]] = []

    class Recording(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append((c.budget.slots_free(), c.budget.long_slots_free()))
            return await transport.handle_async_request(request)

    c = make_client(Recording(), sleeps, max_connections=60)
    async with c:
        with pytest.raises(AkuaNotFound):
            await c.wait_operation("op_missing", creds=creds, timeout=5)
        with pytest.raises(AkuaNotFound):
            await c.get_operation("op_missing", creds=creds)
    # the :wait held one of the 10 long slots (60 - the reserve of 50); the GET an ordinary one
    assert seen == [(59, 9), (59, 10)]
    assert c.budget.grants[Priority.COMPLETION] == 1 and c.budget.grants[Priority.STEP] == 1


async def test_budget_waits_per_class_reach_the_metrics(
    transport: ContractCheckingTransport, sleeps: Sleeps, creds: Credentials
) -> None:
    metrics = OperatorMetrics()
    async with make_client(transport, sleeps, rate=1.0, burst=2) as c:
        metrics.set_api_stats_source(client_stats_source(c.stats))
        await asyncio.gather(*(c.list_clusters(creds=creds) for _ in range(3)))
        text = metrics.exposition().decode()
    assert 'akua_operator_budget_wait_seconds_total{priority="observe"} 3.0' in text
    assert 'akua_operator_budget_wait_seconds_total{priority="completion"} 0.0' in text
    assert 'akua_operator_budget_waiting{priority="observe"} 0.0' in text
    assert "akua_operator_ratelimit_wait_seconds_total 3.0" in text
