"""The operation tracker's planner (issue 12): which Akua call about which operation goes next.

Pure: given the time, what the tracker knows of every operation it follows and a view of the
Akua budget, :func:`plan` returns the calls to send now (and when to ask again). The I/O lives
in ``handlers/optracker.py``; docs/design.md ("The operation tracker") explains the modes.

- **The per-operation cap.** At most one Akua call per 5 s per running operation, every call
  counted, list sweeps shared out among the operations they were for. Each operation holds a
  *credit* that refills at one call per ``WINDOW`` seconds up to one call; a call about it
  (``:wait`` or a GET) needs a full credit and spends it, a sweep page spends
  ``1 / len(targets)`` of each target's credit (a sweep may leave a credit below zero: noticing
  completions comes first, and the next direct call then waits until it has refilled).
- **``:wait`` mode**, while the running operations R (within the horizon) are at most
  W = min(floor(0.5 * rate * WINDOW), long-poll slots): each loops on ``:wait?timeout=5``
  (10 s when the ``:wait`` answers carry no steps, with one step read in between).
- **Sweep mode**, when R > W, and while writes (DELETEs) wait for the budget and at least
  ``MIN_SWEEP_TARGETS`` young operations run: R ``:wait``s would each take a token ahead of the
  waiting DELETEs (completions come first), one sweep a second takes one for them all.
  Paged ``GET /operations`` newest first, stopping at the first item older than the oldest
  target, once every target is seen, at the last page or after ``max_pages`` pages; again
  every max(1 s, pages / 10 s).
- **Old operations** (started before ``now - horizon``: an approval pending for hours) are never
  sweep targets: each is followed on its own with ``:wait?timeout=60`` (a GET when no long-poll
  slot is free), once per 60 s.
- **Step reads** (``GET /operations/{id}``) with what is left: the operation whose steps are the
  stalest first, among those whose credit allows one more call, at most ``step_read_rate`` per
  second, and none while writes (DELETEs) wait for the budget.
- **Ended operations.** A FAILED or CANCELLED operation whose steps the tracker has not read
  gets one GET (the core needs the failed step's ``retryable``); a SUCCEEDED one keeps the last
  steps read (one GET only when none ever were). A list item never carries steps: a missing
  ``steps`` never means "no steps".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "MIN_SWEEP_TARGETS",
    "WINDOW",
    "BudgetView",
    "OpView",
    "Plan",
    "PlanTuning",
    "Read",
    "Sweep",
    "SweepState",
    "Wait",
    "charge",
    "credit_of",
    "plan",
    "wait_capacity",
]

#: The cap's window: at most one call per operation per WINDOW seconds.
WINDOW = 5.0
#: Sweep instead of ``:wait``s while writes wait, from this many young operations on: one sweep
#: per ``min_sweep_interval`` (1 s) shared among them stays within one call per WINDOW each.
MIN_SWEEP_TARGETS = 5
#: Terminal states whose failed step the core needs (one GET when the steps are unknown).
NEEDS_STEPS_WHEN_ENDED = frozenset({"FAILED", "CANCELLED"})


@dataclass(frozen=True)
class PlanTuning:
    horizon: float = 600.0  # --sweep-horizon
    step_read_rate: float = 20.0  # --step-read-rate (per second)
    wait_timeout: int = 5  # :wait long poll of an operation in :wait mode
    old_interval: int = 60  # an old operation: one :wait?timeout=60 (or GET) per this long
    max_pages: int = 10
    page_size: int = 100
    min_sweep_interval: float = 1.0
    sweep_pages_per_second: float = 10.0


@dataclass(frozen=True)
class BudgetView:
    """What the Akua budget says: its rate (0: no limit), the long-poll slots free (not
    counting this tracker's own long polls in flight) and how many writes wait for it."""

    rate: float
    long_slots_free: int
    writes_waiting: int = 0


@dataclass(frozen=True)
class OpView:
    """The planner's view of one followed operation. Times are seconds on one clock (the
    tracker uses Unix time: ``started_at`` comes from Akua)."""

    id: str
    started_at: float
    done: bool = False
    state: str = "RUNNING"
    known: bool = False  # the tracker holds an answer about it (a GET, :wait or list item)
    steps_known: bool = False  # an answer with steps was read
    last_steps_at: float | None = None
    last_change: float = 0.0
    credit: float = 1.0  # see the module docstring (at credit_at)
    credit_at: float = 0.0
    waiting: bool = False  # a :wait about it is out
    reading: bool = False  # a GET about it is out
    last_call_at: float | None = None  # the last :wait or GET about it was sent
    needs_read: bool = False  # one GET due now (passed by a sweep unseen, or ended)


@dataclass(frozen=True)
class SweepState:
    in_flight: bool = False
    last_at: float | None = None  # when the last sweep ended
    last_pages: int = 0
    step_reads: tuple[float, ...] = ()  # when the step reads of the last second were sent
    # The last :wait answer carried steps (the API's README promises them: assumed until an
    # answer says otherwise).
    waits_carry_steps: bool = True


@dataclass(frozen=True)
class Sweep:
    """Page ``GET /operations?limit=page_size`` (newest first) for ``targets``; stop at the
    first item with ``started_at < oldest``, once every target is seen, at ``has_more=false``
    or after ``max_pages`` pages."""

    targets: frozenset[str]
    oldest: float
    max_pages: int
    page_size: int


@dataclass(frozen=True)
class Wait:
    """``POST /operations/{id}:wait?timeout=...``."""

    op: str
    timeout: int


@dataclass(frozen=True)
class Read:
    """``GET /operations/{id}``; ``step`` False: a completion read (an ended operation, a
    new one, one passed by a sweep unseen, an old one without a long-poll slot)."""

    op: str
    step: bool = False


Call = Sweep | Wait | Read


@dataclass(frozen=True)
class Plan:
    calls: tuple[Call, ...]
    wake_at: float | None  # ask again then at the latest (None: only on a change)
    mode: str = "wait"  # "wait" or "sweep"


@dataclass
class _Acc:
    calls: list[Call] = field(default_factory=list)
    wake: list[float] = field(default_factory=list)

    def at(self, when: float) -> None:
        self.wake.append(when)


def _busy(view: OpView) -> bool:
    return view.waiting or view.reading


def credit_of(view: OpView, now: float) -> float:
    """The operation's credit now (refilled at one call per WINDOW, at most one call)."""
    return min(1.0, view.credit + max(0.0, now - view.credit_at) / WINDOW)


def charge(view: OpView, now: float, cost: float) -> OpView:
    """``view`` after a call costing ``cost`` of its credit (1: a direct call)."""
    return replace(view, credit=credit_of(view, now) - cost, credit_at=now)


def _refilled_at(view: OpView, now: float) -> float:
    """When the credit is full again."""
    return now + max(0.0, 1.0 - credit_of(view, now)) * WINDOW


def wait_capacity(budget: BudgetView, own_waits: int) -> int:
    """W: how many operations may each hold a ``:wait`` (half the rate over the window, and
    the long-poll slots; no rate limit: the slots alone)."""
    slots = max(0, budget.long_slots_free) + own_waits
    if budget.rate <= 0:
        return slots
    return min(math.floor(0.5 * budget.rate * WINDOW), slots)


def _old(view: OpView, now: float, tuning: PlanTuning) -> bool:
    return view.started_at < now - tuning.horizon


def plan(
    now: float,
    ops: Iterable[OpView],
    budget: BudgetView,
    sweep: SweepState,
    tuning: PlanTuning | None = None,
) -> Plan:
    """The calls to send now; see the module docstring for the rules."""
    tuning = tuning or PlanTuning()
    views = list(ops)
    acc = _Acc()
    # An ended operation never gets a direct call but its one completion GET.
    running = [v for v in views if not v.done]
    young = [v for v in running if v.known and not _old(v, now, tuning)]
    own_waits = sum(1 for v in views if v.waiting)
    capacity = wait_capacity(budget, own_waits)
    # R counts the operations not read yet too (as far as is known, they run and are young):
    # otherwise the first ones read would each get a :wait before the mode is known.
    sweeping = len(young) + sum(1 for v in running if not v.known) > capacity
    if budget.writes_waiting > 0 and len(young) >= MIN_SWEEP_TARGETS:
        sweeping = True  # the DELETEs first: one sweep a second, not a :wait per operation
    long_free = max(0, budget.long_slots_free)

    # 1. One completion GET: a new operation (nothing known), one passed by a sweep unseen, an
    #    ended one whose failed step is needed. Never more than one call per 5 s while running.
    for v in views:
        if _busy(v) or not (v.needs_read or not v.known):
            continue
        if v.done or credit_of(v, now) >= 1.0:
            acc.calls.append(Read(v.id))
        else:
            acc.at(_refilled_at(v, now))

    # 2. Old operations: one :wait?timeout=60 (or a GET when no long slot is free) per 60 s.
    for v in running:
        if not v.known or not _old(v, now, tuning) or _busy(v) or v.needs_read:
            continue
        due = (v.last_call_at if v.last_call_at is not None else -math.inf) + tuning.old_interval
        if now < due:
            acc.at(due)
            continue
        if credit_of(v, now) < 1.0:
            acc.at(_refilled_at(v, now))
        elif long_free > 0:
            long_free -= 1
            acc.calls.append(Wait(v.id, tuning.old_interval))
        else:
            acc.calls.append(Read(v.id))

    # 3. Completions of the young running operations: :wait each, or sweep them all.
    step_candidates: list[OpView] = []
    if not sweeping:
        # never shorter than the cap's window: one :wait per 5 s must cover every moment
        timeout = max(tuning.wait_timeout, math.ceil(WINDOW))
        if not sweep.waits_carry_steps:
            timeout *= 2
        for v in young:
            if _busy(v) or v.needs_read:
                continue
            if credit_of(v, now) >= 1.0:
                if (
                    not sweep.waits_carry_steps
                    and budget.writes_waiting == 0
                    and (v.last_steps_at is None or v.last_steps_at <= now - 2 * WINDOW)
                ):
                    # no :wait in flight to read the steps beside (a :wait that came back
                    # early): the steps first, the next :wait once the credit is back
                    acc.calls.append(Read(v.id, step=True))
                else:
                    acc.calls.append(Wait(v.id, timeout))
            else:
                acc.at(_refilled_at(v, now))
        if not sweep.waits_carry_steps:
            # A :wait in flight (10 s) leaves room for one GET in between for the steps.
            step_candidates = [v for v in young if v.waiting and not v.reading]
    else:
        targets = [v for v in young if not v.needs_read]
        if targets and not sweep.in_flight:
            interval = max(
                tuning.min_sweep_interval, sweep.last_pages / tuning.sweep_pages_per_second
            )
            due = (sweep.last_at if sweep.last_at is not None else -math.inf) + interval
            if now >= due:
                acc.calls.append(
                    Sweep(
                        frozenset(v.id for v in targets),
                        min(v.started_at for v in targets),
                        tuning.max_pages,
                        tuning.page_size,
                    )
                )
            else:
                acc.at(due)
        step_candidates = [v for v in young if not _busy(v) and not v.needs_read]

    # 4. Step reads with what is left: the stalest steps first.
    if budget.writes_waiting == 0 and step_candidates:
        recent = [t for t in sweep.step_reads if t > now - 1.0]
        room = max(1, math.floor(tuning.step_read_rate)) - len(recent)
        if room <= 0 and recent:
            acc.at(min(recent) + 1.0)
        fresh_before = now - WINDOW
        stale = [
            v for v in step_candidates if v.last_steps_at is None or v.last_steps_at <= fresh_before
        ]
        stale.sort(key=lambda v: v.last_steps_at if v.last_steps_at is not None else -1.0)
        for v in stale:
            if credit_of(v, now) < 1.0:
                acc.at(_refilled_at(v, now))
                continue
            if room <= 0:
                break
            room -= 1
            acc.calls.append(Read(v.id, step=True))
        for v in step_candidates:
            if v.last_steps_at is not None and v.last_steps_at > fresh_before:
                acc.at(v.last_steps_at + WINDOW)
    return Plan(
        tuple(acc.calls), min(acc.wake) if acc.wake else None, "sweep" if sweeping else "wait"
    )


def sweep_done(
    seen: Sequence[str],
    targets: frozenset[str],
    *,
    oldest_reached: bool,
    has_more: bool,
    pages: int,
    max_pages: int,
) -> bool:
    """Whether a sweep stops after a page (the plan's stop rules)."""
    return oldest_reached or not has_more or pages >= max_pages or targets.issubset(seen)
