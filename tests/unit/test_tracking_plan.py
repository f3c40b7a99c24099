"""The operation tracker's planner (core/tracking.py) with a fake clock: which operation is
asked next, the switch to sweeps, the horizon, and the per-operation cap."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

import pytest

from akua_operator.core.tracking import (
    MIN_SWEEP_TARGETS,
    WINDOW,
    BudgetView,
    OpView,
    PlanTuning,
    Read,
    Sweep,
    SweepState,
    Wait,
    charge,
    plan,
    wait_capacity,
)

NOW = 1_000_000.0
BUDGET = BudgetView(rate=20.0, long_slots_free=150)


def op(i: int | str, started: float = NOW - 10, **kw: object) -> OpView:
    return OpView(id=f"op-{i}", started_at=started, known=True, **kw)  # type: ignore[arg-type]


def test_wait_capacity_is_half_the_rate_over_five_seconds_and_the_long_slots() -> None:
    assert wait_capacity(BudgetView(20, 150), 0) == 50
    assert wait_capacity(BudgetView(20, 10), 5) == 15
    assert wait_capacity(BudgetView(0, 150), 50) == 200  # no rate limit: the slots alone


def test_one_operation_loops_on_wait_with_timeout_5_when_waits_carry_steps() -> None:
    p = plan(NOW, [op(1)], BUDGET, SweepState(waits_carry_steps=True))
    assert p.calls == (Wait("op-1", 5),)
    assert p.mode == "wait"


def test_without_steps_in_waits_the_wait_lasts_10s_and_a_step_read_goes_in_between() -> None:
    no_steps = SweepState(waits_carry_steps=False)
    p = plan(NOW, [op(1, last_steps_at=NOW)], BUDGET, no_steps)
    assert p.calls == (Wait("op-1", 10),)
    waiting = replace(charge(op(1, last_steps_at=NOW), NOW, 1.0), waiting=True, last_call_at=NOW)
    assert plan(NOW + 1, [waiting], BUDGET, no_steps).calls == ()
    assert plan(NOW + 5, [waiting], BUDGET, no_steps).calls == (Read("op-1", step=True),)


def test_switch_to_sweeps_above_w() -> None:
    ops = [op(i) for i in range(50)]
    assert plan(NOW, ops, BUDGET, SweepState()).mode == "wait"
    ops.append(op(50, started=NOW - 30))
    p = plan(NOW, ops, BUDGET, SweepState())
    assert p.mode == "sweep"
    sweeps = [c for c in p.calls if isinstance(c, Sweep)]
    assert len(sweeps) == 1
    assert sweeps[0].targets == frozenset(v.id for v in ops)
    assert sweeps[0].oldest == NOW - 30  # it stops at the first item older than the oldest
    assert not any(isinstance(c, Wait) for c in p.calls)


def test_while_deletes_wait_several_operations_are_swept_not_waited_for() -> None:
    # R :waits would each take a token before the waiting DELETEs (completions first): while
    # writes wait, one sweep a second covers the young operations instead.
    ops = [op(i) for i in range(MIN_SWEEP_TARGETS)]
    backlog = replace(BUDGET, writes_waiting=60)
    p = plan(NOW, ops, backlog, SweepState())
    assert p.mode == "sweep"
    assert [c for c in p.calls if not isinstance(c, Sweep)] == []
    assert plan(NOW, ops, BUDGET, SweepState()).mode == "wait"  # no write waits: :waits
    few = ops[: MIN_SWEEP_TARGETS - 1]  # a sweep a second for fewer would break the cap
    assert plan(NOW, few, backlog, SweepState()).calls == tuple(Wait(v.id, 5) for v in few)


def test_sweep_cadence_is_max_1s_or_pages_over_10() -> None:
    ops = [op(i) for i in range(100)]
    state = SweepState(last_at=NOW - 0.5, last_pages=3)
    p = plan(NOW, ops, BUDGET, state)
    assert not any(isinstance(c, Sweep) for c in p.calls)
    assert p.wake_at == pytest.approx(NOW + 0.5)
    state = SweepState(last_at=NOW - 1.0, last_pages=30)
    assert not any(isinstance(c, Sweep) for c in plan(NOW, ops, BUDGET, state).calls)
    state = SweepState(last_at=NOW - 3.0, last_pages=30)
    assert any(isinstance(c, Sweep) for c in plan(NOW, ops, BUDGET, state).calls)


def test_old_operations_are_followed_alone_and_never_lengthen_a_sweep() -> None:
    young = [op(i) for i in range(60)]
    ancient = op("old", started=NOW - 3 * 3600)
    p = plan(NOW, [*young, ancient], BUDGET, SweepState())
    (sweep,) = [c for c in p.calls if isinstance(c, Sweep)]
    assert "op-old" not in sweep.targets
    assert sweep.oldest == NOW - 10
    assert Wait("op-old", 60) in p.calls
    # no long-poll slot free: a GET, then nothing for 60 s
    p = plan(NOW, [ancient], BudgetView(20, 0), SweepState())
    assert p.calls == (Read("op-old"),)
    after = replace(charge(ancient, NOW, 1), last_call_at=NOW)
    p = plan(NOW + 30, [after], BudgetView(20, 0), SweepState())
    assert p.calls == ()
    assert p.wake_at == NOW + 60


def test_horizon_is_tunable() -> None:
    p = plan(NOW, [op(1, started=NOW - 120)], BUDGET, SweepState(), PlanTuning(horizon=60))
    assert p.calls == (Wait("op-1", 60),)


def test_step_reads_go_to_the_stalest_steps_first_within_the_step_rate() -> None:
    ops = [op(i, last_steps_at=NOW - 60 + i) for i in range(100)]
    p = plan(NOW, ops, BUDGET, SweepState(in_flight=True), PlanTuning(step_read_rate=3))
    assert [c for c in p.calls if isinstance(c, Read)] == [
        Read("op-0", step=True),
        Read("op-1", step=True),
        Read("op-2", step=True),
    ]
    # never read: before every one read once
    fresh = op("new", last_steps_at=None)
    p = plan(NOW, [*ops, fresh], BUDGET, SweepState(in_flight=True), PlanTuning(step_read_rate=1))
    assert [c for c in p.calls if isinstance(c, Read)] == [Read("op-new", step=True)]


def test_step_reads_skip_operations_whose_credit_is_spent_and_wait_for_deletes() -> None:
    ops = [op(i, last_steps_at=NOW - 60 + i) for i in range(100)]
    ops[0] = charge(ops[0], NOW - 2, 1.0)  # a call 2 s ago: no room for another one
    p = plan(NOW, ops, BUDGET, SweepState(in_flight=True), PlanTuning(step_read_rate=1))
    assert [c for c in p.calls if isinstance(c, Read)] == [Read("op-1", step=True)]
    backlog = replace(BUDGET, writes_waiting=300)
    p = plan(NOW, ops, backlog, SweepState(in_flight=True))
    assert not any(isinstance(c, Read) for c in p.calls)


def test_step_rate_counts_the_reads_of_the_last_second() -> None:
    ops = [op(i, last_steps_at=NOW - 60) for i in range(100)]
    state = SweepState(in_flight=True, step_reads=(NOW - 0.5, NOW - 0.2))
    p = plan(NOW, ops, BUDGET, state, PlanTuning(step_read_rate=2))
    assert not any(isinstance(c, Read) for c in p.calls)
    assert p.wake_at == pytest.approx(NOW + 0.5)


def test_failed_item_gets_one_get_even_right_after_a_call() -> None:
    failed = replace(charge(op(1), NOW - 1, 1.0), done=True, state="FAILED", needs_read=True)
    assert plan(NOW, [failed], BUDGET, SweepState()).calls == (Read("op-1"),)
    # a running one passed by a sweep unseen waits for its credit
    passed = replace(charge(op(2), NOW - 1, 1.0), needs_read=True)
    p = plan(NOW, [passed], BUDGET, SweepState())
    assert p.calls == ()
    assert p.wake_at == pytest.approx(NOW + 4)


def test_ended_operations_get_nothing_else() -> None:
    ended = op(1, done=True, state="SUCCEEDED", steps_known=True)
    assert plan(NOW, [ended], BUDGET, SweepState()).calls == ()


def test_unknown_operation_is_read_first() -> None:
    new = OpView(id="op-n", started_at=0.0)
    assert plan(NOW, [new], BUDGET, SweepState()).calls == (Read("op-n"),)


# --- the per-operation cap over 300 s of simulated time ----------------------------------------


@dataclass
class Sim:
    """Runs the planner against a fake Akua: :wait times out after its timeout (nothing ends),
    a GET takes 50 ms, a sweep page 100 ms; every call is attributed to its operations."""

    n: int
    now: float = NOW
    ops: dict[str, OpView] = field(default_factory=dict)
    sweep: SweepState = field(default_factory=lambda: SweepState(waits_carry_steps=False))
    pending: list[tuple[float, object]] = field(default_factory=list)
    attributed: dict[str, float] = field(default_factory=dict)
    direct: dict[str, list[float]] = field(default_factory=dict)
    step_reads: int = 0
    sweeps: int = 0
    writes_waiting: int = 0  # DELETEs waiting for the budget all along

    def run(self, seconds: float) -> None:
        for i in range(self.n):
            v = op(i, started=NOW - i * 0.01, last_steps_at=NOW)
            self.ops[v.id] = v
        end = self.now + seconds
        while self.now < end:
            waits = sum(1 for v in self.ops.values() if v.waiting)
            budget = BudgetView(20.0, max(0, 150 - waits), self.writes_waiting)
            p = plan(self.now, self.ops.values(), budget, self.sweep)
            for call in p.calls:
                self.issue(call)
            if p.calls:
                continue  # what was just sent changes the plan (as in the tracker)
            nxt = min([t for t, _ in self.pending] + ([p.wake_at] if p.wake_at else []))
            self.now = max(self.now + 0.01, nxt)
            for t, call in [x for x in self.pending if x[0] <= self.now]:
                self.pending.remove((t, call))
                self.finish(call)

    def _direct(self, op_id: str) -> None:
        self.ops[op_id] = replace(charge(self.ops[op_id], self.now, 1.0), last_call_at=self.now)
        self.attributed[op_id] = self.attributed.get(op_id, 0.0) + 1
        self.direct.setdefault(op_id, []).append(self.now)

    def issue(self, call: object) -> None:
        if isinstance(call, Wait):
            self._direct(call.op)
            self.ops[call.op] = replace(self.ops[call.op], waiting=True)
            self.pending.append((self.now + call.timeout, call))
        elif isinstance(call, Read):
            self._direct(call.op)
            self.ops[call.op] = replace(self.ops[call.op], reading=True)
            if call.step:
                self.step_reads += 1
                self.sweep = replace(
                    self.sweep,
                    step_reads=(*[t for t in self.sweep.step_reads if t > self.now - 1], self.now),
                )
            self.pending.append((self.now + 0.05, call))
        elif isinstance(call, Sweep):
            pages = min(call.max_pages, math.ceil(len(call.targets) / call.page_size))
            self.sweeps += 1
            for target in call.targets:
                self.ops[target] = charge(self.ops[target], self.now, pages / len(call.targets))
                self.attributed[target] = self.attributed.get(target, 0.0) + pages / len(
                    call.targets
                )
            self.sweep = replace(self.sweep, in_flight=True, last_pages=pages)
            self.pending.append((self.now + 0.1 * pages, call))

    def finish(self, call: object) -> None:
        if isinstance(call, Wait):
            self.ops[call.op] = replace(self.ops[call.op], waiting=False)
        elif isinstance(call, Read):
            self.ops[call.op] = replace(
                self.ops[call.op], reading=False, last_steps_at=self.now if call.step else None
            )
        elif isinstance(call, Sweep):
            self.sweep = replace(self.sweep, in_flight=False, last_at=self.now)


@pytest.mark.parametrize("n", [1, 10, 100, 1000])
def test_at_most_one_call_per_5s_per_running_operation_over_300s(n: int) -> None:
    sim = Sim(n)
    sim.run(300.0)
    for op_id in sim.ops:
        # every call counted, sweeps shared out: at most one per 5 s (and the first one)
        assert sim.attributed.get(op_id, 0.0) <= 300 / WINDOW + 1 + 1e-6, op_id
        times = sim.direct.get(op_id, [])
        # two direct calls about one operation are never closer than 5 s
        assert all(b - a >= WINDOW - 1e-6 for a, b in itertools.pairwise(times))
    # completions are covered all along: :wait in flight, or a sweep at least every ~2 s
    if n <= 50:
        assert sim.sweeps == 0
        assert all(len(sim.direct[o]) >= 300 / 10 for o in sim.ops)
    else:
        assert sim.sweeps >= 300 / 3
    assert sim.step_reads > 0


@pytest.mark.parametrize("n", [MIN_SWEEP_TARGETS, 10, 100])
def test_the_cap_holds_when_deletes_wait_all_along(n: int) -> None:
    sim = Sim(n, writes_waiting=50)
    sim.run(300.0)
    for op_id in sim.ops:
        assert sim.attributed.get(op_id, 0.0) <= 300 / WINDOW + 1 + 1e-6, op_id
    assert sim.sweeps >= 300 / 3  # completions still covered: a sweep at least every ~2 s
    assert sim.step_reads == 0  # no step read while writes wait


def test_operations_not_read_yet_count_as_running() -> None:
    # the first ones read get no :wait while the others' reads are out: R counts them all
    unknown = [OpView(id=f"op-u{i}", started_at=0.0, reading=True) for i in range(50)]
    p = plan(NOW, [op(1), *unknown], BUDGET, SweepState())
    assert p.mode == "sweep"
    assert not any(isinstance(c, Wait) for c in p.calls)


def test_a_wait_is_never_shorter_than_the_window() -> None:
    # one :wait per 5 s must cover every moment, whatever --wait-timeout says
    p = plan(NOW, [op(1)], BUDGET, SweepState(waits_carry_steps=True), PlanTuning(wait_timeout=1))
    assert p.calls == (Wait("op-1", 5),)


def test_without_steps_in_waits_steps_older_than_two_windows_are_read_before_the_next_wait() -> (
    None
):
    # a :wait that came back early (the operation moved fast, or a fake clock) leaves no wait
    # to read the steps beside: the steps come first
    no_steps = SweepState(waits_carry_steps=False)
    stale = op(1, last_steps_at=NOW - 10)
    assert plan(NOW, [stale], BUDGET, no_steps).calls == (Read("op-1", step=True),)
    fresh = op(1, last_steps_at=NOW - 6)
    assert plan(NOW, [fresh], BUDGET, no_steps).calls == (Wait("op-1", 10),)
