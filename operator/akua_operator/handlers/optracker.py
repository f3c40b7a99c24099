"""The operation tracker (issue 12): one per Akua credentials key, shared by every resource.

It knows every operation the operator follows in one workspace, learns their completions in
bulk (``:wait`` long polls while the budget allows one per operation, paged ``GET /operations``
sweeps above that), reads step detail with whatever budget is left (the stalest first) and
wakes the handlers whose operation changed. What to call next is decided by the pure planner
(:mod:`akua_operator.core.tracking`); this module sends the calls and keeps the views.

Handlers never poll: ``await tracker.changed(op_id, seen_version, timeout)`` returns as soon as
the operation's version moves past ``seen_version`` (state, done, error, last_error or steps
changed, or a call about it failed for good), or when ``timeout`` passes.

The credentials key is ``(sha256(token)[:16], akua-context)``: the token itself is never
logged nor kept outside the :class:`Credentials` it came in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from akua_operator import telemetry
from akua_operator.akua.budget import Priority
from akua_operator.akua.client import AkuaClient, Credentials
from akua_operator.akua.errors import AkuaError, AkuaHTTPError
from akua_operator.akua.models import Operation
from akua_operator.core.tracking import (
    NEEDS_STEPS_WHEN_ENDED,
    BudgetView,
    OpView,
    PlanTuning,
    Read,
    Sweep,
    SweepState,
    Wait,
    charge,
    plan,
    sweep_done,
)

log = logging.getLogger("akua_operator.tracker")

__all__ = ["OperationTracker", "TrackerKey", "Trackers", "credentials_key"]

#: Errors about one operation that go back to the handler (the core decides on them); other
#: failures are retried by the tracker within the per-operation cap.
DELIVERED_STATUSES = frozenset({401, 403, 404})
#: An operation nobody follows any more is forgotten after this long (a handler's re-run
#: follows it again well within it, and finds its state and version).
LINGER_SECONDS = 60.0
#: ... and one still referenced that no handler asked about for this long (its resource went
#: away without saying so).
ABANDONED_SECONDS = 600.0
#: Longest sleep of the loop: the budget's view (writes waiting, long slots) is read again.
MAX_IDLE = 1.0
#: Long-poll slots kept for everything else when the client has no budget view.
RESERVED_SLOTS = 50

TrackerKey = tuple[str, str | None]


def credentials_key(creds: Credentials) -> TrackerKey:
    """``(sha256(token)[:16], akua-context)``: which tracker serves ``creds``."""
    digest = hashlib.sha256(creds.token.get_secret_value().encode()).hexdigest()[:16]
    return (digest, creds.context)


@dataclass
class _Tracked:
    view: OpView
    operation: Operation | None = None
    version: int = 0
    error: AkuaError | None = None
    ended: Operation | None = None  # an end heard of, not yet handed over (steps to read)
    parked: bool = False  # a 401/403/404 was delivered: no call until followed again
    refs: int = 0
    idle_since: float | None = None
    last_asked: float = 0.0
    event: asyncio.Event = field(default_factory=asyncio.Event)


def _signature(op: Operation) -> tuple[Any, ...]:
    return (
        op.state,
        op.done,
        op.error.model_dump() if op.error else None,
        op.last_error.model_dump() if op.last_error else None,
        tuple((s.name, s.status) for s in op.steps) if op.steps_reported else None,
    )


def _all_finished(op: Operation) -> bool:
    return all(str(s.status) in ("completed", "skipped") for s in op.steps)


def _transitions(old: Operation | None, new: Operation) -> int:
    if not new.steps_reported:
        return 0
    before = {s.name: s.status for s in old.steps} if old is not None else {}
    return sum(1 for s in new.steps if before.get(s.name) != s.status)


class OperationTracker:
    """Follows the operations of one credentials key; see the module docstring."""

    def __init__(
        self,
        client: AkuaClient,
        creds: Credentials,
        *,
        tuning: PlanTuning | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.creds = creds
        self.key = credentials_key(creds)
        self.tuning = tuning or PlanTuning()
        self._clock = clock
        self._ops: dict[str, _Tracked] = {}
        self._sweep = SweepState()
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._mode = "wait"  # of the last plan

    # --- what handlers call -------------------------------------------------------------------

    def follow(self, op_id: str, *, seed: Operation | None = None) -> None:
        """Follow ``op_id`` (refcounted; :meth:`unfollow` once per call). ``seed``: an answer
        about it already in hand (a DELETE's), which costs no call."""
        tracked = self._ops.get(op_id)
        if tracked is None:
            tracked = self._ops[op_id] = _Tracked(OpView(op_id, started_at=0.0))
            _metric("tracker_followed", 1)
        tracked.refs += 1
        tracked.idle_since = None
        tracked.last_asked = self._clock()
        if tracked.parked:
            tracked.parked = False
            tracked.error = None
            tracked.view = replace(tracked.view, known=False, needs_read=False)
        if seed is not None and seed.id == op_id and tracked.operation is None:
            self._merge(tracked, seed, listed=False)
        self._start()

    def unfollow(self, op_id: str) -> None:
        tracked = self._ops.get(op_id)
        if tracked is None or tracked.refs <= 0:
            return
        tracked.refs -= 1
        if tracked.refs == 0:
            tracked.idle_since = self._clock()

    def version(self, op_id: str) -> int:
        tracked = self._ops.get(op_id)
        return tracked.version if tracked is not None else 0

    def current(self, op_id: str) -> Operation | None:
        """What is known of ``op_id`` now (None: nothing yet, or a call about it failed)."""
        tracked = self._ops.get(op_id)
        if tracked is None or tracked.error is not None:
            return None
        return tracked.operation

    async def changed(
        self,
        op_id: str,
        seen: int,
        timeout: float,  # noqa: ASYNC109 - a bounded wait is the point
    ) -> tuple[Operation | AkuaError | None, int]:
        """Wait until the version of ``op_id`` passes ``seen`` (at most ``timeout`` s) and
        return what is known of it then with its version: the operation, or the error a call
        about it got (401/403/404), or None when nothing is known yet. A version equal to
        ``seen``: nothing changed in time (or the tracker stopped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while True:
            tracked = self._ops.get(op_id)
            if tracked is None:
                return None, seen
            tracked.last_asked = self._clock()
            if tracked.version > seen or self._stopped:
                return (tracked.error or tracked.operation), tracked.version
            remaining = deadline - loop.time()
            if remaining <= 0:
                return (tracked.error or tracked.operation), tracked.version
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracked.event.wait(), remaining)

    async def stop(self) -> None:
        """Cancel the loop and every call in flight; wake every waiter."""
        self._stopped = True
        tasks = [t for t in (self._loop, *self._calls) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for tracked in self._ops.values():
            tracked.event.set()
        _metric("tracker_followed", -len(self._ops))
        self._ops.clear()

    @property
    def followed(self) -> int:
        return len(self._ops)

    # --- the loop ---------------------------------------------------------------------------

    def _start(self) -> None:
        self._wake.set()
        if self._stopped or (self._loop is not None and not self._loop.done()):
            return
        self._loop = asyncio.get_running_loop().create_task(
            self._run(), name=f"akua-operation-tracker-{self.key[0][:6]}"
        )

    async def _run(self) -> None:
        while not self._stopped:
            now = self._clock()
            self._expire(now)
            if not self._ops:
                return  # started again by the next follow()
            views = [t.view for t in self._ops.values() if not t.parked]
            p = plan(now, views, self._budget_view(), self._sweep, self.tuning)
            self._mode = p.mode
            for call in p.calls:
                self._send(call, now)
            if p.calls:
                continue
            self._wake.clear()
            timeout = MAX_IDLE if p.wake_at is None else min(MAX_IDLE, p.wake_at - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.001, timeout))

    def _expire(self, now: float) -> None:
        for op_id, tracked in list(self._ops.items()):
            if (
                tracked.refs == 0
                and tracked.idle_since is not None
                and now - tracked.idle_since >= LINGER_SECONDS
            ) or now - tracked.last_asked >= ABANDONED_SECONDS:
                del self._ops[op_id]
                _metric("tracker_followed", -1)

    def _budget_view(self) -> BudgetView:
        own_waits = sum(1 for t in self._ops.values() if t.view.waiting)
        budget = getattr(self.client, "budget", None)
        if budget is not None:
            try:
                return BudgetView(
                    rate=float(budget.rate),
                    long_slots_free=int(budget.long_slots_free()),
                    writes_waiting=int(budget.waiting(Priority.WRITE)),
                )
            except Exception:  # an older budget: fall back to the config
                log.debug("budget view unavailable", exc_info=True)
        config = self.client.config
        slots = max(0, config.max_connections - RESERVED_SLOTS - own_waits)
        return BudgetView(rate=max(0.0, config.rate), long_slots_free=slots)

    def _send(self, call: Read | Wait | Sweep, now: float) -> None:
        if isinstance(call, Sweep):
            self._sweep = replace(self._sweep, in_flight=True)
            coro = self._do_sweep(call)
        else:
            tracked = self._ops[call.op]
            view = replace(charge(tracked.view, now, 1.0), last_call_at=now)
            if isinstance(call, Wait):
                tracked.view = replace(view, waiting=True)
                coro = self._do_wait(call)
            else:
                tracked.view = replace(view, reading=True, needs_read=False)
                if call.step:
                    recent = tuple(t for t in self._sweep.step_reads if t > now - 1.0)
                    self._sweep = replace(self._sweep, step_reads=(*recent, now))
                coro = self._do_read(call)
        task = asyncio.get_running_loop().create_task(coro)
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    # --- the calls --------------------------------------------------------------------------

    def _settled(self, op_id: str, *, waiting: bool = True, reading: bool = True) -> None:
        """A call about ``op_id`` came back, whatever it answered: clear its in-flight flag
        (``waiting=False`` or ``reading=False``; the other stays as it is) and plan again."""
        tracked = self._ops.get(op_id)
        if tracked is not None:
            view = tracked.view
            tracked.view = replace(
                view, waiting=view.waiting and waiting, reading=view.reading and reading
            )
        self._wake.set()

    async def _do_wait(self, call: Wait) -> None:
        _metric("tracker_wait")
        try:
            op = await self.client.wait_operation(
                call.op, creds=self.creds, timeout=call.timeout, priority=Priority.COMPLETION
            )
        except Exception as exc:  # noqa: BLE001 - every failure is the operation's or retried
            self._failed(call.op, exc)
        else:
            self._sweep = replace(self._sweep, waits_carry_steps=op.steps_reported)
            tracked = self._ops.get(call.op)
            if tracked is not None:
                self._merge(tracked, op, listed=False)
        finally:
            self._settled(call.op, waiting=False)

    async def _do_read(self, call: Read) -> None:
        if call.step:
            _metric("tracker_step_read")
        tracked = self._ops.get(call.op)
        ended = tracked is not None and tracked.view.done
        priority = Priority.STEP if call.step else Priority.COMPLETION
        try:
            op = await self.client.get_operation(call.op, creds=self.creds, priority=priority)
        except Exception as exc:  # noqa: BLE001
            if (
                ended
                and tracked is not None
                and tracked.ended is not None
                and isinstance(exc, AkuaHTTPError)
                and exc.status == 404
            ):
                # the ended operation's steps cannot be read: hand it over as it is
                self._bump(tracked, tracked.ended)
                return
            self._failed(call.op, exc)
        else:
            tracked = self._ops.get(call.op)
            if tracked is not None:
                self._merge(tracked, op, listed=False)
        finally:
            self._settled(call.op, reading=False)

    async def _do_sweep(self, call: Sweep) -> None:
        seen: set[str] = set()
        pages = 0
        complete = False
        try:
            cursor: str | None = None
            while True:
                page = await self.client.list_operations(
                    creds=self.creds,
                    priority=Priority.COMPLETION,
                    limit=call.page_size,
                    cursor=cursor,
                )
                pages += 1
                oldest_reached = False
                for item in page.data:
                    if item.started_at < call.oldest:
                        oldest_reached = True
                        break
                    seen.add(item.id)
                    tracked = self._ops.get(item.id)
                    if tracked is not None and not tracked.parked:
                        self._merge(tracked, item, listed=True)
                complete = oldest_reached or not page.has_more or page.next_cursor is None
                if complete or sweep_done(
                    list(seen),
                    call.targets,
                    oldest_reached=oldest_reached,
                    has_more=page.has_more,
                    pages=pages,
                    max_pages=call.max_pages,
                ):
                    break
                cursor = page.next_cursor
        except Exception as exc:  # noqa: BLE001 - the next sweep tries again
            log.info("operation sweep failed: %s", _describe(exc))
        finally:
            now = self._clock()
            share = max(1, pages) / max(1, len(call.targets))
            for op_id in call.targets:
                tracked = self._ops.get(op_id)
                if tracked is None:
                    continue
                view = charge(tracked.view, now, share)
                if complete and op_id not in seen and not view.done:
                    view = replace(view, needs_read=True)  # passed by the sweep unseen
                tracked.view = view
            self._sweep = replace(self._sweep, in_flight=False, last_at=now, last_pages=pages)
            _metric("tracker_sweep", pages)
            self._wake.set()

    # --- merging answers --------------------------------------------------------------------

    def _merge(self, tracked: _Tracked, op: Operation, *, listed: bool) -> None:
        """Take an answer about the operation in. A list item (``listed``) or an answer
        without ``steps`` says nothing about the steps: the last ones read are kept."""
        now = self._clock()
        old = tracked.operation
        view = tracked.view
        if view.done and old is not None and old.done and not op.steps_reported:
            return  # finished operations never change; this answer adds nothing
        if listed and not op.done and view.known:
            return  # a running item says nothing a :wait or GET has not (and may lag)
        view = replace(
            view,
            started_at=float(op.started_at),
            known=True,
            done=op.done,
            state=str(op.state),
        )
        if op.steps_reported:
            merged = op
            view = replace(view, steps_known=True, last_steps_at=now)
        elif old is not None and old.steps_reported:
            merged = op.model_copy(update={"steps": old.steps})
        else:
            merged = op
        if (
            op.done
            and not op.steps_reported
            and (
                str(op.state) in NEEDS_STEPS_WHEN_ENDED
                or not view.steps_known
                or (self._mode == "wait" and not _all_finished(merged))
            )
        ):
            # FAILED/CANCELLED: the core needs the failed step (retryable); any other end
            # whose steps were never read, or (while the budget allows a :wait per operation)
            # whose last steps read are not all finished: one GET before the handler hears of
            # it. In sweep mode a SUCCEEDED operation keeps the last steps read: a GET per
            # completion would cost as much budget as the DELETEs.
            tracked.view = replace(view, needs_read=True)
            tracked.ended = merged
            return
        tracked.view = replace(view, needs_read=False)
        self._bump(tracked, merged)

    def _bump(self, tracked: _Tracked, op: Operation) -> None:
        old = tracked.operation
        tracked.error = None
        tracked.ended = None
        tracked.operation = op
        if old is not None and tracked.version > 0 and _signature(old) == _signature(op):
            return
        _metric("tracker_step_transitions_inc", _transitions(old, op))
        tracked.version += 1
        tracked.view = replace(tracked.view, last_change=self._clock())
        tracked.event.set()
        tracked.event = asyncio.Event()

    def _failed(self, op_id: str, exc: BaseException) -> None:
        tracked = self._ops.get(op_id)
        if tracked is None:
            return
        if isinstance(exc, AkuaHTTPError) and exc.status in DELIVERED_STATUSES:
            tracked.parked = True
            tracked.error = exc
            tracked.version += 1
            tracked.event.set()
            tracked.event = asyncio.Event()
            return
        if isinstance(exc, AkuaError) and not tracked.view.known:
            # nothing known yet: the handler decides on the failure (backoff, API errors)
            tracked.error = exc
            tracked.version += 1
            tracked.event.set()
            tracked.event = asyncio.Event()
            tracked.view = replace(tracked.view, needs_read=False)
            return
        if tracked.view.done:
            tracked.view = replace(tracked.view, needs_read=True)  # its one GET, again
        log.info("call about operation %s failed: %s", op_id, _describe(exc))


class Trackers:
    """The operation trackers of one process, by credentials key (``Runtime.trackers``)."""

    def __init__(self, client: AkuaClient, tuning: PlanTuning) -> None:
        self.client = client
        self.tuning = tuning
        self._by_key: dict[TrackerKey, OperationTracker] = {}

    def get(self, creds: Credentials) -> OperationTracker:
        key = credentials_key(creds)
        tracker = self._by_key.get(key)
        if tracker is None:
            tracker = self._by_key[key] = OperationTracker(self.client, creds, tuning=self.tuning)
        return tracker

    def __iter__(self) -> Any:
        return iter(list(self._by_key.values()))

    async def stop(self) -> None:
        for tracker in list(self._by_key.values()):
            await tracker.stop()
        self._by_key.clear()


def _describe(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    return f"{type(exc).__name__}{f' {status}' if status else ''}"


def _metric(name: str, *args: int) -> None:
    try:
        getattr(telemetry.current().metrics, name)(*args)
    except Exception:  # metrics never break following
        log.debug("telemetry failed", exc_info=True)
